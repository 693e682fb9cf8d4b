// Jobs (SPEC Part 2): a root (pid 0, found by its cookie) and its subtasks. Phases and progress,
// the root's state from its body and its subtasks, the cancel cascade (nothing commits), pause
// of a root, detach of a tree, retention of a tree as one, list() and stats(). Subtasks block on
// advisory locks the test holds, and bodies on gates the test opens: nothing is slept for.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { JobContext, PgBackground, WorkerHandle, WorkerInfo } from '../src/index.js';
import { until, useDatabase } from './support/database.js';

const db = useDatabase(import.meta.filename);

/** A promise the test resolves when it wants the body to go on. */
function gate(): { wait: Promise<void>; open(): void } {
  let open!: () => void;
  const wait = new Promise<void>((resolve) => (open = resolve));
  return { wait, open };
}

async function listed(bg: PgBackground, label: string): Promise<WorkerInfo> {
  return until(async () => (await bg.list()).find((w) => w.label === label), `${label} to be listed`);
}

test('a job: phases and progress on the root, subtasks with scope and parent, the root stopped once all stopped', async () => {
  await db.query('CREATE TABLE job_parts (part text)');
  const bg = db.background();
  const launched: string[] = [];
  bg.on('launched', (event) => launched.push(`${event.label}:${event.scope}:${event.parent === null ? 'none' : 'root'}`));
  const progress: string[] = [];
  bg.on('progress', (event) => progress.push(`${event.phase}@${event.fractionCompleted}`));
  const finishing = gate();
  const job = await bg.job(
    async (ctx) => {
      ctx.status('syncing schema');
      await bg.wait(await ctx.launch('SELECT 1', { label: 'schema' }));
      ctx.status('copying data');
      const parts = await Promise.all(['a', 'b', 'c'].map((part) => ctx.launch(`INSERT INTO job_parts VALUES ('${part}')`, { label: `copy ${part}` })));
      await Promise.all(parts.map((h) => bg.wait(h)));
      ctx.progress(0.9, 'finalizing');
      await finishing.wait;
    },
    { label: 'reshard' },
  );
  assert.equal(job.pid, 0);
  assert.equal(job.label, 'reshard');
  await until(async () => (await bg.info(job)).phase === 'finalizing', 'the last phase');
  const root = await bg.info(job);
  assert.deepEqual(
    [root.state, root.pid, root.scope, root.parent, root.phase, root.fractionCompleted, root.sqlPreview, root.attempts],
    ['running', 0, 'root', null, 'finalizing', 0.9, '', 1],
  );
  assert.deepEqual(await bg.getProgress(job), { pct: 90, message: 'finalizing' });
  const subtasks = (await bg.list()).filter((w) => w.scope === 'subtask');
  assert.deepEqual(subtasks.map((w) => [w.label, w.state, w.parent]).sort(), [
    ['copy a', 'stopped', job.cookie],
    ['copy b', 'stopped', job.cookie],
    ['copy c', 'stopped', job.cookie],
    ['schema', 'stopped', job.cookie],
  ]);
  finishing.open();
  await bg.wait(job);
  const done = await bg.info(job);
  assert.deepEqual([done.state, done.lastError, done.phase, done.fractionCompleted], ['stopped', null, 'finalizing', 0.9]);
  assert.equal(done.updatedAt.getTime(), done.finishedAt!.getTime());
  assert.equal(await bg.errorInfo(job), null);
  assert.deepEqual((({ state, completed, hasError }) => ({ state, completed, hasError }))(await bg.outcome(job)), {
    state: 'stopped',
    completed: true,
    hasError: false,
  });
  assert.deepEqual(
    (await db.query('SELECT part FROM job_parts ORDER BY part')).map((r) => r.part),
    ['a', 'b', 'c'],
  );
  assert.deepEqual(launched, ['reshard:root:none', 'schema:subtask:root', 'copy a:subtask:root', 'copy b:subtask:root', 'copy c:subtask:root']);
  assert.deepEqual(progress, ['syncing schema@null', 'copying data@null', 'finalizing@0.9']);
  const stats = await bg.stats();
  assert.deepEqual([stats.workersLaunched, stats.workersCompleted, stats.workersFailed, stats.workersActive], [5, 5, 0, 0]);
  await bg.close();
});

