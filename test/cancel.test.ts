import { test } from 'node:test';
import assert from 'node:assert/strict';
import { until, useDatabase, type TestDatabase } from './support/database.js';
import { PARTIAL } from '../src/run/classify.js';

const db = useDatabase(import.meta.filename);

const sleeping = (pid: number, database: TestDatabase = db) =>
  until(
    async () => (await database.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event = 'PgSleep'", [pid])).length,
    `backend ${pid} to sleep`,
  );

test('cancel stops a running worker, resolves once it has stopped, and its work rolls back', async () => {
  await db.query('CREATE TABLE cancel_rollback (n int)');
  const bg = db.background();
  const h = await bg.launch('INSERT INTO cancel_rollback VALUES (1); SELECT pg_sleep(30)', { label: 'sleeper' });
  await sleeping(h.pid);
  await bg.cancel(h);
  const [info] = await bg.list();
  assert.deepEqual([info!.state, info!.canceledBy, info!.lastError], ['canceled', 'cancel', null]);
  assert.ok(info!.finishedAt instanceof Date);
  assert.equal((await bg.errorInfo(h))?.sqlstate, '57014');
  await assert.rejects(bg.result(h).toArray(), { name: 'WorkerError', code: 'PGBG_WORKER_CANCELED', sqlstate: '57014', pid: h.pid, label: 'sleeper' });
  assert.deepEqual(await db.query('SELECT count(*)::int AS n FROM cancel_rollback'), [{ n: 0 }]);
  // The backend is idle again, or gone: it no longer runs the statement.
  assert.deepEqual(await db.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND state = 'active'", [h.pid]), []);
  await bg.close();
});

test('cancelling a finished worker is not an error and changes nothing; its result stays readable', async () => {
  const bg = db.background();
  const h = await bg.launch('SELECT 7 AS seven');
  await bg.wait(h);
  await bg.cancel(h);
  assert.equal((await bg.list())[0]!.state, 'stopped');
  assert.deepEqual(await bg.result(h).toArray(), [{ seven: 7 }]);
  await bg.close();
});

test('a worker that ignores the cancel request is terminated after graceMs (57P01)', async () => {
  const bg = db.background();
  // This function swallows query_canceled and keeps sleeping: only a terminate stops it. (Called
  // from a SELECT: a DO block could commit as it goes, and its cancel would not be `canceled`.)
  await db.query(`CREATE FUNCTION swallow_cancels() RETURNS void LANGUAGE plpgsql AS $$
    BEGIN LOOP BEGIN PERFORM pg_sleep(0.05); EXCEPTION WHEN query_canceled THEN NULL; END; END LOOP; END $$`);
  const h = await bg.launch('SELECT swallow_cancels()');
  await sleeping(h.pid);
  await bg.cancel(h, { graceMs: 200 });
  const [info] = await bg.list();
  assert.equal(info!.state, 'canceled');
  assert.equal((await bg.errorInfo(h))?.sqlstate, '57P01');
  await until(async () => (await db.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [h.pid])).length === 0, 'the backend to exit');
  await bg.close();
});

test('graceMs 0 terminates at once', async () => {
  await db.query('CREATE TABLE terminated (n int)');
  const bg = db.background();
  const h = await bg.launch('INSERT INTO terminated VALUES (1); SELECT pg_sleep(30)');
  await sleeping(h.pid);
  await bg.cancel(h, { graceMs: 0 });
  assert.equal((await bg.list())[0]!.state, 'canceled');
  assert.equal((await bg.errorInfo(h))?.sqlstate, '57P01');
  assert.deepEqual(await db.query('SELECT count(*)::int AS n FROM terminated'), [{ n: 0 }]);
  // The instance carries on with a new connection.
  const next = await bg.launch('SELECT 1 AS ok');
  assert.deepEqual(await bg.result(next).toArray(), [{ ok: 1 }]);
  await bg.close();
});

test('cancel reaches a worker blocked on its full queue', async () => {
  const bg = db.background();
  const h = await bg.launch('SELECT g, md5(g::text) FROM generate_series(1, 5000000) g', { queueSize: 4096 });
  await until(
    async () => (await db.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event = 'ClientWrite'", [h.pid])).length,
    'the worker to block',
  );
  await bg.cancel(h);
  assert.equal((await bg.list())[0]!.state, 'canceled');
  assert.equal((await bg.errorInfo(h))?.sqlstate, '57014');
  await bg.close();
});

test('a cancel that arrives after the commit leaves the worker stopped', async () => {
  await db.query('CREATE TABLE committed_first (n int)');
  const bg = db.background();
  // The rows come after the INSERT has run; the commit follows the last row. Reading nothing,
  // we let the worker finish before we cancel.
  const h = await bg.launch('INSERT INTO committed_first VALUES (1)');
  await until(async () => (await db.query('SELECT count(*)::int AS n FROM committed_first'))[0]!.n === 1, 'the commit');
  await bg.cancel(h);
  assert.equal((await bg.list())[0]!.state, 'stopped');
  await bg.close();
});

test('concurrent cancels join one another', async () => {
  const bg = db.background();
  const h = await bg.launch('SELECT pg_sleep(30)');
  await sleeping(h.pid);
  await Promise.all([bg.cancel(h), bg.cancel(h, { graceMs: 0 }), bg.cancel(h)]);
  assert.equal((await bg.list())[0]!.state, 'canceled');
  assert.equal((await bg.stats()).workersCanceled, 1);
  await bg.close();
});

test("the launch's AbortSignal cancels a running worker", async () => {
  const bg = db.background();
  const controller = new AbortController();
  const h = await bg.launch('SELECT pg_sleep(30)', { signal: controller.signal });
  await sleeping(h.pid);
  controller.abort();
  await bg.wait(h);
  const [info] = await bg.list();
  assert.deepEqual([info!.state, info!.canceledBy], ['canceled', 'signal']);
  await bg.close();
});

test('workerTimeoutMs and per-launch timeoutMs cancel a worker that runs too long', async () => {
  // 1 s: the quick worker below must finish within it even on a loaded machine.
  const bg = db.background({ workerTimeoutMs: 1000 });
  const h = await bg.launch('SELECT pg_sleep(30)');
  await bg.wait(h);
  assert.deepEqual([(await bg.list())[0]!.state, (await bg.list())[0]!.canceledBy], ['canceled', 'timeout']);
  const quick = await bg.launch('SELECT 1 AS one');
  assert.deepEqual(await bg.result(quick).toArray(), [{ one: 1 }]);
  const long = await bg.launch('SELECT pg_sleep(30)', { timeoutMs: 0 });
  assert.equal(await bg.wait(long, { timeoutMs: 300 }), false);
  await bg.cancel(long);
  assert.equal((await bg.list())[0]!.canceledBy, 'cancel');
  const untimed = db.background();
  const timed = await untimed.launch('SELECT pg_sleep(30)', { timeoutMs: 50 });
  await untimed.wait(timed);
  assert.deepEqual([(await untimed.list())[0]!.state, (await untimed.list())[0]!.canceledBy], ['canceled', 'timeout']);
  await Promise.all([bg.close(), untimed.close()]);
});

test('cancelAll cancels every active tracked worker and says how many', async () => {
  const bg = db.background();
  const sleepers = await Promise.all([1, 2, 3].map(() => bg.launch('SELECT pg_sleep(30)')));
  const done = await bg.launch('SELECT 1');
  await bg.wait(done);
  assert.equal(await bg.cancelAll(), 3);
  for (const h of sleepers) assert.equal((await bg.errorInfo(h))?.sqlstate, '57014');
  assert.equal(await bg.cancelAll(), 0);
  await bg.close();
});

test('a cancelled connection never serves another task, so a late cancel cannot hit it', async () => {
  const bg = db.background({ maxWorkers: 1 });
  const h = await bg.launch('SELECT pg_sleep(30)');
  await sleeping(h.pid);
  await bg.cancel(h);
  const next = await bg.launch('SELECT pg_sleep(0.2) AS slept, pg_backend_pid() AS pid');
  const [row] = (await bg.result(next).toArray()) as { pid: number }[];
  assert.notEqual(row!.pid, h.pid);
  assert.equal((await bg.list())[0]!.state, 'stopped');
  await bg.close();
});

test('a toArray waiting for the rows of a worker that is then cancelled rejects with the cancel, and nothing committed', async () => {
  await db.query('CREATE TABLE cancel_reading (g int)');
  const bg = db.background();
  // The INSERT and the rows' statement share the worker's transaction; the SELECT's rows stream,
  // about one a millisecond.
  const h = await bg.launch('INSERT INTO cancel_reading VALUES (0); SELECT g FROM generate_series(1, 1000000) g CROSS JOIN LATERAL pg_sleep(0.0005 + g * 0)', {
    queueSize: 1 << 20,
  });
  // The rejection is expected while the cancel is awaited: its check is attached at once.
  const reading = assert.rejects(bg.result(h).toArray(), { name: 'WorkerError', code: 'PGBG_WORKER_CANCELED', sqlstate: '57014', pid: h.pid });
  // Rows are queued and not taken: the reader is waiting (for the queue to fill, which takes
  // minutes at this pace, or to end). The server sends them in ~8 KB chunks.
  await until(async () => (await bg.info(h)).queuedBytes > 0, 'rows queued while the reader waits');
  await bg.cancel(h);
  assert.equal((await bg.info(h)).state, 'canceled');
  await reading;
  assert.deepEqual(await db.query('SELECT count(*)::int AS n FROM cancel_reading'), [{ n: 0 }]);
  assert.deepEqual(await db.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND state = 'active'", [h.pid]), []);
  await bg.close();
});

test('a cancelled statement that commits as it goes (a procedure that commits, CREATE INDEX CONCURRENTLY) ends error, never canceled, and says what stays', async () => {
  await db.query('CREATE TABLE cancel_batches (n int)');
  await db.query(`CREATE PROCEDURE cancel_batches_fill() LANGUAGE plpgsql AS $$
    BEGIN FOR k IN 1..600 LOOP INSERT INTO cancel_batches VALUES (k); COMMIT; PERFORM pg_sleep(0.05); END LOOP; END $$`);
  const committed = async () => (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM cancel_batches'))[0]!.n;
  const bg = db.background();
  const call = await bg.launch('CALL cancel_batches_fill()');
  await until(async () => (await committed()) >= 2, 'the procedure to commit two batches');
  await bg.cancel(call);
  const kept = await committed();
  assert.ok(kept >= 2 && kept < 600, `${kept} rows committed`);
  assert.equal((await bg.info(call)).state, 'error');
  assert.deepEqual(await bg.errorInfo(call).then((e) => [e?.sqlstate, e?.message]), ['57014', `canceling statement due to user request${PARTIAL}`]);
  await assert.rejects(bg.result(call).toArray(), { code: 'PGBG_WORKER_FAILED', sqlstate: '57014' });
  // CONCURRENTLY commits its catalog entry first, then waits for the open writer: an invalid index stays.
  await db.query('CREATE TABLE cancel_concurrently (n int)');
  const writer = await db.client();
  await writer.query('BEGIN');
  await writer.query('INSERT INTO cancel_concurrently VALUES (1)');
  const index = await bg.launch('CREATE INDEX CONCURRENTLY cancel_concurrently_n ON cancel_concurrently (n)');
  await until(
    async () => (await db.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'", [index.pid])).length,
    'the index build to wait for the writer',
  );
  await bg.cancel(index);
  await writer.query('ROLLBACK');
  await writer.end();
  assert.equal((await bg.info(index)).state, 'error');
  assert.equal((await bg.errorInfo(index))?.message, `canceling statement due to user request${PARTIAL}`);
  assert.deepEqual(await db.query("SELECT indisvalid FROM pg_index WHERE indexrelid = 'cancel_concurrently_n'::regclass"), [{ indisvalid: false }]);
  // A plain statement cancelled the same way is canceled, as ever; so is a utility statement
  // that commits nothing on its own.
  // (EXPLAIN ANALYZE runs what it explains: its INSERT, done before the sleep, is rolled back with it.)
  for (const sql of ['SELECT pg_sleep(30)', 'EXPLAIN ANALYZE WITH put AS (INSERT INTO cancel_batches VALUES (0) RETURNING n) SELECT pg_sleep(30) FROM put']) {
    const plain = await bg.launch(sql);
    await sleeping(plain.pid);
    await bg.cancel(plain);
    assert.equal((await bg.info(plain)).state, 'canceled', sql);
  }
  assert.equal(await db.query<{ n: number }>('SELECT count(*)::int AS n FROM cancel_batches WHERE n = 0').then((rows) => rows[0]!.n), 0);
  await bg.close();
});
