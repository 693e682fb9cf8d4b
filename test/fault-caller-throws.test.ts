// Fault: the caller's own code throws inside `for await (const row of bg.result(h))`. The
// exception reaches the caller unchanged, the rest of the rows are dropped, the worker runs on
// and commits, and its connection serves the next task.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { until, useDatabase } from './support/database.js';
import { untimed } from './support/result-info.js';

const db = useDatabase(import.meta.filename);

test('an exception thrown while reading a large result propagates unchanged; the worker commits and its connection is reused', async () => {
  await db.query('CREATE TABLE thrown_rows (n int)');
  const bg = db.background({ maxWorkers: 1 });
  const total = 200_000;
  // DML with RETURNING: the rows come back after the insert, and the commit follows the last row.
  const h = await bg.launch(`INSERT INTO thrown_rows SELECT generate_series(1, ${total}) RETURNING n, repeat('x', 100) AS pad, pg_backend_pid() AS pid`, {
    queueSize: 4096,
  });
  // The worker is blocked on its full queue when the caller starts reading.
  await until(
    async () => (await db.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event = 'ClientWrite'", [h.pid])).length,
    'the worker to block',
  );

  class CallerBug extends Error {}
  const thrown = new CallerBug('the caller gave up at row 1000');
  let seen = 0;
  let thrownAt = 0;
  await assert.rejects(
    (async () => {
      for await (const row of bg.result<{ n: number; pid: number }>(h)) {
        assert.equal(row.pid, h.pid);
        if (++seen === 1000) {
          thrownAt = Date.now();
          throw thrown;
        }
      }
    })(),
    (e: unknown) => e === thrown, // the very same object: not wrapped, not replaced
  );
  assert.equal(seen, 1000);

  await bg.wait(h);
  console.log(`[fault-caller-throws] ${(await bg.info(h)).finishedAt!.getTime() - thrownAt} ms from the throw to terminal state`);
  const info = await bg.info(h);
  assert.deepEqual([info.state, info.consumed, info.lastError, info.canceledBy, info.queuedBytes], ['stopped', true, null, null, 0]);
  assert.equal((await bg.list())[0]!.consumed, true);
  assert.deepEqual(untimed(await bg.resultInfo(h)), { rowCount: total, commandTag: 'INSERT', completed: true, hasError: false });
  assert.equal(await bg.errorInfo(h), null);
  // Every row committed, though the caller read only 1000 of them.
  assert.deepEqual(await db.query('SELECT count(*)::int AS n, sum(n)::int8 AS s FROM thrown_rows'), [{ n: total, s: String((total * (total + 1)) / 2) }]);
  // The result cannot be read again.
  assert.throws(() => bg.result(h), { code: 'PGBG_ALREADY_CONSUMED' });

  // The connection is healthy and serves the next task: the same backend.
  const next = await bg.launch('SELECT pg_backend_pid() AS pid, 1 AS ok');
  assert.deepEqual(await bg.result(next).toArray(), [{ pid: h.pid, ok: 1 }]);
  assert.equal(next.pid, h.pid);
  const stats = await bg.stats();
  assert.deepEqual([stats.workersLaunched, stats.workersCompleted, stats.workersFailed], [2, 2, 0]);
  await bg.close();
});
