import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runInNewContext } from 'node:vm';
import { setFlagsFromString } from 'node:v8';
import { until, useDatabase } from './support/database.js';
import type { WorkerHandle } from 'pg-background';

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

/** A full collection, twice (weak references cleared, then their targets' holders). */
function collectGarbage(): void {
  const gc = (globalThis as { gc?: () => void }).gc ?? (setFlagsFromString('--expose-gc'), runInNewContext('gc') as () => void);
  gc();
  gc();
}

test('a finished worker holds on to none of its parameter values: neither one detached behind a kept one, nor one kept', async () => {
  const bg = db.background({ retentionMs: Infinity, maxRetained: 10 });
  const SQL = 'SELECT length($1::bytea) AS n';
  /** Runs a task with a new Buffer as its parameter; returns a weak reference to it (the test keeps no other). */
  const withValue = async (text: string, run: (value: Buffer) => Promise<unknown>) => {
    const value = Buffer.from(text);
    await run(value);
    return new WeakRef(value);
  };
  const withSignal = async (run: (signal: AbortSignal) => Promise<unknown>) => {
    const { signal } = new AbortController();
    await run(signal);
    return new WeakRef(signal);
  };
  // One finished worker kept at the head of the retention list (its handle is listed, forever).
  const head = await bg.launch('SELECT 1');
  await bg.wait(head);
  // Detached workers (run() detaches): nothing of theirs stays, values nor their launch's signal.
  const detached: WeakRef<object>[] = [];
  for (let i = 0; i < 200; i++) {
    detached.push(await withValue(`value ${i}`, (value) => bg.run({ text: SQL, values: [value] })));
    detached.push(await withSignal((signal) => bg.run({ text: SQL, values: ['x'] }, { signal })));
  }
  let listed!: WorkerHandle;
  const kept = await withValue('kept', async (value) => bg.wait((listed = await bg.launch({ text: SQL, values: [value] }))));
  await new Promise((resolve) => setImmediate(resolve)); // a later job than the last deref
  collectGarbage();
  // The retention list drops detached entries once they outnumber the kept ones: at most one
  // (the one kept worker's worth) may still wait there.
  const alive = detached.filter((ref) => ref.deref() !== undefined).length;
  assert.ok(alive <= 1, `${alive} of the detached workers' values and signals are still referenced`);
  assert.equal(kept.deref(), undefined);
  assert.deepEqual(
    (await bg.list()).map((w) => w.cookie),
    [listed.cookie, head.cookie],
  );
  assert.equal(await bg.fullSql(listed), SQL);
  assert.deepEqual(await bg.result(listed).toArray(), [{ n: 4 }]);
  // What it was launched with stays, as the instance's defaults (no options) or its own.
  assert.deepEqual([(await bg.info(listed)).label, (await bg.info(listed)).sqlPreview], [null, SQL]);
  const labelled = await bg.launch({ text: SQL, values: ['abc'] }, { label: 'kept/label' });
  await bg.wait(labelled);
  assert.equal((await bg.info(labelled)).label, 'kept/label');
  await bg.close();
});
