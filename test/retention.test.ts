import { test } from 'node:test';
import assert from 'node:assert/strict';
import { until, useDatabase } from './support/database.js';

const db = useDatabase(import.meta.filename);

test('finished workers are pruned retentionMs after they finish, unread rows too; running ones never', async () => {
  const bg = db.background({ retentionMs: 200 });
  const running = await bg.launch('SELECT pg_sleep(30)', { label: 'running' });
  const finished = await bg.launch('SELECT g FROM generate_series(1, 100) g', { label: 'finished' });
  await bg.wait(finished);
  assert.deepEqual(
    (await bg.list()).map((w) => w.label),
    ['finished', 'running'],
  );
  await until(async () => (await bg.list()).length === 1, 'the finished worker to be pruned');
  assert.deepEqual(
    (await bg.list()).map((w) => [w.label, w.state]),
    [['running', 'running']],
  );
  assert.throws(() => bg.result(finished), { code: 'PGBG_UNKNOWN_WORKER' });
  // Pruning does not change the counters.
  assert.equal((await bg.stats()).workersCompleted, 1);
  await bg.cancel(running);
  await until(async () => (await bg.list()).length === 0, 'the cancelled worker to be pruned');
  await bg.close();
});

test('retentionMs 0 forgets a worker as soon as it finishes', async () => {
  const bg = db.background({ retentionMs: 0 });
  const h = await bg.launch('SELECT 1');
  await bg.wait(h);
  assert.deepEqual(await bg.list(), []);
  await bg.close();
});

test('a reader that started before pruning keeps reading its rows', async () => {
  const bg = db.background({ retentionMs: 50 });
  const h = await bg.launch('SELECT g FROM generate_series(1, 10) g');
  const rows = bg.result<{ g: number }>(h);
  await bg.wait(h);
  const seen: number[] = [];
  for await (const { g } of rows) {
    seen.push(g);
    if (g === 1) await until(async () => (await bg.list()).length === 0, 'pruning');
  }
  assert.deepEqual(seen, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  await bg.close();
});

test('maxRetained keeps at most that many finished workers listed, oldest forgotten first; running ones stay', async () => {
  const bg = db.background({ maxRetained: 2 });
  const sleeper = await bg.launch('SELECT pg_sleep(30)', { label: 'running' });
  for (const label of ['a', 'b', 'c', 'd']) await bg.wait(await bg.launch('SELECT 1', { label }));
  assert.deepEqual(
    (await bg.list()).map((w) => [w.label, w.state]),
    [
      ['d', 'stopped'],
      ['c', 'stopped'],
      ['running', 'running'],
    ],
  );
  await bg.cancel(sleeper);
  assert.deepEqual(
    (await bg.list()).map((w) => w.label),
    ['d', 'running'],
  );
  await bg.close();
});
