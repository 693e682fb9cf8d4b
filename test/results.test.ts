import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PgBackgroundError } from 'pg-background';
import { useDatabase } from './support/database.js';
import { untimed } from './support/result-info.js';

const db = useDatabase(import.meta.filename);

test('rows are objects keyed by column name, parsed by node-postgres type parsers', async () => {
  const bg = db.background();
  const h = await bg.launch(
    "SELECT 1::int AS i, 2.5::float8 AS f, true AS b, NULL::text AS n, '2024-01-02T03:04:05Z'::timestamptz AS ts, '{1,2}'::int[] AS a, '{\"k\":1}'::jsonb AS j, 9007199254740993::int8 AS big",
  );
  assert.deepEqual(await bg.result(h).toArray(), [
    { i: 1, f: 2.5, b: true, n: null, ts: new Date('2024-01-02T03:04:05Z'), a: [1, 2], j: { k: 1 }, big: '9007199254740993' },
  ]);
  await bg.close();
});

test('only the last statement returns rows; commandTag and rowCount describe it', async () => {
  const bg = db.background();
  await db.query('CREATE TABLE last_stmt (id int)');
  const cases: [string, unknown[], string, number][] = [
    ['SELECT 1 AS a, 2 AS b; SELECT 3 AS x', [{ x: 3 }], 'SELECT', 1],
    ['SELECT g FROM generate_series(1, 5) g; INSERT INTO last_stmt SELECT generate_series(1, 3)', [], 'INSERT', 3],
    ['UPDATE last_stmt SET id = id + 1', [], 'UPDATE', 3],
    ['CREATE TABLE made_here (x int)', [], 'CREATE TABLE', 0],
    ['INSERT INTO last_stmt VALUES (7) RETURNING id', [{ id: 7 }], 'INSERT', 1],
    ['DELETE FROM last_stmt WHERE id = 7; SELECT count(*)::int AS n FROM last_stmt', [{ n: 3 }], 'SELECT', 1],
    ['SHOW server_encoding', [{ server_encoding: 'UTF8' }], 'SHOW', 1],
    ['DO $$ BEGIN PERFORM 1; END $$', [], 'DO', 0],
  ];
  for (const [sql, rows, commandTag, rowCount] of cases) {
    const h = await bg.launch(sql);
    assert.deepEqual(await bg.result(h).toArray(), rows, sql);
    assert.deepEqual(untimed(await bg.resultInfo(h)), { rowCount, commandTag, completed: true, hasError: false }, sql);
  }
  await bg.close();
});

test('rowCount counts every row of a result read in many socket reads', async () => {
  const bg = db.background();
  const h = await bg.launch('SELECT g FROM generate_series(1, 1000) g', { queueSize: 4096 });
  let sum = 0;
  let count = 0;
  for await (const { g } of bg.result<{ g: number }>(h)) {
    sum += g;
    count++;
  }
  assert.equal(count, 1000);
  assert.equal(sum, 500500);
  assert.deepEqual(untimed(await bg.resultInfo(h)), { rowCount: 1000, commandTag: 'SELECT', completed: true, hasError: false });
  await bg.close();
});

test('result(h) can be taken once: a second call throws PGBG_ALREADY_CONSUMED and consumed is set', async () => {
  const bg = db.background();
  const h = await bg.launch('SELECT 1 AS one');
  const result = bg.result(h);
  assert.throws(
    () => bg.result(h),
    (error: PgBackgroundError) => error.code === 'PGBG_ALREADY_CONSUMED' && error.message.includes(String(h.pid)),
  );
  assert.equal((await bg.list())[0]!.consumed, false);
  assert.deepEqual(await result.toArray(), [{ one: 1 }]);
  assert.equal((await bg.list())[0]!.consumed, true);
  assert.throws(() => bg.result(h), { code: 'PGBG_ALREADY_CONSUMED' });
  await bg.close();
});

