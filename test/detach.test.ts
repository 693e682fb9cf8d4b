import { test } from 'node:test';
import assert from 'node:assert/strict';
import { until, useDatabase } from './support/database.js';

const db = useDatabase(import.meta.filename);

test('detach forgets the worker; it keeps running and commits', async () => {
  await db.query('CREATE TABLE detached (n int)');
  const bg = db.background();
  const h = await bg.launch('SELECT pg_sleep(0.3); INSERT INTO detached VALUES (99)');
  await bg.detach(h);
  assert.deepEqual(await bg.list(), []);
  await assert.rejects(bg.wait(h), { code: 'PGBG_UNKNOWN_WORKER' });
  await assert.rejects(bg.detach(h), { code: 'PGBG_UNKNOWN_WORKER' });
  assert.equal((await bg.stats()).workersActive, 1);
  await until(async () => (await db.query('SELECT n FROM detached')).length === 1, 'the detached worker to commit');
  await until(async () => (await bg.stats()).workersCompleted === 1, 'the detached worker to be counted');
  await bg.close();
});

test('detaching while the result is being read ends the read with PGBG_DETACHED', async () => {
  const bg = db.background();
  const h = await bg.launch('SELECT g FROM generate_series(1, 1000000) g', { queueSize: 4096 });
  const rows = bg.result(h)[Symbol.asyncIterator]();
  assert.deepEqual((await rows.next()).value, { g: 1 });
  await bg.detach(h);
  await assert.rejects(rows.next(), { code: 'PGBG_DETACHED', pid: h.pid });
  await bg.close();
});

test('detachAll forgets every tracked worker, finished or not, and says how many', async () => {
  const bg = db.background();
  const done = await bg.launch('SELECT 1');
  await bg.wait(done);
  await bg.launch('SELECT pg_sleep(0.2)');
  await bg.submit('SELECT pg_sleep(0.2)');
  assert.equal(await bg.detachAll(), 3);
  assert.deepEqual(await bg.list(), []);
  assert.equal(await bg.detachAll(), 0);
  await bg.close();
  const stats = await db.background().stats();
  assert.equal(stats.workersLaunched, 0);
});

test('close waits for detached workers to commit', async () => {
  await db.query('CREATE TABLE detached_close (n int)');
  const bg = db.background();
  const h = await bg.launch('SELECT pg_sleep(0.3); INSERT INTO detached_close VALUES (1)');
  await bg.detach(h);
  await bg.close();
  assert.deepEqual(await db.query('SELECT n FROM detached_close'), [{ n: 1 }]);
});

test('a detached handle is PGBG_UNKNOWN_WORKER, then PGBG_COOKIE_MISMATCH once its warm connection runs another worker', async () => {
  const bg = db.background({ maxWorkers: 1 });
  const h = await bg.launch('SELECT 1');
  await bg.wait(h);
  await bg.detach(h);
  await assert.rejects(bg.info(h), { code: 'PGBG_UNKNOWN_WORKER', pid: h.pid });
  const next = await bg.launch('SELECT 2');
  assert.equal(next.pid, h.pid);
  await assert.rejects(bg.info(h), { code: 'PGBG_COOKIE_MISMATCH', pid: h.pid });
  await bg.wait(next);
  await bg.close();
});
