// Cursor mode (launch(sql, { cursor: { batchRows } })): the worker fetches rows through a
// pg-cursor portal only as the reader makes room, so the server does only the work whose rows
// were fetched. A sequence's nextval() per row counts the rows the server produced (sequences are
// not transactional: a rollback keeps the count); FOR UPDATE locks show which rows it reached.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { PgBackground, WorkerHandle } from 'pg-background';
import { workerTag } from 'pg-background';
import { until, useDatabase } from './support/database.js';
import { untimed } from './support/result-info.js';

const db = useDatabase(import.meta.filename, {
  async setup(db) {
    await db.query('CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL)');
    await db.query("INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 1000) g");
    await db.query('CREATE TABLE audit (n bigint NOT NULL)');
  },
});

/** A fresh sequence counting the rows a query produces: `SELECT nextval('<name>')` per row. */
async function counter(name: string): Promise<() => Promise<number>> {
  await db.query(`CREATE SEQUENCE ${name}`);
  return async () => {
    const [row] = await db.query<{ last_value: string; is_called: boolean }>(`SELECT last_value, is_called FROM ${name}`);
    return row!.is_called ? Number(row!.last_value) : 0;
  };
}

/**
 * The worker's queue is full and its backend waits for our next fetch (ClientRead) with its portal
 * open (pg_stat_activity says 'active' until the Sync that ends the extended-protocol run).
 */
