// Retries of transient failures (SPEC Part 2): a try is run again on the same connection only when
// the server's error proves nothing of it committed. The flaky function counts its calls in a
// sequence (nextval is never rolled back, so it counts the tries that did roll back) and raises
// 40001 until the count reaches its `succeed_at`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { WorkerRetryingEvent } from '../src/index.js';
import { until, useDatabase } from './support/database.js';
import { commitsOnItsOwn } from '../src/plan/commit-points.js';
import { planTask } from '../src/plan/task-plan.js';

const db = useDatabase(import.meta.filename, {
  async setup(db) {
    await db.query(`CREATE FUNCTION flaky(seq regclass, succeed_at int, code text DEFAULT '40001') RETURNS int LANGUAGE plpgsql AS $$
      DECLARE n int := nextval(seq);
      BEGIN
        IF n < succeed_at THEN RAISE EXCEPTION 'transient failure %', n USING ERRCODE = code; END IF;
        RETURN n;
      END $$`);
    // Its notice makes the server flush what it has written so far.
    await db.query(`CREATE FUNCTION flushed(x int) RETURNS int LANGUAGE plpgsql AS $$ BEGIN RAISE NOTICE 'flushed'; RETURN x; END $$`);
  },
});

let sequences = 0;
/** A fresh try counter and a table to commit into. */
async function counter(): Promise<{ seq: string; table: string }> {
  const n = ++sequences;
  await db.query(`CREATE SEQUENCE tries_${n}; CREATE TABLE committed_${n} (try int)`);
  return { seq: `tries_${n}`, table: `committed_${n}` };
}

test('a serialization failure is retried on the same connection; the third try commits, once', async () => {
  const { seq, table } = await counter();
  const bg = db.background();
  const retrying: WorkerRetryingEvent[] = [];
  bg.on('retrying', (event) => retrying.push(event));
  const h = await bg.launch(`INSERT INTO ${table} VALUES (0); INSERT INTO ${table} SELECT flaky('${seq}', 3) RETURNING try`, {
    retry: { attempts: 5, backoffMs: 1 },
  });
  const rows = await bg.result(h).toArray();
  assert.deepEqual(rows, [{ try: 3 }]); // the rows of the third try only
  const info = await bg.info(h);
  assert.deepEqual([info.state, info.attempts, info.pid, info.lastError], ['stopped', 3, h.pid, null]);
  assert.deepEqual(await db.query(`SELECT try FROM ${table} ORDER BY try`), [{ try: 0 }, { try: 3 }]); // one commit
  assert.deepEqual(
    retrying.map((e) => [e.attempt, e.delayMs, e.error.sqlstate, e.error.message, e.handle.pid]),
    [
      [1, 1, '40001', 'transient failure 1', h.pid],
      [2, 2, '40001', 'transient failure 2', h.pid],
    ],
  );
  const stats = await bg.stats();
  assert.deepEqual([stats.attempts, stats.retries, stats.workersCompleted, stats.workersFailed], [3, 2, 1, 0]);
  await bg.close();
});

test('a single statement is retried too, a deadlock (40P01) by default, with its settings again', async () => {
  const { seq } = await counter();
  const bg = db.background();
  // The connection's reset ran behind the failed try: the second gets its settings again.
  const h = await bg.launch(`SELECT flaky('${seq}', 2, '40P01') AS n, current_setting('work_mem') AS work_mem`, {
    retry: { attempts: 2, backoffMs: 0 },
    settings: { work_mem: '7MB' },
  });
  assert.deepEqual(await bg.result(h).toArray(), [{ n: 2, work_mem: '7MB' }]);
  assert.equal((await bg.info(h)).attempts, 2);
  await bg.close();
});

test('when the attempts run out the last error stands, and nothing committed', async () => {
  const { seq, table } = await counter();
  const bg = db.background();
  const h = await bg.launch(`INSERT INTO ${table} VALUES (0); INSERT INTO ${table} SELECT flaky('${seq}', 10)`, { retry: { attempts: 3, backoffMs: 0 } });
  await bg.wait(h);
  const info = await bg.info(h);
  assert.deepEqual([info.state, info.attempts, info.lastError], ['error', 3, 'transient failure 3']);
  assert.equal((await bg.errorInfo(h))?.sqlstate, '40001');
  await assert.rejects(bg.result(h).toArray(), { code: 'PGBG_WORKER_FAILED', sqlstate: '40001' });
  assert.deepEqual(await db.query(`SELECT * FROM ${table}`), []);
  assert.deepEqual(await db.query(`SELECT last_value FROM ${seq}`), [{ last_value: '3' }]);
  await bg.close();
});

