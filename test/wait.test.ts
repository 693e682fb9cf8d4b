import { test } from 'node:test';
import assert from 'node:assert/strict';
import { useDatabase } from './support/database.js';

const db = useDatabase(import.meta.filename);

test('wait resolves once the worker is finished, and list() already shows the terminal state', async () => {
  const bg = db.background();
  for (const [sql, state] of [
    ['SELECT pg_sleep(0.1)', 'stopped'],
    ['SELECT 1/0', 'error'],
  ] as const) {
    const h = await bg.launch(sql);
    assert.equal(await bg.wait(h), undefined);
    const [info] = await bg.list();
    assert.equal(info!.state, state);
    assert.ok(info!.finishedAt instanceof Date);
    assert.equal((await bg.resultInfo(h)).completed, true);
  }
  await bg.close();
});

test('wait with timeoutMs returns true if the worker finished, false on timeout', async () => {
  const bg = db.background();
  const slow = await bg.launch('SELECT pg_sleep(30)');
  assert.equal(await bg.wait(slow, { timeoutMs: 50 }), false);
  assert.equal((await bg.list())[0]!.state, 'running');
  const fast = await bg.launch('SELECT 1');
  assert.equal(await bg.wait(fast, { timeoutMs: 10_000 }), true);
  assert.equal(await bg.wait(fast, { timeoutMs: 0 }), true);
  await bg.cancel(slow);
  assert.equal(await bg.wait(slow, { timeoutMs: 0 }), true);
  await bg.close();
});

test("wait's own AbortSignal rejects the wait without touching the worker", async () => {
  const bg = db.background();
  const h = await bg.launch('SELECT pg_sleep(30)');
  const controller = new AbortController();
  const waiting = bg.wait(h, { signal: controller.signal });
  controller.abort(new Error('stop waiting'));
  await assert.rejects(waiting, /stop waiting/);
  assert.equal((await bg.list())[0]!.state, 'running');
  await bg.cancel(h);
  await bg.close();
});

test('elapsedMs grows while running and is frozen at finish', async () => {
  const bg = db.background();
  const h = await bg.launch('SELECT pg_sleep(0.05)');
  await bg.wait(h);
  const first = (await bg.list())[0]!;
  assert.equal(first.elapsedMs, first.finishedAt!.getTime() - first.launchedAt.getTime());
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal((await bg.list())[0]!.elapsedMs, first.elapsedMs);
  await bg.close();
});

test('wait never throws: a bad handle, a closed instance and a call without its instance all reject', async () => {
  const bg = db.background();
  const h = await bg.launch('SELECT 1');
  await bg.wait(h);
  const unbound = bg.wait as (handle: unknown, options?: unknown) => Promise<unknown>;
  const calls: (() => Promise<unknown>)[] = [
    () => bg.wait({ pid: 1, cookie: 12345n }),
    () => bg.wait({ pid: 1, cookie: 12345n }, { timeoutMs: 10 }),
    () => unbound(h),
    () => unbound(h, { timeoutMs: 10 }),
  ];
  const outcomes: string[] = [];
  for (const call of calls) {
    let promise!: Promise<unknown>;
    assert.doesNotThrow(() => (promise = call()));
    outcomes.push(
      await promise.then(
        () => 'resolved',
        (error: unknown) => (error as { code?: string }).code ?? (error as Error).name,
      ),
    );
  }
  await bg.close();
  let closed!: Promise<unknown>;
  assert.doesNotThrow(() => (closed = bg.wait(h)));
  outcomes.push(
    await closed.then(
      () => 'resolved',
      (error: { code?: string }) => error.code ?? 'no code',
    ),
  );
  assert.deepEqual(outcomes, ['PGBG_UNKNOWN_WORKER', 'PGBG_UNKNOWN_WORKER', 'TypeError', 'TypeError', 'PGBG_CLOSED']);
});