async function waitingForUs(bg: PgBackground, h: WorkerHandle): Promise<void> {
  await until(async () => {
    const info = await bg.info(h);
    if (info.queuedBytes < info.queueSize) return false;
    return (await db.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND state = 'active' AND wait_event = 'ClientRead'", [h.pid])).length;
  }, `worker ${h.pid} to wait for its reader with a full queue`);
}

test('read to the end: every row, in order, and the statement result info', async () => {
  const bg = db.background();
  const h = await bg.launch('SELECT g AS n, md5(g::text) AS m FROM generate_series(1, 25000) g', { cursor: { batchRows: 1000 } });
  let count = 0;
  let sum = 0;
  for await (const { n } of bg.result<{ n: number }>(h)) {
    count++;
    sum += n;
    assert.equal(n, count);
  }
  assert.equal(count, 25000);
  assert.equal(sum, 312512500);
  assert.deepEqual(untimed(await bg.resultInfo(h)), { rowCount: 25000, commandTag: 'SELECT', completed: true, hasError: false });
  assert.equal((await bg.info(h)).state, 'stopped');

  // With parameters, a partial last batch, and the array row mode.
  const p = await bg.launch(
    { text: 'SELECT g, $1::text AS t FROM generate_series(1, $2::int) g', values: ['x', 2501] },
    { cursor: { batchRows: 500 }, rowMode: 'array' },
  );
  const rows = await bg.result<unknown[]>(p).toArray();
  assert.equal(rows.length, 2501);
  assert.deepEqual(rows[2500], [2501, 'x']);
  assert.deepEqual(untimed(await bg.resultInfo(p)), { rowCount: 2501, commandTag: 'SELECT', completed: true, hasError: false });

  // A statement without rows: its count is the tag's; an INSERT ... RETURNING commits.
  const u = await bg.launch('UPDATE items SET name = name WHERE id <= 10', { cursor: { batchRows: 3 } });
  assert.deepEqual(await bg.result(u).toArray(), []);
  assert.deepEqual(untimed(await bg.resultInfo(u)), { rowCount: 10, commandTag: 'UPDATE', completed: true, hasError: false });
  const i = await bg.launch('INSERT INTO audit SELECT g FROM generate_series(1, 7) g RETURNING n', { cursor: { batchRows: 2 } });
  assert.deepEqual(
    (await bg.result<{ n: string }>(i).toArray()).map((r) => r.n),
    ['1', '2', '3', '4', '5', '6', '7'],
  );
  assert.deepEqual(untimed(await bg.resultInfo(i)), { rowCount: 7, commandTag: 'INSERT', completed: true, hasError: false });
  assert.deepEqual(await db.query('SELECT count(*)::int AS n FROM audit'), [{ n: 7 }]);
  await db.query('TRUNCATE audit');

  // A warm connection of these cursor tasks (whichever the pool hands out) serves the next task
  // cleanly: the pool reset it after the COMMIT. The probe's own unnamed portal is in pg_cursors
  // too (plain DML goes as Parse/Bind/Execute).
  const plain = await bg.launch("SELECT pg_backend_pid() AS pid, count(*)::int AS portals FROM pg_cursors WHERE name <> ''");
  const [probe] = await bg.result<{ pid: number; portals: number }>(plain).toArray();
  assert.ok([h.pid, p.pid, u.pid, i.pid].includes(probe!.pid), `pid ${probe!.pid} is one of the cursor tasks' connections`);
  assert.equal(probe!.portals, 0);
  await bg.close();
});

test('an early break closes the portal at once: the server produced only the fetched rows', async () => {
  const produced = await counter('break_counter');
  const bg = db.background();
  const batchRows = 100;
  const queueSize = 4096;
  const h = await bg.launch(`SELECT g, nextval('break_counter') AS k FROM generate_series(1, 1000000) g`, { cursor: { batchRows }, queueSize });
  const seen: number[] = [];
  for await (const { g } of bg.result<{ g: number }>(h)) {
    seen.push(g);
    if (seen.length === 250) break;
  }
  await bg.wait(h);
  const fetched = (await bg.resultInfo(h)).rowCount;
  // The server computed exactly the rows the worker fetched: at most one batch beyond the budget.
  assert.equal(await produced(), fetched);
  assert.ok(fetched >= 250 && fetched <= 250 + Math.ceil(queueSize / 20) + batchRows, `fetched ${fetched}`);
  assert.equal(fetched % batchRows, 0);
  assert.deepEqual(untimed(await bg.resultInfo(h)), { rowCount: fetched, commandTag: null, completed: true, hasError: false });
  assert.equal((await bg.info(h)).state, 'stopped');

  // result(h).stream() destroyed early is the same break: the portal closes at once.
  const streamed = await counter('stream_counter');
  const st = await bg.launch(`SELECT g, nextval('stream_counter') AS k FROM generate_series(1, 1000000) g`, { cursor: { batchRows }, queueSize });
  const stream = bg.result<{ g: number }>(st).stream();
  let taken = 0;
  for await (const _row of stream) if (++taken === 10) break; // destroys the stream
  await bg.wait(st);
  const fetchedByStream = (await bg.resultInfo(st)).rowCount;
  assert.equal(await streamed(), fetchedByStream);
  assert.ok(fetchedByStream < 1000, `fetched ${fetchedByStream}`);
  assert.equal((await bg.info(st)).state, 'stopped');

  // The default path, for contrast: the same break leaves the worker producing every row.
  const plain = await counter('plain_counter');
  const d = await bg.launch(`SELECT g, nextval('plain_counter') AS k FROM generate_series(1, 200000) g`, { queueSize });
  for await (const _row of bg.result(d)) break;
  await bg.wait(d);
  assert.equal(await plain(), 200000);
  await bg.close();
});

test('the rows fetched commit at an early break; a cancel rolls them back', async () => {
  await db.query(`CREATE FUNCTION audited(n int) RETURNS int LANGUAGE sql AS 'INSERT INTO audit VALUES (n) RETURNING n'`);
  const bg = db.background();
  const h = await bg.launch('SELECT audited(g) AS n FROM generate_series(1, 100000) g', { cursor: { batchRows: 50 }, queueSize: 4096 });
  let read = 0;
  for await (const _row of bg.result(h)) if (++read === 120) break;
  await bg.wait(h);
  const { rowCount } = await bg.resultInfo(h);
  assert.equal((await bg.info(h)).state, 'stopped');
  assert.deepEqual(await db.query('SELECT count(*)::int AS n FROM audit'), [{ n: rowCount }]);

  await db.query('TRUNCATE audit');
  const c = await bg.launch('SELECT audited(g) AS n FROM generate_series(1, 100000) g', { cursor: { batchRows: 50 }, queueSize: 4096 });
  const rows = bg.result(c)[Symbol.asyncIterator]();
  await rows.next();
  await waitingForUs(bg, c); // the queue is full: the backend waits for our next fetch
  // The server ignores a cancel request while its backend waits for the client: the worker's own
  // ROLLBACK stops it (no terminate: the grace is an hour, and the cancel resolves).
  await bg.cancel(c, { graceMs: 3_600_000 });
  const info = await bg.info(c);
  assert.equal(info.state, 'canceled');
  const error = (await bg.errorInfo(c))!;
  assert.equal(error.sqlstate, '57014');
  assert.equal(error.message, 'canceling statement due to user request (the cursor was closed and its transaction rolled back)');
  assert.deepEqual(await db.query('SELECT count(*)::int AS n FROM audit'), [{ n: 0 }]);
  await assert.rejects(rows.next(), { name: 'WorkerError', sqlstate: '57014' });
  await bg.close();
});

test('SELECT ... FOR UPDATE locks only the rows fetched so far', async () => {
  const bg = db.background();
  const h = await bg.launch('SELECT id, name FROM items ORDER BY id FOR UPDATE', { cursor: { batchRows: 10 }, queueSize: 4096 });
  const rows = bg.result<{ id: number }>(h)[Symbol.asyncIterator]();
  assert.equal((await rows.next()).value!.id, 1);
  await waitingForUs(bg, h);
  const fetched = (await bg.resultInfo(h)).rowCount;
  assert.ok(fetched > 0 && fetched < 1000, `fetched ${fetched}`);
  // Another session skips exactly the locked rows: those the worker fetched, no more.
  const free = await db.query<{ first: number; n: number }>(
    'SELECT min(id)::int AS first, count(*)::int AS n FROM (SELECT id FROM items FOR UPDATE SKIP LOCKED) t',
  );
  assert.deepEqual(free, [{ first: fetched + 1, n: 1000 - fetched }]);
  let count = 1;
  while (!(await rows.next()).done) count++;
  assert.equal(count, 1000);
  assert.deepEqual(untimed(await bg.resultInfo(h)), { rowCount: 1000, commandTag: 'SELECT', completed: true, hasError: false });
  // Committed: the locks are gone.
  assert.deepEqual(await db.query('SELECT count(*)::int AS n FROM (SELECT id FROM items FOR UPDATE SKIP LOCKED) t'), [{ n: 1000 }]);
  await bg.close();
});

test('backpressure: a paused reader holds at most the budget plus one batch', async () => {
  const bg = db.background();
  const queueSize = 16384;
  const batchRows = 200;
  const h = await bg.launch('SELECT g, md5(g::text) AS m FROM generate_series(1, 200000) g', { cursor: { batchRows }, queueSize });
  await waitingForUs(bg, h);
  const [info] = await bg.list();
  // A DataRow of (int, 32-char text) is 55 bytes: one batch is 11000 bytes.
  assert.ok(info!.queuedBytes >= queueSize, `queued ${info!.queuedBytes}`);
  assert.ok(info!.queuedBytes < queueSize + batchRows * 55, `queued ${info!.queuedBytes}`);
  assert.equal(info!.state, 'running');
  let count = 0;
  let maxQueued = 0;
  for await (const _row of bg.result(h)) {
    if (++count % 10000 === 0) {
      await new Promise((resolve) => setImmediate(resolve));
      maxQueued = Math.max(maxQueued, (await bg.list())[0]!.queuedBytes);
    }
  }
  assert.equal(count, 200000);
  assert.ok(maxQueued < queueSize + batchRows * 55, `max queued ${maxQueued}`);
  await bg.close();
});

test('a cancel during a fetch, an error in a batch, a terminate: nothing commits', async () => {
  const bg = db.background();
  // A cancel that lands on a fetch in progress (the batch takes a second).
  await db.query('TRUNCATE audit');
  const slow = await bg.launch('SELECT audited(g), pg_sleep(CASE WHEN g = 3 THEN 30 ELSE 0 END) FROM generate_series(1, 10) g', { cursor: { batchRows: 5 } });
  await until(
    async () => (await db.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event = 'PgSleep'", [slow.pid])).length,
    'the fetch to sleep',
  );
  await bg.cancel(slow);
  assert.equal((await bg.info(slow)).state, 'canceled');
  assert.deepEqual(await db.query('SELECT count(*)::int AS n FROM audit'), [{ n: 0 }]);

  // A server error in the third batch: rolled back, the error is the worker's.
  const bad = await bg.launch('SELECT audited(g), 1 / (g - 25) AS x FROM generate_series(1, 100) g', { cursor: { batchRows: 10 } });
  await assert.rejects(bg.result(bad).toArray(), { name: 'WorkerError', sqlstate: '22012' });
  assert.equal((await bg.info(bad)).state, 'error');
  assert.deepEqual(await db.query('SELECT count(*)::int AS n FROM audit'), [{ n: 0 }]);

  // A terminate from elsewhere while the worker waits for its reader: the session ends before
  // our COMMIT, so nothing commits (an error, not a cancel: nobody asked this instance to stop).
  const held = await bg.launch('SELECT audited(g) FROM generate_series(1, 100000) g', { cursor: { batchRows: 100 }, queueSize: 4096 });
  await waitingForUs(bg, held);
  await db.query('SELECT pg_terminate_backend($1)', [held.pid]);
  await bg.wait(held);
  assert.equal((await bg.info(held)).state, 'error');
  assert.equal((await bg.errorInfo(held))!.sqlstate, '57P01');
  assert.deepEqual(await db.query('SELECT count(*)::int AS n FROM audit'), [{ n: 0 }]);

  // A timeout is a cancel too.
  const timed = await bg.launch('SELECT audited(g) FROM generate_series(1, 100000) g', { cursor: { batchRows: 100 }, queueSize: 4096, timeoutMs: 300 });
  await bg.wait(timed);
  assert.equal((await bg.info(timed)).state, 'canceled');
  assert.deepEqual(await db.query('SELECT count(*)::int AS n FROM audit'), [{ n: 0 }]);
  await bg.close();
});

test('detach and close() read on to the end and commit, as in the default path', async () => {
  await db.query('TRUNCATE audit');
  const bg = db.background();
  const h = await bg.launch('SELECT audited(g) FROM generate_series(1, 5000) g', { cursor: { batchRows: 100 }, queueSize: 4096 });
  await waitingForUs(bg, h);
  await bg.detach(h);
  await until(async () => (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM audit'))[0]!.n === 5000, 'the detached worker to commit');
  const c = await bg.launch('SELECT audited(g) FROM generate_series(1, 3000) g', { cursor: { batchRows: 100 }, queueSize: 4096 });
  await waitingForUs(bg, c);
  await bg.close();
  assert.deepEqual(await db.query('SELECT count(*)::int AS n FROM audit'), [{ n: 8000 }]);
});

test('cursor is refused for several statements, with submit(), and when malformed', async () => {
  const bg = db.background();
  const refused = async (promise: Promise<unknown>, message: RegExp) => assert.rejects(promise, { code: 'PGBG_INVALID_ARGUMENT', message });
  await refused(bg.launch('SELECT 1; SELECT 2', { cursor: { batchRows: 10 } }), /single statement, got 2 statements/);
  await refused(bg.submit('SELECT 1', { cursor: { batchRows: 10 } }), /no `cursor` with submit\(\)/);
  await refused(bg.launch('SELECT 1', { cursor: { batchRows: 0 } }), /`cursor.batchRows` to be an integer from 1 to 1000000, got 0/);
  await refused(bg.launch('SELECT 1', { cursor: { batchRows: 1.5 } }), /`cursor.batchRows` to be an integer/);
  await refused(bg.launch('SELECT 1', { cursor: {} as never }), /`cursor.batchRows` to be given/);
  await refused(bg.launch('SELECT 1', { cursor: { batchRows: 10, rows: 5 } as never }), /Unknown option `rows` in `cursor`/);
  await refused(bg.launch('SELECT 1', { cursor: 10 as never }), /`cursor` to be an object, got/);
  assert.throws(() => db.background({ cursor: { batchRows: 1 } } as never), { code: 'PGBG_INVALID_ARGUMENT', message: /cursor/ });
  // COPY to the client and transaction control stay refused (0A000) in cursor mode too.
  const copy = await bg.launch('COPY items TO STDOUT', { cursor: { batchRows: 10 } });
  await assert.rejects(bg.result(copy).toArray(), { name: 'WorkerError', sqlstate: '0A000' });
  assert.equal((await bg.stats()).workersLaunched, 1);
  await bg.close();
});

test("errors and cancels inside the cursor's own COMMIT (a deferred trigger) roll back", async () => {
  await db.query('CREATE TABLE deferred (n int)');
  await db.query(`CREATE FUNCTION deferred_check() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF NEW.n = 0 THEN RAISE EXCEPTION 'n must not be 0' USING ERRCODE = '23514'; END IF;
      IF NEW.n = 99 THEN PERFORM pg_sleep(30); END IF;
      RETURN NULL;
    END $$`);
  await db.query('CREATE CONSTRAINT TRIGGER deferred_t AFTER INSERT ON deferred DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION deferred_check()');
  const bg = db.background();
  // Every row read, then the COMMIT fails: the worker's error, nothing committed.
  const bad = await bg.launch('INSERT INTO deferred SELECT g - 1 FROM generate_series(1, 3) g RETURNING n', { cursor: { batchRows: 2 } });
  await assert.rejects(bg.result(bad).toArray(), { name: 'WorkerError', sqlstate: '23514', message: 'n must not be 0' });
  assert.equal((await bg.info(bad)).state, 'error');
  // A cancel that lands in the COMMIT (the trigger sleeps there): canceled, nothing committed.
  const slow = await bg.launch('INSERT INTO deferred VALUES (1), (99) RETURNING n', { cursor: { batchRows: 1 } });
  const rows = bg.result<{ n: number }>(slow).toArray();
  rows.catch(() => {}); // asserted below, once the cancel is done
  await until(
    async () => (await db.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event = 'PgSleep'", [slow.pid])).length,
    'the COMMIT to sleep',
  );
  await bg.cancel(slow);
  assert.equal((await bg.info(slow)).state, 'canceled');
  await assert.rejects(rows, { name: 'WorkerError', sqlstate: '57014' });
  assert.deepEqual(await db.query('SELECT count(*)::int AS n FROM deferred'), [{ n: 0 }]);
  // And one that commits: both rows stay.
  const ok = await bg.launch('INSERT INTO deferred VALUES (1), (2) RETURNING n', { cursor: { batchRows: 1 } });
  assert.deepEqual(await bg.result(ok).toArray(), [{ n: 1 }, { n: 2 }]);
  assert.deepEqual(untimed(await bg.resultInfo(ok)), { rowCount: 2, commandTag: 'INSERT', completed: true, hasError: false });
  assert.deepEqual(await db.query('SELECT count(*)::int AS n FROM deferred'), [{ n: 2 }]);
  await bg.close();
});

test('a cursor-mode worker is tagged while it runs and its warm connection is pgbg:idle again after it', async () => {
  const bg = db.background({ maxIdle: 1 });
  const h = await bg.launch('SELECT g FROM generate_series(1, 100000) g', { cursor: { batchRows: 100 }, label: 'cursor/tagged' });
  const rows = bg.result<{ g: number }>(h)[Symbol.asyncIterator]();
  assert.deepEqual((await rows.next()).value, { g: 1 });
  const tagOf = async () =>
    (await db.query<{ application_name: string }>('SELECT application_name FROM pg_stat_activity WHERE pid = $1', [h.pid]))[0]?.application_name;
  assert.equal(await tagOf(), workerTag(h.cookie, 'cursor/tagged'));
  await rows.return!();
  await bg.wait(h);
  await until(async () => (await tagOf()) === 'pgbg:idle', 'the warm connection to be reset');
  await bg.close();
});
