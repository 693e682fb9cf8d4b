// Pause and resume (SPEC Part 2): a paused pending worker is held across a freed slot and keeps
// its place in the queue; resume lets it go in that place; cancel works from paused; pause and
// resume say whether they changed something; pauseAll / resumeAll count. Workers block on
// advisory locks the test holds, so every step is driven, never slept for.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { PgBackground, WorkerHandle, WorkerStateEvent } from '../src/index.js';
import { until, useDatabase } from './support/database.js';
import { WorkerSlots, type AbortListener } from '../src/pool/worker-slots.js';

const db = useDatabase(import.meta.filename);

/** The handle of a worker that is still pending (its launch resolves only once it started). */
async function pending(bg: PgBackground, label: string): Promise<WorkerHandle> {
  const info = await until(async () => (await bg.list()).find((w) => w.label === label), `worker ${label} to be listed`);
  return { pid: info.pid, cookie: info.cookie, label };
}

async function state(bg: PgBackground, handle: WorkerHandle): Promise<string> {
  return (await bg.info(handle)).state;
}

test('a paused pending worker is held across a freed slot, keeps its place, and runs in it once resumed', async () => {
  const bg = db.background({ maxWorkers: 1, whenFull: 'queue' });
  const started: string[] = [];
  bg.on('started', (event) => started.push(event.label!));
  const states: string[] = [];
  bg.on('state', (event: WorkerStateEvent) => states.push(`${event.label}:${event.previous}->${event.state}`));
  await db.query('SELECT pg_advisory_lock(101), pg_advisory_lock(102)');
  const a = await bg.launch('SELECT pg_advisory_xact_lock(101)', { label: 'a' });
  const launches = ['b', 'c', 'd'].map((label) =>
    bg.launch(label === 'c' ? 'SELECT pg_advisory_xact_lock(102)' : `SELECT '${label}' AS x`, { label }).catch((error: Error) => error),
  );
  const [b, c, d] = [await pending(bg, 'b'), await pending(bg, 'c'), await pending(bg, 'd')];
  assert.equal(await bg.pause(b), true);
  assert.equal(await bg.pause(b), false); // already paused
  assert.deepEqual([await state(bg, b), await state(bg, c), await state(bg, d)], ['paused', 'pending', 'pending']);
  assert.equal((await bg.stats()).workersActive, 4); // paused counts as active

  await db.query('SELECT pg_advisory_unlock(101)'); // a ends: its slot goes to c, not to the paused b
  await bg.wait(a);
  await until(async () => (await state(bg, c)) === 'running', 'c to start');
  assert.deepEqual([await state(bg, b), await state(bg, d)], ['paused', 'pending']);

  assert.equal(await bg.resume(b), true);
  assert.equal(await bg.resume(b), false);
  assert.equal(await state(bg, b), 'pending');
  await db.query('SELECT pg_advisory_unlock(102)'); // c ends: b, ahead of d in the queue, goes first
  await Promise.all(launches);
  await Promise.all([b, c, d].map((h) => bg.wait(h)));
  assert.deepEqual(started, ['a', 'c', 'b', 'd']);
  assert.deepEqual(
    states.filter((s) => s.startsWith('b:')),
    ['b:pending->paused', 'b:paused->pending', 'b:pending->running'],
  );
  assert.deepEqual(
    (await bg.list()).map((w) => [w.label, w.state, w.attempts]),
    [
      ['d', 'stopped', 1],
      ['c', 'stopped', 1],
      ['b', 'stopped', 1],
      ['a', 'stopped', 1],
    ],
  );
  await bg.close();
});

