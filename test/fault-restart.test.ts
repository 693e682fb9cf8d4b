// Fault: the server stops under running workers (fast and immediate shutdown) and comes back.
// This file runs its own throwaway server, since it restarts it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PgBackground, WorkerError, type WorkerHandle } from 'pg-background';
import { until } from './support/database.js';
import { useRestartableServer } from './support/restartable-server.js';

// The WAL writer at its slowest: were a commit ever acknowledged before its WAL reached the
// kernel (synchronous_commit = off), the immediate shutdown would lose it every time, not only
// when the timing is unlucky.
const restartable = useRestartableServer({ settings: { wal_writer_delay: '10s' } });
const query = restartable.query.bind(restartable);

const waitEvent = (pid: number, event: string) =>
  until(
    async () => (await query('SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event = $2', [pid, event])).length,
    `backend ${pid} to wait on ${event}`,
  );

interface Scenario {
  bg: PgBackground;
  sleeper: WorkerHandle;
  blocked: WorkerHandle;
  loop: WorkerHandle;
  warmPid: number;
}

/** Workers of every kind, running when the server goes down; the control connection is open. */
async function runningWorkers(table: string): Promise<Scenario> {
  await query(`CREATE TABLE ${table} (n int)`);
  const bg = new PgBackground({ connectionString: restartable.server.url, maxWorkers: 4, livenessTimeoutMs: 1000 });
  await bg.install(); // opens the control connection
  // A warm connection, idle in the pool when the server stops.
  const warm = await bg.launch('SELECT pg_backend_pid() AS pid');
  const [{ pid: warmPid }] = (await bg.result(warm).toArray()) as [{ pid: number }];
  await until(
    async () => (await query("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND state = 'idle' AND query = 'DISCARD ALL'", [warmPid])).length,
    'the warm connection to be parked',
  );

  const sleeper = await bg.launch(`INSERT INTO ${table} VALUES (1); SELECT pg_sleep(30)`, { label: 'sleeper' });
  const blocked = await bg.launch('SELECT g, md5(g::text) AS m FROM generate_series(1, 5000000) g', { label: 'blocked', queueSize: 4096 });
  const loop = await bg.submit(`DO $$ BEGIN FOR i IN 1..100000 LOOP INSERT INTO ${table} VALUES (i); PERFORM pg_sleep(0.01); END LOOP; END $$`, {
    label: 'loop',
  });
  await waitEvent(sleeper.pid, 'PgSleep');
  await waitEvent(blocked.pid, 'ClientWrite');
  await until(async () => (await query('SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND state = $2', [loop.pid, 'active'])).length, 'the loop to run');
  assert.deepEqual(
    (await bg.list()).map((w) => [w.label, w.state]),
    [
      ['loop', 'running'],
      ['blocked', 'running'],
      ['sleeper', 'running'],
      [null, 'stopped'],
    ],
  );
  return { bg, sleeper, blocked, loop, warmPid };
}

/** After the server is back: new launches, cancels (control connection) and install() work. */
async function worksAgain(bg: PgBackground, table: string, oldPids: number[]): Promise<void> {
  const next = await bg.launch('SELECT pg_backend_pid() AS pid, 1 AS ok');
  const [row] = (await bg.result(next).toArray()) as { pid: number; ok: number }[];
  assert.equal(row!.ok, 1);
  assert.equal(oldPids.includes(row!.pid), false);
  // A terminate goes through the control connection, which must have been replaced.
  const sleeper = await bg.launch('SELECT pg_sleep(30)');
  await waitEvent(sleeper.pid, 'PgSleep');
  await bg.cancel(sleeper, { graceMs: 0 });
  assert.equal((await bg.info(sleeper)).state, 'canceled');
  assert.equal((await bg.errorInfo(sleeper))?.sqlstate, '57P01');
  await bg.install();
  const progress = await bg.launch("SELECT pg_background_progress(40, 'back')");
  await bg.wait(progress);
  assert.equal((await bg.info(progress)).state, 'stopped');
  assert.deepEqual(await bg.getProgress(progress), { pct: 40, message: 'back' });
  // Nothing of the interrupted workers committed.
  assert.deepEqual(await query(`SELECT count(*)::int AS n FROM ${table}`), [{ n: 0 }]);
}

