import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PgBackgroundError, type PgBackground, type WorkerHandle } from 'pg-background';
import { until, useDatabase } from './support/database.js';
import { unhandledRejections } from './support/rejections.js';
import { activeResources, resourcesGrownSince } from './support/resources.js';

const db = useDatabase(import.meta.filename);

test('close waits for running workers to commit, discarding rows nobody reads, then closes every connection', async () => {
  await db.query('CREATE TABLE closing (n int)');
  const bg = db.background();
  await bg.launch('SELECT pg_sleep(0.2); INSERT INTO closing VALUES (1)');
  // This one would block on its full queue forever if close() did not discard its rows.
  await bg.launch('SELECT g, md5(g::text) FROM generate_series(1, 300000) g; INSERT INTO closing VALUES (2)', { queueSize: 4096 });
  await bg.close();
  assert.deepEqual(await db.query('SELECT n FROM closing ORDER BY n'), [{ n: 1 }, { n: 2 }]);
  assert.deepEqual(await db.backends(), []);
});

test('close({ cancel: true }) cancels running workers: their work rolls back', async () => {
  await db.query('CREATE TABLE closing_cancel (n int)');
  const bg = db.background();
  await bg.launch('INSERT INTO closing_cancel VALUES (1); SELECT pg_sleep(30)');
  await until(
    async () => (await db.query("SELECT 1 FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND datname = current_database()")).length,
    'the worker to sleep',
  );
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

test('close runs launches still waiting for a slot: accepted work is never dropped', async () => {
  await db.query('CREATE TABLE closing_queued (n int)');
  const bg = db.background({ maxWorkers: 1, whenFull: 'queue' });
  await bg.launch('SELECT pg_sleep(0.2)');
  const queued = bg.launch('INSERT INTO closing_queued VALUES (1)');
  await until(async () => (await bg.list()).some((w) => w.state === 'pending'), 'a pending launch');
  await bg.close();
  assert.equal(typeof (await queued).pid, 'number');
  assert.deepEqual(await db.query('SELECT n FROM closing_queued'), [{ n: 1 }]);
});

test('close() drains fire-and-forget launches: every accepted submit runs and commits, free slots or not', async () => {
  await db.query('CREATE TABLE closing_fire_and_forget (n int)');
  for (const options of [{ maxWorkers: 16 }, { maxWorkers: 2, whenFull: 'queue' as const }]) {
    await db.query('TRUNCATE closing_fire_and_forget');
    const bg = db.background(options);
    const rejections = await unhandledRejections(async () => {
      for (let n = 1; n <= 6; n++) void bg.submit(`INSERT INTO closing_fire_and_forget VALUES (${n})`);
      await bg.close();
    });
    assert.deepEqual(rejections, [], JSON.stringify(options));
    assert.deepEqual(
      await db.query('SELECT n FROM closing_fire_and_forget ORDER BY n'),
      [1, 2, 3, 4, 5, 6].map((n) => ({ n })),
      JSON.stringify(options),
    );
    const stats = await db.background().stats();
    assert.equal(stats.workersLaunched, 0);
  }
  assert.deepEqual(await db.backends(), []);
});

test('close({ cancel: true }) and an expired close({ timeoutMs }) abort launches not yet started, without an unhandled rejection', async () => {
  await db.query('CREATE TABLE closing_unstarted (n int)');
  for (const options of [{ cancel: true }, { timeoutMs: 200 }]) {
    const bg = db.background({ maxWorkers: 1, whenFull: 'queue' });
    const sleeper = await bg.launch('SELECT pg_sleep(30)');
    let awaited: Promise<unknown> | undefined;
    const rejections = await unhandledRejections(async () => {
      void bg.submit('INSERT INTO closing_unstarted VALUES (1)');
      // One caller does await its launch: it still learns that the launch was aborted.
      awaited = bg.launch('INSERT INTO closing_unstarted VALUES (2)').catch((error: unknown) => error);
      await until(async () => (await bg.list()).filter((w) => w.state === 'pending').length === 2, 'two pending launches');
      await bg.close(options);
    });
    assert.deepEqual(rejections, [], JSON.stringify(options));
    assert.equal(((await awaited) as { code?: string }).code, 'PGBG_ABORTED', JSON.stringify(options));
    assert.equal(typeof sleeper.pid, 'number');
  }
  assert.deepEqual(await db.query('SELECT n FROM closing_unstarted'), []);
  assert.deepEqual(await db.backends(), []);
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
    await assert.rejects(
      async () => call(bg, h),
      (error: PgBackgroundError) => error.code === 'PGBG_CLOSED',
      name,
    );
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

test('close() while a worker connection is still being opened lets that launch run, and leaves nothing behind', async () => {
  await db.query('CREATE TABLE closing_opening (n int)');
  const before = activeResources();
  const bg = db.background();
  const launching = bg.launch('INSERT INTO closing_opening VALUES (1)');
  await new Promise((resolve) => setImmediate(resolve));
  await bg.close();
  assert.equal(typeof (await launching).pid, 'number');
  assert.deepEqual(await db.query('SELECT n FROM closing_opening'), [{ n: 1 }]);
  assert.deepEqual(resourcesGrownSince(before), []);
  await until(async () => (await db.backends()).length === 0, 'no backend left');
});
