import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PgBackgroundError } from 'pg-background';
import { until, useDatabase } from './support/database.js';

const db = useDatabase(import.meta.filename);

test('launch resolves while the SQL is still running, with the real backend pid and a 64-bit cookie', async () => {
  const bg = db.background();
  const h = await bg.launch('SELECT pg_sleep(30)', { label: 'etl/prod/customer-sync' });
  assert.equal(typeof h.pid, 'number');
  assert.equal(typeof h.cookie, 'bigint');
  assert.ok(h.cookie >= -(2n ** 63n) && h.cookie < 2n ** 63n && h.cookie !== 0n);
  assert.equal(h.label, 'etl/prod/customer-sync');
  assert.ok(Object.isFrozen(h));

  // The handle's pid is the server's own pid for the backend running the SQL.
  const backend = await until(
    async () => (await db.query('SELECT state, query FROM pg_stat_activity WHERE pid = $1', [h.pid])).find((b) => b.state === 'active'),
    'the worker backend to be active',
  );
  assert.equal(backend.query, 'SELECT pg_sleep(30)');
  const [info] = await bg.list();
  assert.equal(info!.state, 'running');
  assert.equal(info!.pid, h.pid);
  await bg.cancel(h);
  await bg.close();
});

test('failing SQL does not make launch throw: the failure is recorded on the worker', async () => {
  const bg = db.background();
  const h = await bg.launch('SELECT 1/0 AS boom', { label: 'div' });
  await bg.wait(h);
  const [info] = await bg.list();
  assert.equal(info!.state, 'error');
  assert.equal(info!.lastError, 'division by zero');
  assert.equal((await bg.errorInfo(h))?.sqlstate, '22012');
  await assert.rejects(bg.result(h).toArray(), {
    name: 'WorkerError',
    code: 'PGBG_WORKER_FAILED',
    sqlstate: '22012',
    pid: h.pid,
    cookie: h.cookie,
    label: 'div',
  });
  await bg.close();
});

test('a syntax error is the worker error, with its position', async () => {
  const bg = db.background();
  const h = await bg.launch('SELECT 1; SELEC 2');
  await bg.wait(h);
  const info = await bg.errorInfo(h);
  assert.equal(info?.sqlstate, '42601');
  assert.equal(info?.position, 11);
  await bg.close();
});

test('handles are distinct and a cookie is never reused', async () => {
  const bg = db.background();
  const handles = await Promise.all(Array.from({ length: 8 }, (_, i) => bg.launch(`SELECT ${i} AS i`)));
  assert.equal(new Set(handles.map((h) => h.cookie)).size, 8);
  for (const [i, h] of handles.entries()) assert.deepEqual(await bg.result(h).toArray(), [{ i }]);
  await bg.close();
});

test('a worker reads its own SQL string unchanged, including unicode and comments', async () => {
  const bg = db.background();
  const h = await bg.launch("-- leading comment\nSELECT 'żółw 🐢' AS s /* trailing */");
  assert.deepEqual(await bg.result(h).toArray(), [{ s: 'żółw 🐢' }]);
  await bg.close();
});

test('parameters bind to a single statement', async () => {
  const bg = db.background();
  const h = await bg.launch({ text: 'SELECT $1::int + $2::int AS sum, $3::text AS t', values: [40, 2, "it's"] });
  assert.deepEqual(await bg.result(h).toArray(), [{ sum: 42, t: "it's" }]);
  await assert.rejects(bg.launch({ text: 'SELECT $1::int; SELECT 2', values: [1] }), (error: PgBackgroundError) => {
    assert.equal(error.code, 'PGBG_INVALID_ARGUMENT');
    assert.match(error.message, /single statement/);
    return true;
  });
  await bg.close();
});

test('the worker runs as the login role and list() says so', async () => {
  const bg = db.background();
  const h = await bg.launch('SELECT current_user AS u');
  const [{ u }] = (await bg.result(h).toArray()) as [{ u: string }];
  const [info] = await bg.list();
  assert.equal(info!.user, u);
  await bg.close();
});

test('errors serialise to JSON (the bigint cookie as a string) for loggers', async () => {
  const bg = db.background();
  const h = await bg.launch('SELECT 1/0', { label: 'json' });
  await bg.wait(h);
  const error = await bg
    .result(h)
    .toArray()
    .catch((e: unknown) => e);
  const json = JSON.parse(JSON.stringify(error)) as Record<string, unknown>;
  assert.equal(json.name, 'WorkerError');
  assert.equal(json.code, 'PGBG_WORKER_FAILED');
  assert.equal(json.message, 'division by zero');
  assert.equal(json.sqlstate, '22012');
  assert.equal(json.cookie, String(h.cookie));
  assert.equal(json.pid, h.pid);
  assert.equal(json.label, 'json');
  await bg.close();
});

test('sqlPreview keeps the first 120 code points and never cuts one in half', async () => {
  const bg = db.background();
  const sql = `SELECT '${'🐢'.repeat(200)}' AS turtles`;
  const h = await bg.launch(sql);
  await bg.wait(h);
  const { sqlPreview } = await bg.info(h);
  assert.equal([...sqlPreview].length, 120);
  assert.equal(sqlPreview, [...sql].slice(0, 120).join(''));
  assert.ok(sqlPreview.isWellFormed());
  await bg.close();
});

test("with standard_conforming_strings off, a task with parameters is planned again by the server's rules and runs with its values", async () => {
  const bg = db.background();
  // Off, a backslash in a plain literal is an escape: the plan made at launch (rules on) is
  // remade on the connection, from the text and the values the plan kept.
  const sql = { text: "SELECT $1::text AS v, $2::int AS n, 'a\\\\b; c' AS w", values: ['x; y', 7] };
  const result = await bg.run(sql, { settings: { standard_conforming_strings: 'off', escape_string_warning: 'off' } });
  assert.equal(result.state, 'stopped');
  assert.deepEqual(result.rows, [{ v: 'x; y', n: 7, w: 'a\\b; c' }]);
  await bg.close();
});
