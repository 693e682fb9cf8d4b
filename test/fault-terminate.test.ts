// Fault: a worker's backend is terminated from outside (pg_terminate_backend on another
// connection), while it runs, while its consumer is paused on a full queue, and while its
// connection idles in the warm set.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WorkerError, type PgBackground, type WorkerHandle } from 'pg-background';
import { until, useDatabase } from './support/database.js';
import { untimed } from './support/result-info.js';

const db = useDatabase(import.meta.filename);

const backendGone = (pid: number) =>
  until(async () => (await db.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid])).length === 0, `backend ${pid} to exit`);

// close() ends its connections on our side; their backends exit a moment later.
const noBackendsLeft = () => until(async () => (await db.backends()).length === 0, 'no backend of ours left');

const terminate = async (pid: number): Promise<number> => {
  const [row] = await db.query<{ ok: boolean }>('SELECT pg_terminate_backend($1) AS ok', [pid]);
  assert.equal(row!.ok, true);
  return Date.now();
};

/** Logs the figure for the report: ms from the fault to the worker's terminal state. */
async function logTerminal(bg: PgBackground, h: WorkerHandle, faultAt: number, what: string): Promise<void> {
  const { finishedAt } = await bg.info(h);
  console.log(`[fault-terminate] ${what}: ${finishedAt!.getTime() - faultAt} ms from fault to terminal state`);
}

test('terminating a running worker: state error with 57P01 (not canceled), and the instance carries on', async () => {
  await db.query('CREATE TABLE term_running (n int)');
  const bg = db.background();
  const h = await bg.launch('INSERT INTO term_running VALUES (1); SELECT pg_sleep(30)', { label: 'sleeper' });
  await until(async () => (await db.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event = 'PgSleep'", [h.pid])).length, 'the worker to sleep');
  const faultAt = await terminate(h.pid);
  assert.equal(await bg.wait(h, { timeoutMs: 15_000 }), true);
  await logTerminal(bg, h, faultAt, 'terminate while running');

  const info = await bg.info(h);
  assert.equal(info.state, 'error');
  assert.equal(info.canceledBy, null); // nobody asked for a cancel
  assert.match(info.lastError!, /terminating connection due to administrator command/);
  const error = await bg.errorInfo(h);
  assert.equal(error?.sqlstate, '57P01');
  assert.equal(error?.severity, 'FATAL');
  await assert.rejects(bg.result(h).toArray(), (e: unknown) => {
    assert.ok(e instanceof WorkerError);
    assert.deepEqual([e.code, e.sqlstate, e.pid, e.label], ['PGBG_WORKER_FAILED', '57P01', h.pid, 'sleeper']);
    return true;
  });
  assert.deepEqual(untimed(await bg.resultInfo(h)), { rowCount: 0, commandTag: null, completed: true, hasError: true });
  assert.deepEqual(await db.query('SELECT count(*)::int AS n FROM term_running'), [{ n: 0 }]);
  const stats = await bg.stats();
  assert.deepEqual([stats.workersLaunched, stats.workersFailed, stats.workersCanceled, stats.workersActive], [1, 1, 0, 0]);

  // A new launch works, on another backend.
  const next = await bg.launch('SELECT pg_backend_pid() AS pid, 1 AS ok');
  const [row] = (await bg.result(next).toArray()) as { pid: number; ok: number }[];
  assert.equal(row!.ok, 1);
  assert.notEqual(row!.pid, h.pid);
  await backendGone(h.pid);
  await bg.close();
  await noBackendsLeft();
});

test('terminating a worker blocked on its paused consumer: the queued rows are read, then WorkerError 08006', async () => {
  const bg = db.background();
  const total = 2_000_000;
  const h = await bg.launch(`SELECT g, md5(g::text) AS m FROM generate_series(1, ${total}) g`, { queueSize: 4096 });
  // Nobody reads: the queue fills, the connection stops reading, the backend blocks writing.
  await until(
    async () => (await db.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event = 'ClientWrite'", [h.pid])).length,
    'the worker to block in ClientWrite',
  );
  const faultAt = await terminate(h.pid);
  // A backend blocked writing to its client dies without sending the client its FATAL message
  // (PostgreSQL's ProcessClientWriteInterrupt): the connection just ends after the rows that were
  // already on their way.
  await backendGone(h.pid);
  // Nobody reads, so the connection is not reading its socket either: nothing has told the
  // library yet (logged for the report, not asserted).
  console.log(`[fault-terminate] paused consumer: state once the backend is gone, before reading: ${(await bg.info(h)).state}`);

  let count = 0;
  let last = 0;
  const reading = (async () => {
    for await (const { g } of bg.result<{ g: number }>(h)) {
      count++;
      assert.equal(g, last + 1); // in order, none lost before the break
      last = g;
    }
  })();
  await assert.rejects(reading, (e: unknown) => {
    assert.ok(e instanceof WorkerError);
    assert.equal(e.code, 'PGBG_WORKER_FAILED');
    assert.equal(e.sqlstate, '08006');
    assert.equal(e.pid, h.pid);
    return true;
  });
  await logTerminal(bg, h, faultAt, 'terminate while the consumer is paused (consumer reads after the backend is gone)');
  console.log(`[fault-terminate] paused consumer: ${count} rows read before the error`);
  assert.ok(count > 0, 'some rows were read before the error');
  assert.ok(count < total, `not every row arrived: ${count}`);
  const info = await bg.info(h);
  assert.equal(info.state, 'error');
  assert.equal(info.canceledBy, null);
  assert.equal(info.consumed, true);
  assert.equal((await bg.errorInfo(h))?.sqlstate, '08006');
  assert.equal((await bg.resultInfo(h)).rowCount, count);

  const next = await bg.launch('SELECT 2 AS ok');
  assert.deepEqual(await bg.result(next).toArray(), [{ ok: 2 }]);
  await bg.close();
  await noBackendsLeft();
});

test('terminating an idle warm connection: it is dropped, never reused, and nothing crashes', async () => {
  const bg = db.background({ maxWorkers: 1 });
  const first = await bg.launch('SELECT pg_backend_pid() AS pid');
  const [{ pid }] = (await bg.result(first).toArray()) as [{ pid: number }];
  assert.equal(pid, first.pid);
  // The connection has been reset (DISCARD ALL) and waits in the warm set.
  await until(
    async () => (await db.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND state = 'idle' AND query = 'DISCARD ALL'", [pid])).length,
    'the connection to be parked',
  );
  await until(() => String(bg).includes('connections: 1'), 'the pool to hold the warm connection');

  const faultAt = await terminate(pid);
  await backendGone(pid);
  // The pool notices the FATAL message on its own and closes the connection, without a launch.
  await until(() => String(bg).includes('connections: 0'), 'the pool to drop the terminated connection');
  console.log(`[fault-terminate] terminate while idle: ${Date.now() - faultAt} ms from fault to the pool dropping it (polled)`);

  const next = await bg.launch('SELECT pg_backend_pid() AS pid, 3 AS ok');
  const [row] = (await bg.result(next).toArray()) as { pid: number; ok: number }[];
  assert.notEqual(next.pid, pid);
  assert.deepEqual(row, { pid: next.pid, ok: 3 });
  assert.equal((await bg.info(next)).state, 'stopped');
  assert.equal(
    (await bg.list()).every((w) => w.state === 'stopped'),
    true,
  );
  await bg.close();
  await noBackendsLeft();
});