test('resultInfo does not consume, and reports progress while the worker runs', async () => {
  const bg = db.background();
  const h = await bg.launch('SELECT g FROM generate_series(1, 3) g; SELECT pg_sleep(30)');
  assert.deepEqual(untimed(await bg.resultInfo(h)), { rowCount: 0, commandTag: null, completed: false, hasError: false });
  await bg.cancel(h);
  assert.deepEqual(untimed(await bg.resultInfo(h)), { rowCount: 0, commandTag: null, completed: true, hasError: true });
  const h2 = await bg.launch('SELECT 1 AS x UNION ALL SELECT 2');
  await bg.wait(h2);
  assert.deepEqual(untimed(await bg.resultInfo(h2)), { rowCount: 2, commandTag: 'SELECT', completed: true, hasError: false });
  assert.deepEqual(await bg.result(h2).toArray(), [{ x: 1 }, { x: 2 }]);
  await bg.close();
});

test("rowMode 'array' keeps duplicate column names; a column named __proto__ stays data", async () => {
  const bg = db.background();
  const h = await bg.launch('SELECT 1 AS a, 2 AS a', { rowMode: 'array' });
  const result = bg.result(h);
  assert.deepEqual(await result.toArray(), [[1, 2]]);
  assert.deepEqual(
    result.fields?.map((f) => f.name),
    ['a', 'a'],
  );
  const h2 = await bg.launch(`SELECT '{"polluted": true}'::jsonb AS "__proto__", 1 AS a`);
  const [row] = (await bg.result(h2).toArray()) as Record<string, unknown>[];
  assert.deepEqual(Object.keys(row!), ['__proto__', 'a']);
  assert.equal(Object.getPrototypeOf(row), Object.prototype);
  assert.equal((row as { polluted?: boolean }).polluted, undefined);
  await bg.close();
});

test('types: per-instance and per-launch parsers, without touching pg globals', async () => {
  const parseInt8 = { getTypeParser: (oid: number) => (oid === 20 ? (value: string) => BigInt(value) : (value: string) => value) };
  const bg = db.background({ types: parseInt8 });
  const h = await bg.launch('SELECT 9007199254740993::int8 AS big, 1::int AS small');
  assert.deepEqual(await bg.result(h).toArray(), [{ big: 9007199254740993n, small: '1' }]);
  const h2 = await bg.launch('SELECT 5::int8 AS big', { types: { getTypeParser: () => (value: string) => `<${value}>` } });
  assert.deepEqual(await bg.result(h2).toArray(), [{ big: '<5>' }]);
  const other = db.background();
  const h3 = await other.launch('SELECT 5::int8 AS big');
  assert.deepEqual(await other.result(h3).toArray(), [{ big: '5' }]);
  await Promise.all([bg.close(), other.close()]);
});

test('a type parser that throws ends the iteration with PGBG_TYPE_PARSER_FAILED and frees the worker', async () => {
  const bg = db.background({
    types: {
      getTypeParser: () => () => {
        throw new Error('bad value');
      },
    },
  });
  const h = await bg.launch('SELECT g FROM generate_series(1, 100000) g', { queueSize: 4096 });
  await assert.rejects(bg.result(h).toArray(), { code: 'PGBG_TYPE_PARSER_FAILED', pid: h.pid, message: /column "g" \(type oid 23\).*bad value/ });
  await bg.wait(h);
  assert.equal((await bg.list())[0]!.state, 'stopped');
  assert.equal((await bg.list())[0]!.consumed, true);
  await bg.close();
});