test('a failed subtask fails the root and is named in lastError; a body that throws fails it too', async () => {
  const bg = db.background();
  const failing = await bg.job(async (ctx) => {
    const good = await ctx.launch('SELECT 1', { label: 'good' });
    const bad = await ctx.launch('SELECT 1/0', { label: 'bad' });
    await Promise.all([bg.wait(good), bg.wait(bad)]);
  });
  await bg.wait(failing);
  const bad = await listed(bg, 'bad');
  const info = await bg.info(failing);
  assert.deepEqual([info.state, info.lastError], ['error', `subtask "bad" (pid ${bad.pid}) failed: division by zero`]);
  assert.equal((await bg.errorInfo(failing))?.sqlstate, '22012');

  const throwing = await bg.job(async () => {
    throw new Error('boom');
  });
  await bg.wait(throwing);
  assert.deepEqual(
    [(await bg.info(throwing)).state, (await bg.info(throwing)).lastError, (await bg.errorInfo(throwing))?.sqlstate],
    ['error', "the job's body threw: boom", '38000'],
  );
  await assert.rejects(bg.job('not a function' as never), { code: 'PGBG_INVALID_ARGUMENT', message: /`body` to be a function/ });
  await assert.rejects(
    bg.job(async () => {}, { lable: 'x' } as never),
    { code: 'PGBG_INVALID_ARGUMENT', message: /Unknown option `lable`/ },
  );
  await bg.close();
});

test('cancel(root) aborts ctx.signal and cancels every subtask with the same grace; nothing commits', async () => {
  await db.query('CREATE TABLE job_cancel (n int)');
  await db.query('SELECT pg_advisory_lock(201)');
  const bg = db.background();
  let context!: JobContext;
  let signalReason: unknown = null;
  const job = await bg.job(async (ctx) => {
    context = ctx;
    const parts = await Promise.all(
      [1, 2, 3].map((n) => ctx.launch(`INSERT INTO job_cancel VALUES (${n}); SELECT pg_advisory_xact_lock(201)`, { label: `part ${n}` })),
    );
    await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve));
    signalReason = ctx.signal.reason;
    await Promise.all(parts.map((h) => bg.wait(h)));
  });
  await until(async () => (await bg.list()).filter((w) => w.scope === 'subtask' && w.waitEvent === 'Lock:advisory').length === 3, 'the parts to block');
  await bg.cancel(job, { graceMs: 0 }); // 0: terminate at once, each subtask too (57P01 says so)
  const list = await bg.list();
  assert.deepEqual(
    list.map((w) => [w.label, w.state, w.canceledBy]),
    [
      ['part 3', 'canceled', 'cancel'],
      ['part 2', 'canceled', 'cancel'],
      ['part 1', 'canceled', 'cancel'],
      [null, 'canceled', 'cancel'],
    ],
  );
  for (const w of list.filter((w) => w.scope === 'subtask')) assert.equal((await bg.errorInfo(w))?.sqlstate, '57P01');
  assert.equal((await bg.errorInfo(job))?.message, 'the job was cancelled (cancel)');
  assert.equal(context.signal.aborted, true);
  assert.deepEqual([(signalReason as { code?: string }).code, (signalReason as Error).message], ['PGBG_ABORTED', 'the job was cancelled (cancel)']);
  await assert.rejects(context.launch('SELECT 1'), { code: 'PGBG_ABORTED', message: /the job was cancelled \(cancel\)/ });
  await db.query('SELECT pg_advisory_unlock(201)');
  assert.deepEqual(await db.query('SELECT n FROM job_cancel'), []);
  const stats = await bg.stats();
  assert.deepEqual([stats.workersLaunched, stats.workersCanceled, stats.workersActive], [4, 4, 0]);
  await bg.close();
});

