import { test } from 'node:test';
import assert from 'node:assert/strict';
import { useDatabase } from './support/database.js';

const db = useDatabase(import.meta.filename);

test('stats count every launched worker exactly once, detached ones included', async () => {
  const bg = db.background({ maxWorkers: 8 });
  const check = async () => {
    const s = await bg.stats();
    assert.equal(s.workersLaunched, s.workersCompleted + s.workersFailed + s.workersCanceled + s.workersActive, JSON.stringify(s));
    return s;
  };
  assert.deepEqual(await check(), {
    workersLaunched: 0,
    workersCompleted: 0,
    workersFailed: 0,
    workersCanceled: 0,
    workersTimedOut: 0,
    workersActive: 0,
    attempts: 0,
    retries: 0,
    avgExecutionMs: 0,
    maxWorkers: 8,
  });
  const ok = await bg.launch('SELECT 1');
  const failed = await bg.launch('SELECT 1/0');
  const canceled = await bg.launch('SELECT pg_sleep(30)');
  const detached = await bg.launch('SELECT pg_sleep(0.2)');
  const submitted = await bg.submit('SELECT 1/0');
  await bg.detach(detached);
  await check();
  await bg.cancel(canceled);
  await Promise.all([bg.wait(ok), bg.wait(failed), bg.wait(submitted)]);
  await check();
  await bg.close();
  const s = await db.background().stats();
  assert.equal(s.workersLaunched, 0);
});

test('avgExecutionMs averages workers that ran, not launches that never started', async () => {
  const bg = db.background({ maxWorkers: 1, whenFull: 'queue' });
  const ran = await bg.launch('SELECT pg_sleep(0.05)');
  // Never started: aborted while waiting for the slot.
  const controller = new AbortController();
  const queued = bg.launch('SELECT 1', { signal: controller.signal });
  const rejected = assert.rejects(queued, { code: 'PGBG_ABORTED' });
  controller.abort();
  await rejected;
  await bg.wait(ran);
  const [never, started] = await bg.list();
  assert.deepEqual([never!.state, never!.startedAt, started!.state], ['canceled', null, 'stopped']);
  const s = await bg.stats();
  assert.deepEqual([s.workersLaunched, s.workersCompleted, s.workersCanceled], [2, 1, 1]);
  assert.equal(s.avgExecutionMs, started!.finishedAt!.getTime() - started!.startedAt!.getTime());
  assert.ok(s.avgExecutionMs >= 50, String(s.avgExecutionMs));
  await bg.close();
});

test('stats after close: counts final, average execution time from finished workers', async () => {
  const bg = db.background();
  const handles = await Promise.all([bg.launch('SELECT pg_sleep(0.05)'), bg.launch('SELECT pg_sleep(0.05)'), bg.launch('SELECT 1/0')]);
  for (const h of handles) await bg.wait(h);
  const s = await bg.stats();
  assert.deepEqual([s.workersLaunched, s.workersCompleted, s.workersFailed, s.workersCanceled, s.workersActive], [3, 2, 1, 0, 0]);
  const executing = (await bg.list()).reduce((total, w) => total + (w.finishedAt!.getTime() - w.startedAt!.getTime()), 0);
  assert.equal(s.avgExecutionMs, executing / 3);
  await bg.close();
});