test('a types.getTypeParser that throws fails the reading with PGBG_TYPE_PARSER_FAILED, not the process; the worker commits, its connection is reused', async () => {
  await db.query('CREATE TABLE parser_throws (n int)');
  const bg = db.background({ maxWorkers: 1 });
  const types = {
    getTypeParser(): never {
      throw new Error('no parser for you');
    },
  };
  const h = await bg.launch('INSERT INTO parser_throws SELECT g FROM generate_series(1, 3) g RETURNING n', { types, label: 'broken-types' });
  await assert.rejects(bg.result(h).toArray(), (error: PgBackgroundError) => {
    assert.ok(error instanceof PgBackgroundError);
    assert.equal(error.code, 'PGBG_TYPE_PARSER_FAILED');
    assert.equal(error.pid, h.pid);
    assert.equal(error.label, 'broken-types');
    assert.match(error.message, /column "n" \(type oid 23\).*no parser for you/);
    assert.equal((error.cause as Error).message, 'no parser for you');
    return true;
  });
  await bg.wait(h);
  const [info] = await bg.list();
  assert.deepEqual([info!.state, info!.consumed, info!.lastError], ['stopped', true, null]);
  assert.deepEqual(await db.query('SELECT count(*)::int AS n FROM parser_throws'), [{ n: 3 }]);
  // Nothing was left half-read on the connection: the next task runs on it.
  const next = await bg.launch('SELECT 2 AS two');
  assert.equal(next.pid, h.pid);
  assert.deepEqual(await bg.result(next).toArray(), [{ two: 2 }]);
  // A getTypeParser that returns no function is the same failure, at the first row.
  const h2 = await bg.launch('SELECT 1 AS one', { types: { getTypeParser: () => undefined as never } });
  await assert.rejects(bg.result(h2).toArray(), { code: 'PGBG_TYPE_PARSER_FAILED', message: /column "one" \(type oid 23\).*not a function/ });
  await bg.close();
});

test('breaking out of for await drops the rest; the worker still commits', async () => {
  const bg = db.background();
  await db.query('CREATE TABLE after_break (n int)');
  const h = await bg.launch('INSERT INTO after_break SELECT g FROM generate_series(1, 50000) g RETURNING n', { queueSize: 4096 });
  let seen = 0;
  for await (const _row of bg.result(h)) {
    if (++seen === 10) break;
  }
  await bg.wait(h);
  const [info] = await bg.list();
  assert.equal(info!.state, 'stopped');
  assert.equal(info!.consumed, true);
  assert.deepEqual(await db.query('SELECT count(*)::int AS n FROM after_break'), [{ n: 50000 }]);
  assert.deepEqual(untimed(await bg.resultInfo(h)), { rowCount: 50000, commandTag: 'INSERT', completed: true, hasError: false });
  await bg.close();
});

test('rows streamed before a later error are delivered, then the error is thrown', async () => {
  const bg = db.background();
  const h = await bg.launch('SELECT 10 / (3 - g) AS q FROM generate_series(1, 5) g');
  const seen: unknown[] = [];
  await assert.rejects(
    (async () => {
      for await (const row of bg.result(h)) seen.push(row);
    })(),
    { name: 'WorkerError', sqlstate: '22012' },
  );
  assert.deepEqual(seen, [{ q: 5 }, { q: 10 }]);
  await bg.close();
});

test('toArray collects exactly what for await does, in order, across many waits for a small queue, and then the worker is consumed', async () => {
  const bg = db.background();
  const sql = 'SELECT g, repeat(md5(g::text), 4) AS m FROM generate_series(1, 20000) g';
  const a = await bg.launch(sql, { queueSize: 4096 });
  const collected = await bg.result<{ g: number; m: string }>(a).toArray();
  const b = await bg.launch(sql, { queueSize: 4096 });
  const iterated: { g: number; m: string }[] = [];
  for await (const row of bg.result<{ g: number; m: string }>(b)) iterated.push(row);
  assert.equal(collected.length, 20000);
  assert.deepEqual(collected, iterated);
  assert.deepEqual(collected.slice(0, 2), [
    { g: 1, m: 'c4ca4238a0b923820dcc509a6f75849b'.repeat(4) },
    { g: 2, m: 'c81e728d9d4c2f636f067f89cc14862c'.repeat(4) },
  ]);
  assert.equal((await bg.info(a)).consumed, true);
  assert.equal((await bg.info(a)).state, 'stopped');
  await bg.close();
});