for (const mode of ['fast', 'immediate'] as const) {
  test(`${mode === 'fast' ? 'a fast' : 'an immediate'} shutdown ends every worker in error with a connection error; after a restart everything works`, async () => {
    const table = `restart_${mode}`;
    const { bg, sleeper, blocked, loop, warmPid } = await runningWorkers(table);
    try {
      const handles = [sleeper, blocked, loop];
      // Acknowledged a moment before the fault: it must survive either shutdown (an immediate
      // one kills the server's processes, not the OS, so nothing written to the kernel is lost).
      await query(`CREATE TABLE ${table}_acknowledged AS SELECT 42 AS n`);
      const faultAt = Date.now();
      await restartable.server.stopServer(mode);
      restartable.dropAdmin();
      const finished = await Promise.all(
        handles.map(async (h) => {
          const done = await bg.wait(h, { timeoutMs: 10_000 });
          const info = await bg.info(h);
          console.log(
            `[fault-restart] ${mode} shutdown, ${info.label}: ${done ? `${info.finishedAt!.getTime() - faultAt} ms from fault to terminal state` : `still ${info.state} after 10000 ms`}`,
          );
          return [info.label, done] as const;
        }),
      );

      // A fast shutdown terminates backends (FATAL 57P01) and the ones that can still talk to
      // us say so; a blocked writer cannot, and an immediate shutdown only sends a WARNING before
      // the backends exit: those connections just end (08006).
      const expected = mode === 'fast' ? { sleeper: '57P01', blocked: '08006', loop: '57P01' } : { sleeper: '08006', blocked: '08006', loop: '08006' };
      await assert.rejects(bg.result(sleeper).toArray(), (e: unknown) => e instanceof WorkerError && e.sqlstate === expected.sleeper);
      // Reading the blocked worker's result drains what was on its way, then fails.
      let rows = 0;
      await assert.rejects(
        (async () => {
          for await (const _row of bg.result(blocked)) rows++;
        })(),
        (e: unknown) => e instanceof WorkerError && e.sqlstate === '08006',
      );
      console.log(
        `[fault-restart] ${mode} shutdown, blocked: ${rows} rows read before the error; ${(await bg.info(blocked)).finishedAt!.getTime() - faultAt} ms from fault to terminal state once read`,
      );
      const outcome: Record<string, [string, string | undefined]> = {};
      for (const h of handles) {
        const info = await bg.info(h);
        outcome[info.label!] = [info.state, (await bg.errorInfo(h))?.sqlstate];
      }
      assert.deepEqual(outcome, {
        sleeper: ['error', expected.sleeper],
        blocked: ['error', expected.blocked],
        loop: ['error', expected.loop],
      });
      const stats = await bg.stats();
      assert.deepEqual([stats.workersActive, stats.workersFailed, stats.workersCompleted], [0, 3, 1]);

      await restartable.server.startServer();
      assert.deepEqual(await query(`SELECT n FROM ${table}_acknowledged`), [{ n: 42 }], 'a commit acknowledged before the shutdown survives it');
      await worksAgain(bg, table, [warmPid, sleeper.pid, blocked.pid, loop.pid]);
      // Checked last so that the rest is exercised either way: a worker whose consumer reads
      // nothing must reach its terminal state too (livenessTimeoutMs is 1000 here).
      assert.deepEqual(
        finished,
        [
          ['sleeper', true],
          ['blocked', true],
          ['loop', true],
        ],
        'every wait(h) resolves without reading the result',
      );
    } finally {
      await restartable.server.startServer(); // a no-op unless a failure left it stopped
      await bg.close();
    }
    // close() ends its connections on our side; their backends exit a moment later.
    await until(
      async () => (await query("SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'pg-background%' OR application_name LIKE 'pgbg:%'")).length === 0,
      'no backend of ours left',
    );
  });
}
