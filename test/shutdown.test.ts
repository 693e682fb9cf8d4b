import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PgBackgroundError, type PgBackground, type WorkerHandle } from 'pg-background';
import { until, useDatabase } from './support/database.js';
import { activeResources, resourcesGrownSince } from './support/resources.js';

const db = useDatabase(import.meta.filename);

test('close waits for running workers to commit, discarding rows nobody reads, then closes every connection', async () => {
  await db.query('CREATE TABLE closing (n int)');
  const bg = db.background();
  await bg.launch('SELECT pg_sleep(0.2); INSERT INTO closing VALUES (1)');
  // This one would block on its full queue forever if close() did not discard its rows.
  await bg.launch("SELECT g, md5(g::text) FROM generate_series(1, 300000) g; INSERT INTO closing VALUES (2)", { queueSize: 4096 });
  await bg.close();
  assert.deepEqual(await db.query('SELECT n FROM closing ORDER BY n'), [{ n: 1 }, { n: 2 }]);
  assert.deepEqual(await db.backends(), []);
});

test('close({ cancel: true }) cancels running workers: their work rolls back', async () => {
  await db.query('CREATE TABLE closing_cancel (n int)');
  const bg = db.background();
  await bg.launch('INSERT INTO closing_cancel VALUES (1); SELECT pg_sleep(30)');
  await until(async () => (await db.query("SELECT 1 FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND datname = current_database()")).length, 'the worker to sleep');
  await bg.close({ cancel: true });
  assert.deepEqual(await db.query('SELECT count(*)::int AS n FROM closing_cancel'), [{ n: 0 }]);
  assert.deepEqual(await db.backends(), []);
});

test('close({ timeoutMs }) waits that long, then cancels', async () => {
  await db.query('CREATE TABLE closing_timeout (n int)');
  const bg = db.background();
  await bg.launch('INSERT INTO closing_timeout VALUES (1)');
  await bg.launch('INSERT INTO closing_timeout VALUES (2); SELECT pg_sleep(30)');
  await bg.close({ timeoutMs: 300 });
  assert.deepEqual(await db.query('SELECT n FROM closing_timeout'), [{ n: 1 }]);
});

test('close cancels launches still waiting for a slot', async () => {
  const bg = db.background({ maxWorkers: 1, whenFull: 'queue' });
  await bg.launch('SELECT pg_sleep(0.2)');
  const queued = bg.launch('SELECT 1');
  const rejected = assert.rejects(queued, { code: 'PGBG_ABORTED' });
  await until(async () => (await bg.list()).some((w) => w.state === 'pending'), 'a pending launch');
  await bg.close();
  await rejected;
});

test('after close every call throws or rejects PGBG_CLOSED; close is idempotent', async () => {
  const bg = db.background();
  const h = await bg.launch('SELECT 1');
  await bg.wait(h);
  const closing = bg.close();
  assert.equal(bg.close(), closing);
  await closing;
  await bg.close();
  const calls: [string, (bg: PgBackground, h: WorkerHandle) => unknown][] = [
    ['launch', (b) => b.launch('SELECT 1')],
    ['submit', (b) => b.submit('SELECT 1')],
    ['result', (b, h) => b.result(h)],
    ['resultInfo', (b, h) => b.resultInfo(h)],
    ['errorInfo', (b, h) => b.errorInfo(h)],
    ['wait', (b, h) => b.wait(h)],
    ['cancel', (b, h) => b.cancel(h)],
    ['detach', (b, h) => b.detach(h)],
    ['detachAll', (b) => b.detachAll()],
    ['cancelAll', (b) => b.cancelAll()],
    ['list', (b) => b.list()],
    ['stats', (b) => b.stats()],
    ['getProgress', (b, h) => b.getProgress(h)],
    ['install', (b) => b.install()],
  ];
  for (const [name, call] of calls) {
    await assert.rejects(async () => call(bg, h), (error: PgBackgroundError) => error.code === 'PGBG_CLOSED', name);
  }
});

test('a result being read when close() is called ends with PGBG_CLOSED', async () => {
  const bg = db.background();
  const h = await bg.launch('SELECT g FROM generate_series(1, 1000000) g', { queueSize: 4096 });
  const rows = bg.result(h)[Symbol.asyncIterator]();
  await rows.next();
  await bg.close();
  await assert.rejects(rows.next(), { code: 'PGBG_CLOSED' });
});

test('await using closes the instance at the end of the scope', async () => {
  let handle: WorkerHandle;
  {
    await using bg = db.background();
    handle = await bg.launch('SELECT pg_sleep(0.1)');
  }
  assert.equal(typeof handle.pid, 'number');
  assert.deepEqual(await db.backends(), []);
});

test('close leaves no connection, timer or socket behind', async () => {
  const before = activeResources();
  const bg = db.background({ workerTimeoutMs: 60_000, retentionMs: 60_000 });
  await bg.install();
  const handles = await Promise.all([bg.launch('SELECT 1'), bg.submit('SELECT 2'), bg.launch('SELECT pg_sleep(0.1)')]);
  const sleeper = await bg.launch('SELECT pg_sleep(30)');
  await bg.cancel(sleeper, { graceMs: 0 });
  for (const h of handles) await bg.wait(h);
  await bg.close();
  assert.deepEqual(await db.backends(), []);
  assert.deepEqual(resourcesGrownSince(before), []);
});

test('close() while a worker connection is still being opened leaves nothing behind', async () => {
  const before = activeResources();
  const bg = db.background();
  const launching = bg.launch('SELECT 1').catch((error: unknown) => error);
  await new Promise((resolve) => setImmediate(resolve));
  await bg.close();
  assert.equal(((await launching) as { code?: string }).code, 'PGBG_ABORTED');
  assert.deepEqual(resourcesGrownSince(before), []);
  await until(async () => (await db.backends()).length === 0, 'no backend left');
});