test('other SQLSTATEs are not retried: not in the default list, nor outside a given one', async () => {
  const { seq } = await counter();
  const bg = db.background();
  const divide = await bg.launch('SELECT 1/0', { retry: { attempts: 5, backoffMs: 0 } });
  const other = await bg.launch(`SELECT flaky('${seq}', 10, '40001')`, { retry: { attempts: 5, backoffMs: 0, sqlstates: ['40P01'] } });
  await Promise.all([bg.wait(divide), bg.wait(other)]);
  assert.deepEqual(
    [await bg.info(divide), await bg.info(other)].map((i) => [i.state, i.attempts]),
    [
      ['error', 1],
      ['error', 1],
    ],
  );
  assert.deepEqual(await db.query(`SELECT last_value FROM ${seq}`), [{ last_value: '1' }]);
  // Without `retry` (or with attempts 1) nothing is retried either.
  const plain = await bg.launch(`SELECT flaky('${seq}', 10)`);
  await bg.wait(plain);
  assert.deepEqual([(await bg.info(plain)).attempts, (await bg.stats()).retries], [1, 0]);
  await bg.close();
});

test('a try whose rows the reader already took is not retried: the reader gets that try error', async () => {
  const { seq } = await counter();
  await db.query('SELECT pg_advisory_lock(301)');
  const bg = db.background();
  // The first row leaves the server whole (a notice flushes its output buffer: before 17 the
  // tail of a large row waits there for the next flush), then the second waits for the test's
  // lock and fails.
  const h = await bg.launch(
    `SELECT g, repeat('x', 20000) AS pad,
            CASE WHEN g = 2 THEN (SELECT flaky('${seq}', 10) FROM pg_advisory_xact_lock(flushed(299 + g))) END AS f
       FROM generate_series(1, 2) g`,
    { retry: { attempts: 5, backoffMs: 0 } },
  );
  const rows = bg.result<{ g: number }>(h)[Symbol.asyncIterator]();
  assert.equal((await rows.next()).value?.g, 1);
  await db.query('SELECT pg_advisory_unlock(301)');
  await assert.rejects(rows.next(), { code: 'PGBG_WORKER_FAILED', sqlstate: '40001', message: 'transient failure 1' });
  assert.deepEqual([(await bg.info(h)).state, (await bg.info(h)).attempts], ['error', 1]);
  await bg.close();
});

test('a cancel between two tries ends the worker canceled; nothing committed', async () => {
  const { seq, table } = await counter();
  const bg = db.background();
  const h = await bg.launch(`INSERT INTO ${table} VALUES (0); INSERT INTO ${table} SELECT flaky('${seq}', 3)`, {
    retry: { attempts: 3, backoffMs: 3_600_000 },
  });
  await until(async () => (await bg.info(h)).attempts === 2, 'the first try to fail');
  assert.equal((await bg.info(h)).state, 'running'); // the state stays running between tries
  await bg.cancel(h);
  const info = await bg.info(h);
  assert.deepEqual([info.state, info.attempts, info.canceledBy], ['canceled', 2, 'cancel']);
  assert.match((await bg.errorInfo(h))!.message, /^worker was cancelled \(cancel\) between tries: try 1 had failed and rolled back \(transient failure 1\)$/);
  assert.deepEqual(await db.query(`SELECT * FROM ${table}`), []);
  await bg.close();
});

test('a timeout spans the tries: it ends the pause between them, canceled by timeout', async () => {
  const { seq } = await counter();
  const bg = db.background();
  // The first try fails at once; the timeout (long enough for that on a loaded machine) ends the pause.
  const h = await bg.launch(`SELECT flaky('${seq}', 3)`, { retry: { attempts: 3, backoffMs: 3_600_000 }, timeoutMs: 1000 });
  await bg.wait(h);
  const outcome = await bg.outcome(h);
  assert.deepEqual([outcome.state, outcome.timedOut, outcome.sqlstate, (await bg.info(h)).attempts], ['canceled', true, '57014', 2]);
  assert.equal((await bg.stats()).workersTimedOut, 1);
  await bg.close();
});