test('cancel works from paused: the worker ends canceled without ever starting, and its launch rejects', async () => {
  const bg = db.background({ maxWorkers: 1, whenFull: 'queue' });
  await db.query('CREATE TABLE paused_cancel (n int)');
  await db.query('SELECT pg_advisory_lock(103)');
  const blocker = await bg.launch('SELECT pg_advisory_xact_lock(103)');
  const launch = bg.launch('INSERT INTO paused_cancel VALUES (1)', { label: 'held' });
  const held = await pending(bg, 'held');
  assert.equal(await bg.pause(held), true);
  await bg.cancel(held);
  await assert.rejects(launch, { code: 'PGBG_ABORTED' });
  const info = await bg.info(held);
  assert.deepEqual([info.state, info.pid, info.startedAt, info.canceledBy, info.lastError], ['canceled', 0, null, 'cancel', null]);
  assert.equal((await bg.errorInfo(held))?.sqlstate, '57014');
  assert.equal(await bg.resume(held), false); // terminal
  await db.query('SELECT pg_advisory_unlock(103)');
  await bg.wait(blocker);
  assert.deepEqual(await db.query('SELECT n FROM paused_cancel'), []);
  const stats = await bg.stats();
  assert.deepEqual([stats.workersLaunched, stats.workersCompleted, stats.workersCanceled, stats.workersActive], [2, 1, 1, 0]);
  await bg.close();
});

test('pause is false for a running or finished worker; pauseAll and resumeAll count what changed', async () => {
  const bg = db.background({ maxWorkers: 1, whenFull: 'queue' });
  await db.query('SELECT pg_advisory_lock(104)');
  const running = await bg.launch('SELECT pg_advisory_xact_lock(104)');
  assert.equal(await bg.pause(running), false); // a running statement cannot be paused
  const launches = ['p1', 'p2'].map((label) => bg.launch('SELECT 1', { label }));
  const [p1, p2] = [await pending(bg, 'p1'), await pending(bg, 'p2')];
  assert.equal(await bg.pauseAll(), 2);
  assert.equal(await bg.pauseAll(), 0);
  assert.deepEqual([await state(bg, p1), await state(bg, p2), await state(bg, running)], ['paused', 'paused', 'running']);
  assert.equal(await bg.resumeAll(), 2);
  assert.equal(await bg.resumeAll(), 0);
  await db.query('SELECT pg_advisory_unlock(104)');
  await Promise.all(launches);
  await Promise.all([p1, p2].map((h) => bg.wait(h)));
  assert.equal(await bg.pause(p1), false); // finished
  await assert.rejects(bg.pause({ pid: 0, cookie: 1n }), { code: 'PGBG_UNKNOWN_WORKER' });
  await bg.close();
});

test('a paused worker is let go when it is detached, and by close(): it runs and commits', async () => {
  await db.query('CREATE TABLE paused_close (n int)');
  await db.query('SELECT pg_advisory_lock(105)');
  const bg = db.background({ maxWorkers: 1, whenFull: 'queue' });
  const blocker = await bg.launch('SELECT pg_advisory_xact_lock(105)');
  const launches = [1, 2].map((n) => bg.launch(`INSERT INTO paused_close VALUES (${n})`, { label: `held ${n}` }));
  const [one, two] = [await pending(bg, 'held 1'), await pending(bg, 'held 2')];
  assert.equal(await bg.pauseAll(), 2);
  await bg.detach(one);
  assert.equal((await bg.list()).length, 2); // the blocker and the paused 'held 2'
  await db.query('SELECT pg_advisory_unlock(105)');
  await bg.wait(blocker);
  assert.equal(await state(bg, two), 'paused');
  await bg.close();
  await Promise.all(launches);
  assert.deepEqual(await db.query('SELECT n FROM paused_close ORDER BY n'), [{ n: 1 }, { n: 2 }]);
});

test('admission (offline): a held start keeps its place while those behind it go on, and is next once let go', async () => {
  const slots = new WorkerSlots(1);
  const start = (name: string) => ({
    name,
    held: false,
    aborted: false,
    abortReason: null,
    abortListener: null as AbortListener | null,
    whenAborted(listener: AbortListener | null) {
      this.abortListener = listener;
    },
  });
  const order: string[] = [];
  const [a, b, c, d] = ['a', 'b', 'c', 'd'].map(start);
  const grants = [a, b, c, d].map((s) => slots.acquire(s!).then((slot) => (order.push(s!.name), slot)));
  b!.held = true;
  (await grants[0]!).release(); // a's slot goes to c, past the held b
  assert.equal(slots.waiting(b!), true);
  b!.held = false;
  slots.reconsider(); // no free slot yet: b waits in its place, ahead of d
  (await grants[2]!).release();
  (await grants[1]!).release();
  (await grants[3]!).release();
  assert.deepEqual(order, ['a', 'c', 'b', 'd']);
  assert.equal(slots.waiting(b!), false);
});