test('cancel(root) of a tree whose subtask commits as it goes: the root ends error, naming it, never canceled', async () => {
  await db.query('CREATE TABLE job_batches (n int)');
  await db.query(`CREATE PROCEDURE job_batches_fill() LANGUAGE plpgsql AS $$
    BEGIN FOR k IN 1..600 LOOP INSERT INTO job_batches VALUES (k); COMMIT; PERFORM pg_sleep(0.05); END LOOP; END $$`);
  const bg = db.background();
  const job = await bg.job(async (ctx) => {
    await bg.wait(await ctx.launch('CALL job_batches_fill()', { label: 'batches' }));
  });
  await until(async () => (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM job_batches'))[0]!.n >= 2, 'two batches to commit');
  await bg.cancel(job);
  const batches = (await bg.list()).find((w) => w.label === 'batches')!;
  assert.deepEqual([batches.state, (await bg.info(job)).state], ['error', 'error']);
  assert.equal(
    (await bg.errorInfo(job))?.message,
    `the job was cancelled (cancel): 1 of its 1 subtasks may have committed ("batches" (pid ${batches.pid})): their outcome is unknown`,
  );
  await bg.close();
});

test('pause(root) holds unstarted subtasks and those launched while paused; running ones finish; resume lets them go', async () => {
  await db.query('SELECT pg_advisory_lock(202)');
  const bg = db.background({ maxWorkers: 1, whenFull: 'queue' });
  const later = gate();
  const handles: Promise<WorkerHandle>[] = [];
  const job = await bg.job(async (ctx) => {
    handles.push(ctx.launch('SELECT pg_advisory_xact_lock(202)', { label: 's1' }));
    handles.push(ctx.launch('SELECT 2', { label: 's2' }));
    await later.wait;
    handles.push(ctx.launch('SELECT 3', { label: 's3' }));
    for (const h of await Promise.all(handles)) await bg.wait(h);
  });
  await until(async () => (await listed(bg, 's1')).state === 'running', 's1 to run');
  await listed(bg, 's2');
  assert.equal(await bg.pause(job), true);
  assert.equal(await bg.pause(job), false);
  later.open();
  await listed(bg, 's3');
  const byLabel = async () => Object.fromEntries((await bg.list()).map((w) => [w.label ?? 'root', w.state]));
  assert.deepEqual(await byLabel(), { root: 'paused', s1: 'running', s2: 'paused', s3: 'paused' });
  await db.query('SELECT pg_advisory_unlock(202)'); // s1 finishes; its slot stays free
  await until(async () => (await byLabel()).s1 === 'stopped', 's1 to finish');
  assert.deepEqual(await byLabel(), { root: 'paused', s1: 'stopped', s2: 'paused', s3: 'paused' });
  assert.equal((await bg.stats()).workersActive, 3);
  assert.equal(await bg.resume(job), true);
  await bg.wait(job);
  assert.deepEqual(await byLabel(), { root: 'stopped', s1: 'stopped', s2: 'stopped', s3: 'stopped' });
  await bg.close();
});

test('a paused root can be cancelled: held subtasks end canceled without starting', async () => {
  await db.query('SELECT pg_advisory_lock(203)');
  const bg = db.background({ maxWorkers: 1, whenFull: 'queue' });
  const job = await bg.job(async (ctx) => {
    const first = ctx.launch('SELECT pg_advisory_xact_lock(203)', { label: 'busy' });
    const second = ctx.launch('SELECT 1', { label: 'held' });
    await Promise.allSettled([first, second]);
  });
  await until(async () => (await listed(bg, 'busy')).state === 'running', 'busy to run');
  await listed(bg, 'held');
  assert.equal(await bg.pause(job), true);
  await bg.cancel(job, { graceMs: 0 });
  const held = await listed(bg, 'held');
  assert.deepEqual([held.state, held.startedAt, (await bg.info(job)).state], ['canceled', null, 'canceled']);
  await db.query('SELECT pg_advisory_unlock(203)');
  await bg.close();
});

test('detach(root) detaches the whole tree: it disappears, its subtasks run on and commit', async () => {
  await db.query('CREATE TABLE job_detach (n int)');
  await db.query('SELECT pg_advisory_lock(204)');
  const bg = db.background();
  const job = await bg.job(async (ctx) => {
    const h = await ctx.launch('SELECT pg_advisory_xact_lock(204); INSERT INTO job_detach VALUES (7)', { label: 'detached part' });
    await bg.wait(h).catch(() => {});
  });
  await listed(bg, 'detached part');
  await bg.detach(job);
  assert.deepEqual(await bg.list(), []);
  await assert.rejects(bg.info(job), { code: 'PGBG_UNKNOWN_WORKER' });
  assert.equal((await bg.stats()).workersActive, 2);
  await db.query('SELECT pg_advisory_unlock(204)');
  await until(async () => (await db.query('SELECT n FROM job_detach')).length === 1, 'the detached subtask to commit');
  await until(async () => (await bg.stats()).workersActive === 0, 'the tree to finish');
  await bg.close();
});

test('retention treats a tree as one: finished subtasks stay while their root does, and go with it', async () => {
  const bg = db.background({ maxRetained: 1 });
  const job = await bg.job(async (ctx) => {
    for (const n of [1, 2]) await bg.wait(await ctx.launch(`SELECT ${n}`, { label: `sub ${n}` }));
  });
  await bg.wait(job);
  // Three finished workers listed under maxRetained 1: the tree counts once.
  assert.deepEqual(
    (await bg.list()).map((w) => [w.label, w.scope]),
    [
      ['sub 2', 'subtask'],
      ['sub 1', 'subtask'],
      [null, 'root'],
    ],
  );
  const plain = await bg.launch('SELECT 3', { label: 'plain' });
  await bg.wait(plain);
  assert.deepEqual(
    (await bg.list()).map((w) => w.label),
    ['plain'],
  );
  await assert.rejects(bg.info(job), { code: 'PGBG_UNKNOWN_WORKER' });
  assert.equal((await bg.stats()).workersLaunched, 4);
  await bg.close();
});

test('a root holds no slot: with maxWorkers 1 and whenFull error its subtask still runs', async () => {
  const bg = db.background({ maxWorkers: 1 });
  const job = await bg.job(async (ctx) => {
    await bg.wait(await ctx.launch('SELECT 1', { label: 'only' }));
  });
  await bg.wait(job);
  assert.deepEqual(
    (await bg.list()).map((w) => [w.label, w.state]),
    [
      ['only', 'stopped'],
      [null, 'stopped'],
    ],
  );
  await bg.close();
});

test("the job's signal cancels it; close({ cancel: true }) cancels a running job's tree", async () => {
  await db.query('SELECT pg_advisory_lock(205)');
  const bg = db.background();
  const controller = new AbortController();
  const body = async (ctx: JobContext) => {
    await bg.wait(await ctx.launch('SELECT pg_advisory_xact_lock(205)', { label: `${ctx.handle.cookie}` }));
  };
  const bySignal = await bg.job(body, { signal: controller.signal });
  const byClose = await bg.job(body);
  await until(async () => (await bg.list()).filter((w) => w.waitEvent === 'Lock:advisory').length === 2, 'both subtasks to block');
  controller.abort();
  await bg.wait(bySignal);
  assert.deepEqual([(await bg.info(bySignal)).state, (await bg.info(bySignal)).canceledBy], ['canceled', 'signal']);
  assert.equal((await bg.info(byClose)).state, 'running');
  await assert.rejects(bg.job(body, { signal: controller.signal }), { code: 'PGBG_ABORTED' });
  const finished: string[] = [];
  bg.on('finished', (event) => finished.push(`${event.label ?? 'root'}:${event.state}:${event.error?.sqlstate}`));
  await bg.close({ cancel: true });
  assert.deepEqual(finished, [`${byClose.cookie}:canceled:57014`, 'root:canceled:57014']);
  await db.query('SELECT pg_advisory_unlock(205)');
});