test('retry options are validated, naming the option and the value', async () => {
  const bg = db.background();
  const bad: [unknown, RegExp][] = [
    [null, /Expected `retry` to be an object, got null/],
    [{ attempts: 0 }, /Expected `retry.attempts` to be an integer from 1 to 100, got 0/],
    [{ attempts: 101 }, /Expected `retry.attempts` to be an integer from 1 to 100, got 101/],
    [{ attempts: 2.5 }, /Expected `retry.attempts` to be an integer from 1 to 100, got 2.5/],
    [{ backoffMs: -1 }, /Expected `retry.backoffMs` to be an integer from 0 to 3600000, got -1/],
    [{ backoffMs: 3_600_001 }, /Expected `retry.backoffMs` to be an integer from 0 to 3600000, got 3600001/],
    [{ sqlstates: [] }, /Expected `retry.sqlstates` to be a non-empty array of five-character SQLSTATEs, got an array/],
    [{ sqlstates: '40001' }, /Expected `retry.sqlstates` to be a non-empty array of five-character SQLSTATEs, got "40001"/],
    [{ sqlstates: ['40001', '4001'] }, /Expected `retry.sqlstates\[1\]` to be a five-character SQLSTATE such as '40001', got "4001"/],
    [{ sqlstates: ['40p01'] }, /Expected `retry.sqlstates\[0\]` to be a five-character SQLSTATE such as '40001', got "40p01"/],
    [{ attempt: 3 }, /Unknown option `attempt` in `retry`; expected one of `attempts`, `backoffMs`, `sqlstates`/],
  ];
  for (const [retry, message] of bad) {
    await assert.rejects(bg.launch('SELECT 1', { retry } as never), { code: 'PGBG_INVALID_ARGUMENT', message });
  }
  for (const sql of ['CALL p()', 'DO $$ BEGIN END $$', 'VACUUM', ' -- c\n CREATE INDEX CONCURRENTLY i ON t (x)', 'REINDEX TABLE t']) {
    await assert.rejects(bg.launch(sql, { retry: { attempts: 2 } }), {
      code: 'PGBG_INVALID_ARGUMENT',
      message: /^Option `retry.attempts` cannot be 2 for this SQL: a single statement such as CALL, DO, VACUUM/,
    });
  }
  // One try needs no proof; several statements run in one block of ours.
  await bg.wait(await bg.launch('VACUUM', { retry: { attempts: 1 } }));
  await bg.wait(await bg.launch('SELECT 1; SELECT 2', { retry: { attempts: 2 } }));
  assert.equal((await bg.stats()).workersLaunched, 2);
  await bg.close();
});

test('which SQL can commit on its own before it fails (offline): only those refuse retries', () => {
  const can = (sql: string) => commitsOnItsOwn(planTask(sql));
  for (const sql of [
    'CALL p()',
    'DO $$ BEGIN END $$',
    'VACUUM t',
    'ANALYZE',
    'CLUSTER',
    'REINDEX TABLE t',
    'CREATE DATABASE d',
    'DROP INDEX CONCURRENTLY i',
    'checkpoint',
  ]) {
    assert.equal(can(sql), true, sql);
  }
  for (const sql of [
    'SELECT 1',
    ' /* a /* nested */ comment */ -- line\n insert into t values (1)',
    '(SELECT 1)',
    'WITH x AS (SELECT 1) SELECT * FROM x',
    'CREATE TABLE t (n int)',
    'ALTER TABLE t ADD c int',
    'SELECT 1; VACUUM',
    'EXPLAIN ANALYZE SELECT pg_sleep(1)',
    'REFRESH MATERIALIZED VIEW CONCURRENTLY v',
    'SHOW work_mem',
    'SET work_mem = 1024',
    "NOTIFY c, 'x'",
    'EXECUTE p(1)',
    'DECLARE c CURSOR WITH HOLD FOR SELECT 1',
    'FETCH 10 FROM c',
  ]) {
    assert.equal(can(sql), false, sql);
  }
});
