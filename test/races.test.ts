// Races: many workers with cancels, detaches, waits, timeouts and aborts landing at random
// moments, then one invariant checked against what the server committed: a 'canceled' worker
// committed nothing, a 'stopped' one exactly once. Random choices come from a seeded PRNG: the
// seed is printed, and PGBG_RACE_SEED replays it.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { setImmediate as nextMacrotask, setTimeout as sleep } from 'node:timers/promises';
import { runInNewContext } from 'node:vm';
import { setFlagsFromString } from 'node:v8';
import {
  PgBackgroundError,
  type PgBackground,
  type PgBackgroundOptions,
  type WorkerFinishedEvent,
  type WorkerHandle,
  type WorkerInfo,
  type WorkerState,
} from 'pg-background';
import { activeResources, resourcesGrownSince, type ResourceCounts } from './support/resources.js';
import { until, useDatabase } from './support/database.js';
import { random, seedFrom, type Random } from './support/random.js';

const SEED = seedFrom('PGBG_RACE_SEED');
const db = useDatabase(import.meta.filename, {
  async setup(db) {
    // No UNIQUE constraint on purpose: a task that committed twice must show up as a count of 2.
    await db.query('CREATE TABLE ledger (id int NOT NULL)');
    await db.query('CREATE TABLE quick (id int NOT NULL)');
    await db.query('CREATE TABLE hammer (id text NOT NULL)');
    await db.query('CREATE TABLE bystander (id text NOT NULL)');
  },
});

// ---- process resources, for the last test ------------------------------------------------------

interface Snapshot {
  resources: ResourceCounts;
  rss: number;
}

function collectGarbage(): void {
  const gc = (globalThis as { gc?: () => void }).gc ?? exposeGc();
  gc();
  gc();
}

function exposeGc(): () => void {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

function snapshot(): Snapshot {
  collectGarbage();
  return { resources: activeResources(), rss: process.memoryUsage().rss };
}

let baseline: Snapshot | undefined;
before(() => {
  // The standard streams are created lazily: make sure they exist in the baseline already.
  void process.stdout;
  void process.stderr;
  console.log(`races: seed ${SEED} (replay with PGBG_RACE_SEED=${SEED})`);
});
/** Taken at the start of each test until one has run: before any instance of this file exists. */
const takeBaseline = () => (baseline ??= snapshot());

const ACTIVE: readonly WorkerState[] = ['pending', 'running', 'cancelling'];

/**
 * Runs `body` with a fresh instance and closes it: close() when the body succeeded, and when it
 * failed, close({ cancel: true }) after releasing the test's advisory locks, so that a failed
 * test leaves nothing behind for the later ones.
 */
async function withInstance(options: PgBackgroundOptions, body: (bg: PgBackground) => Promise<void>): Promise<void> {
  const bg = db.background(options);
  let passed = false;
  try {
    await body(bg);
    passed = true;
  } finally {
    if (passed) await bg.close();
    else {
      await db.query('SELECT pg_advisory_unlock_all()');
      await bg.close({ cancel: true });
    }
  }
}

// ---- a) a thousand tasks under fire ----------------------------------------------------------------

type Variant = 'param' | 'sleep-then-insert' | 'insert-then-sleep';
type Action = 'none' | 'wait' | 'wait-timeout' | 'cancel' | 'cancel-pending' | 'detach' | 'signal';
type Moment = 'at-once' | 'next-macrotask' | 'timer';

interface Task {
  readonly id: number;
  readonly label: string;
  readonly variant: Variant;
  readonly sleepMs: number;
  readonly submitted: boolean;
  readonly timeoutMs: number | undefined;
  readonly action: Action;
  readonly moment: Moment;
  readonly delayMs: number;
  readonly graceMs: number | undefined;
  handle?: WorkerHandle;
  launchError?: unknown;
  detached: boolean;
  /** Something the library did that it must not do, found while driving the task. */
  violations: string[];
}

function planTasks(rng: Random, count: number): Task[] {
  return Array.from({ length: count }, (_, id) => {
    const action = rng.weighted<Action>([
      ['none', 20],
      ['wait', 15],
      ['wait-timeout', 15],
      ['cancel', 25],
      ['cancel-pending', 5],
      ['detach', 12],
      ['signal', 8],
    ]);
    return {
      id,
      label: `task-${id}`,
      variant: rng.weighted<Variant>([
        ['param', 4],
        ['sleep-then-insert', 3],
        ['insert-then-sleep', 3],
      ]),
      sleepMs: rng.int(0, 30),
      submitted: rng.chance(0.1),
      timeoutMs: rng.chance(0.12) ? rng.int(1, 60) : undefined,
      action,
      moment: rng.weighted<Moment>([
        ['at-once', 3],
        ['next-macrotask', 2],
        ['timer', 5],
      ]),
      delayMs: rng.int(0, 40),
      graceMs: rng.weighted<number | undefined>([
        [undefined, 2],
        [0, 2],
        [rng.int(1, 50), 3],
      ]),
      detached: false,
      violations: [],
    };
  });
}

function taskSql(task: Task): string | { text: string; values: unknown[] } {
  const seconds = (task.sleepMs / 1000).toFixed(3);
  switch (task.variant) {
    case 'param':
      return { text: 'INSERT INTO ledger VALUES ($1)', values: [task.id] };
    case 'sleep-then-insert':
      return `SELECT pg_sleep(${seconds}); INSERT INTO ledger VALUES (${task.id})`;
    case 'insert-then-sleep':
      return `INSERT INTO ledger VALUES (${task.id}); SELECT pg_sleep(${seconds})`;
  }
}

async function moment(task: Task): Promise<void> {
  if (task.moment === 'next-macrotask') await nextMacrotask();
  else if (task.moment === 'timer') await sleep(task.delayMs);
}

const cancelOptions = (task: Task) => (task.graceMs === undefined ? undefined : { graceMs: task.graceMs });

/** After wait() or cancel() resolved, list() must already show a terminal state. */
async function expectTerminal(bg: PgBackground, task: Task, after: string): Promise<void> {
  const info = await bg.info(task.handle!);
  if (ACTIVE.includes(info.state)) task.violations.push(`${after} resolved but info() says ${info.state}`);
}

async function drive(bg: PgBackground, task: Task): Promise<void> {
  const controller = task.action === 'signal' ? new AbortController() : undefined;
  const options = {
    label: task.label,
    ...(task.timeoutMs === undefined ? {} : { timeoutMs: task.timeoutMs }),
    ...(controller ? { signal: controller.signal } : {}),
  };
  const launching = task.submitted ? bg.submit(taskSql(task), options) : bg.launch(taskSql(task), options);
  const early: Promise<void>[] = [];
  if (controller) {
    // From the launch call on: may find the worker pending, running or finished.
    early.push(moment(task).then(() => controller.abort()));
  }
  if (task.action === 'cancel-pending') {
    // Before launch() resolved, through list(): pid 0 names a pending worker.
    early.push(
      moment(task).then(async () => {
        const info = (await bg.list()).find((w) => w.label === task.label);
        if (!info) return void task.violations.push('not listed while its launch was under way');
        await bg.cancel(info, cancelOptions(task));
      }),
    );
  }
  try {
    task.handle = await launching;
  } catch (error) {
    task.launchError = error;
  }
  await Promise.all(early);
  if (!task.handle) return;

  switch (task.action) {
    case 'wait':
      await moment(task);
      await bg.wait(task.handle);
      await expectTerminal(bg, task, 'wait()');
      break;
    case 'wait-timeout': {
      await moment(task);
      const finished = await bg.wait(task.handle, { timeoutMs: task.delayMs % 25 });
      if (finished) await expectTerminal(bg, task, 'wait({ timeoutMs }) → true');
      else if (task.delayMs % 2 === 0) {
        // Gave up waiting: cancel it instead, as a caller with a deadline would.
        await bg.cancel(task.handle, cancelOptions(task));
        await expectTerminal(bg, task, 'cancel() after a wait timeout');
      }
      break;
    }
    case 'cancel':
      await moment(task);
      await bg.cancel(task.handle, cancelOptions(task));
      await expectTerminal(bg, task, 'cancel()');
      break;
    case 'detach':
      await moment(task);
      await bg.detach(task.handle);
      task.detached = true;
      // Gone from this instance: unknown, or a stale handle if its warm connection serves another task.
      await assert.rejects(bg.info(task.handle), (error: PgBackgroundError) => error.code === 'PGBG_UNKNOWN_WORKER' || error.code === 'PGBG_COOKIE_MISMATCH');
      break;
  }
}

interface Outcome {
  state: WorkerState;
  /** Known unless the worker was detached (its errorInfo is gone with it). */
  sqlstate: string | null | undefined;
  canceledBy: WorkerInfo['canceledBy'] | undefined;
}

test('a) 1000 tasks with cancels, detaches, waits and timeouts at random moments: canceled ⇒ nothing committed, stopped ⇒ committed once', async () => {
  takeBaseline();
  const rng = random(SEED).fork(1);
  const tasks = planTasks(rng, 1000);
  await withInstance({ maxWorkers: 16, whenFull: 'queue' }, async (bg) => {
    const finished = new Map<string, WorkerFinishedEvent[]>();
    bg.on('finished', (event) => {
      const events = finished.get(event.label!) ?? [];
      events.push(event);
      finished.set(event.label!, events);
    });

    const started = Date.now();
    const driven = await Promise.allSettled(tasks.map((task) => drive(bg, task)));
    // Every tracked worker finishes; detached ones are only visible through stats().
    for (const task of tasks) if (task.handle && !task.detached) await bg.wait(task.handle);
    await until(async () => (await bg.stats()).workersActive === 0, 'every worker (detached ones too) to finish', 60_000);
    const elapsedMs = Date.now() - started;

    const unexpected = driven.flatMap((result, i) => (result.status === 'rejected' ? [`${tasks[i]!.label}: ${String(result.reason)}`] : []));
    assert.deepEqual(unexpected, [], 'no call of the drivers may fail');
    assert.deepEqual(
      tasks.flatMap((t) => t.violations.map((v) => `${t.label}: ${v}`)),
      [],
    );

    // Launches that never got a handle were cancelled while pending (cancel through list(), or their signal).
    for (const task of tasks.filter((t) => !t.handle)) {
      const error = task.launchError as PgBackgroundError;
      assert.ok(error instanceof PgBackgroundError, `${task.label}: ${String(error)}`);
      assert.equal(error.code, 'PGBG_ABORTED', task.label);
      assert.ok(task.action === 'cancel-pending' || task.action === 'signal', `${task.label} (${task.action}) was aborted`);
    }

    // Exactly one 'finished' event per task: nobody is left behind, nobody finishes twice.
    assert.deepEqual(
      tasks.filter((t) => finished.get(t.label)?.length !== 1).map((t) => `${t.label}: ${finished.get(t.label)?.length ?? 0} finished events`),
      [],
    );

    // The final state of each task, from list() when it is still tracked.
    const listed = new Map((await bg.list()).map((info) => [info.label!, info]));
    const outcomes = new Map<Task, Outcome>();
    for (const task of tasks) {
      const event = finished.get(task.label)![0]!;
      const info = listed.get(task.label);
      if (task.detached) {
        assert.equal(info, undefined, `${task.label} was detached but is listed`);
        outcomes.set(task, { state: event.state, sqlstate: undefined, canceledBy: undefined });
        continue;
      }
      assert.ok(info, `${task.label} is listed`);
      assert.equal(info.state, event.state, `${task.label}: list() and the finished event agree`);
      const error = await bg.errorInfo(info);
      assert.equal(error === null, info.state === 'stopped', `${task.label}: errorInfo is set exactly when it did not stop`);
      outcomes.set(task, { state: info.state, sqlstate: error?.sqlstate ?? null, canceledBy: info.canceledBy });
    }
    assert.deepEqual(
      [...listed.values()].filter((w) => ACTIVE.includes(w.state)),
      [],
      'no listed worker is still active',
    );
    assert.equal(listed.size, tasks.filter((t) => !t.detached).length);

    // What the server committed.
    const counts = new Map((await db.query<{ id: number; n: number }>('SELECT id, count(*)::int AS n FROM ledger GROUP BY id')).map((r) => [r.id, r.n]));
    const problems: string[] = [];
    for (const [id, n] of counts) if (!tasks[id]) problems.push(`id ${id} committed by no task (${n}×)`);
    const perState = { stopped: 0, canceled: 0, error: 0 } as Record<string, number>;
    const canceledBy: Record<string, number> = {};
    for (const task of tasks) {
      const { state, sqlstate, canceledBy: by } = outcomes.get(task)!;
      perState[state] = (perState[state] ?? 0) + 1;
      if (state === 'canceled') canceledBy[by ?? 'detached'] = (canceledBy[by ?? 'detached'] ?? 0) + 1;
      const n = counts.get(task.id) ?? 0;
      const describe = `${task.label} (${task.variant}, ${task.action}${task.detached ? ', detached' : ''}${task.timeoutMs ? `, timeoutMs ${task.timeoutMs}` : ''}, graceMs ${task.graceMs})`;
      if (n > 1) problems.push(`${describe} committed ${n} times`);
      if (state === 'stopped' && n !== 1) problems.push(`${describe} is 'stopped' but committed ${n} times`);
      if (state === 'canceled' && n !== 0) problems.push(`${describe} is 'canceled' but its row is there`);
      if (state === 'canceled' && sqlstate !== undefined && sqlstate !== '57014' && sqlstate !== '57P01')
        problems.push(`${describe} is 'canceled' with sqlstate ${sqlstate}`);
      if (state === 'error') {
        const message = task.detached ? '' : `: ${(await bg.errorInfo(task.handle ?? { pid: 0, cookie: listed.get(task.label)!.cookie }))?.message}`;
        console.log(`races: ${describe} ended in error (sqlstate ${sqlstate ?? 'unknown: detached'}${message}), committed ${n}×`);
        // A lost connection proves nothing about the commit; any other error means it rolled back.
        if (sqlstate !== '08006' && n !== 0) problems.push(`${describe} is 'error' (${sqlstate ?? 'detached'}) but its row is there`);
      }
      // Nothing that was not asked to stop may stop early: no cancel, no timeout, no signal.
      const leftAlone =
        task.timeoutMs === undefined &&
        (task.action === 'none' || task.action === 'wait' || task.action === 'detach' || (task.action === 'wait-timeout' && task.delayMs % 2 === 1));
      if (leftAlone && state !== 'stopped') problems.push(`${describe} was never cancelled but ended ${state} (${sqlstate})`);
    }
    const stats = await bg.stats();
    const toTerminal = tasks.map((t) => finished.get(t.label)![0]!.elapsedMs).sort((x, y) => x - y);
    const percentile = (p: number) => toTerminal[Math.min(toTerminal.length - 1, Math.floor(p * toTerminal.length))];
    console.log(
      `races a) seed ${SEED}: ${tasks.length} tasks, all terminal after ${elapsedMs} ms — stopped ${perState.stopped}, canceled ${perState.canceled} ` +
        `(${Object.entries(canceledBy)
          .map(([k, v]) => `${k} ${v}`)
          .join(', ')}), error ${perState.error}; ` +
        `detached ${tasks.filter((t) => t.detached).length}, aborted before start ${tasks.filter((t) => !t.handle).length}, ` +
        `rows committed ${[...counts.values()].reduce((a, b) => a + b, 0)}; launch→terminal ms p50 ${percentile(0.5)}, p95 ${percentile(0.95)}, max ${toTerminal.at(-1)}`,
    );
    assert.deepEqual(problems, []);

    assert.equal(stats.workersLaunched, tasks.length);
    assert.equal(stats.workersActive, 0);
    assert.equal(stats.workersLaunched, stats.workersCompleted + stats.workersFailed + stats.workersCanceled + stats.workersActive);
    assert.deepEqual([stats.workersCompleted, stats.workersCanceled, stats.workersFailed], [perState.stopped, perState.canceled, perState.error]);
  });
});

// ---- b) a cancel arriving as the task commits --------------------------------------------------------

test('b) a cancel arriving as a quick INSERT commits: canceled ⇒ absent, stopped ⇒ present, 200 times', async () => {
  takeBaseline();
  const rng = random(SEED).fork(2);
  await withInstance({}, async (bg) => {
    const seen: Record<string, number> = {};
    for (let id = 0; id < 200; id++) {
      const graceMs = rng.int(0, 50);
      const h = await bg.launch({ text: 'INSERT INTO quick VALUES ($1)', values: [id] });
      await bg.cancel(h, { graceMs });
      const info = await bg.info(h);
      const error = await bg.errorInfo(h);
      const [{ n }] = (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM quick WHERE id = $1', [id])) as [{ n: number }];
      const what = `#${id} graceMs ${graceMs}: ${info.state} (${error?.sqlstate ?? 'no error'}), committed ${n}×`;
      seen[`${info.state}/${error?.sqlstate ?? '-'}`] = (seen[`${info.state}/${error?.sqlstate ?? '-'}`] ?? 0) + 1;
      if (info.state === 'canceled') {
        assert.equal(n, 0, what);
        assert.ok(error?.sqlstate === '57014' || error?.sqlstate === '57P01', what);
        assert.equal(info.canceledBy, 'cancel', what);
      } else if (info.state === 'stopped') {
        assert.equal(n, 1, what);
        assert.equal(error, null, what);
      } else {
        assert.equal(info.state, 'error', what);
        assert.equal(error?.sqlstate, '08006', `${what}: only a lost connection may leave the outcome open`);
      }
    }
    const stats = await bg.stats();
    assert.equal(stats.workersLaunched, 200);
    assert.equal(stats.workersLaunched, stats.workersCompleted + stats.workersFailed + stats.workersCanceled + stats.workersActive);
    console.log(
      `races b) seed ${SEED}: ${Object.entries(seen)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')}`,
    );
  });
});

// ---- c) a late cancel must never hit the connection's next task --------------------------------------

test('c) cancelling a finished task whose connection now serves the next one leaves the next one alone', async () => {
  takeBaseline();
  await withInstance({ maxWorkers: 1, whenFull: 'queue' }, async (bg) => {
    const a = await bg.launch("INSERT INTO bystander VALUES ('A')");
    await bg.wait(a);
    assert.equal((await bg.info(a)).state, 'stopped');
    // B waits on a lock the test holds, so it is certainly still running when A is cancelled.
    await db.query('SELECT pg_advisory_lock(4242)');
    const b = await bg.launch("SELECT pg_advisory_xact_lock(4242); INSERT INTO bystander VALUES ('B')");
    assert.equal(b.pid, a.pid, 'B runs on the warm connection A used');
    await until(
      async () => (await db.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'", [b.pid])).length,
      'B to wait for the lock',
    );
    await bg.cancel(a);
    await bg.cancel(a, { graceMs: 0 });
    assert.equal((await bg.info(a)).state, 'stopped');
    assert.equal((await bg.info(b)).state, 'running');
    assert.deepEqual(await db.query('SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1', [b.pid]), [{ wait_event_type: 'Lock' }]);
    await db.query('SELECT pg_advisory_unlock(4242)');
    await bg.wait(b);
    assert.equal((await bg.info(b)).state, 'stopped');
    assert.equal(await bg.errorInfo(b), null);
    assert.deepEqual(await db.query("SELECT id FROM bystander WHERE id IN ('A', 'B') ORDER BY id"), [{ id: 'A' }, { id: 'B' }]);
  });
});

test('c) hammer: cancel(A) racing launch(B) on one connection slot never touches B', async () => {
  takeBaseline();
  const rng = random(SEED).fork(3);
  await withInstance({ maxWorkers: 1, whenFull: 'queue' }, async (bg) => {
    const tally = { aCanceled: 0, aStopped: 0, bReusedA: 0 };
    for (let i = 0; i < 150; i++) {
      // A sleeps 0-3 ms before its INSERT, so some cancels land while it runs and some after.
      const a = await bg.launch(`SELECT pg_sleep(${(rng.int(0, 3) / 1000).toFixed(3)}); INSERT INTO hammer VALUES ('A${i}')`);
      const graceMs = rng.int(0, 20);
      const bSql = `SELECT pg_sleep(${(rng.int(0, 5) / 1000).toFixed(3)}); INSERT INTO hammer VALUES ('B${i}')`;
      let launchingB: Promise<WorkerHandle>;
      let cancellingA: Promise<void>;
      switch (rng.int(0, 3)) {
        case 0:
          cancellingA = bg.cancel(a, { graceMs });
          launchingB = bg.launch(bSql);
          break;
        case 1:
          launchingB = bg.launch(bSql);
          cancellingA = bg.cancel(a, { graceMs });
          break;
        case 2:
          launchingB = bg.launch(bSql);
          await nextMacrotask();
          cancellingA = bg.cancel(a, { graceMs });
          break;
        default:
          launchingB = bg.launch(bSql);
          // Cancel A once B has its connection: A is finished by then, so this must do nothing.
          cancellingA = launchingB.then(() => bg.cancel(a, { graceMs }));
      }
      const [b] = await Promise.all([launchingB, cancellingA]);
      await bg.wait(b);
      const [infoA, infoB] = [await bg.info(a), await bg.info(b)];
      const rows = new Map(
        (await db.query<{ id: string; n: number }>('SELECT id, count(*)::int AS n FROM hammer WHERE id IN ($1, $2) GROUP BY id', [`A${i}`, `B${i}`])).map(
          (r) => [r.id, r.n],
        ),
      );
      const what = `#${i} graceMs ${graceMs}: A ${infoA.state} (pid ${a.pid}), B ${infoB.state} (pid ${b.pid}, ${(await bg.errorInfo(b))?.message ?? 'no error'})`;
      assert.equal(infoB.state, 'stopped', what);
      assert.equal(rows.get(`B${i}`), 1, what);
      if (infoA.state === 'canceled') {
        tally.aCanceled++;
        assert.equal(rows.get(`A${i}`), undefined, what);
      } else {
        assert.equal(infoA.state, 'stopped', what);
        assert.equal(rows.get(`A${i}`), 1, what);
        tally.aStopped++;
        if (a.pid === b.pid) tally.bReusedA++;
      }
    }
    console.log(
      `races c) seed ${SEED}: 150 rounds — A canceled ${tally.aCanceled}, A stopped ${tally.aStopped} (B on A's warm connection ${tally.bReusedA}), B stopped 150`,
    );
  });
});

test('c) a launch aborted while its connection is being opened gives that connection back once: it never serves two workers at a time', async () => {
  takeBaseline();
  await withInstance({ maxWorkers: 2 }, async (bg) => {
    const controller = new AbortController();
    const aborted = bg.launch('SELECT 1', { signal: controller.signal, label: 'aborted' });
    // By the next macrotask the launch holds a slot and its (first) connection is being opened:
    // TCP and authentication take several round trips.
    await nextMacrotask();
    assert.deepEqual(
      (await bg.list()).map((w) => [w.label, w.state, w.pid]),
      [['aborted', 'pending', 0]],
    );
    controller.abort();
    await assert.rejects(aborted, { code: 'PGBG_ABORTED' });
    // The connection opens anyway and goes back to the pool, reset, as a warm one.
    await until(async () => {
      // (Besides the control connection, open since the launch.)
      const backends = (await db.backends()).filter((b) => b.application_name !== 'pgbg:control');
      return backends.length === 1 && backends[0]!.state === 'idle' && backends[0]!.query === 'DISCARD ALL';
    }, 'the late connection to be reset and parked');

    await db.query('SELECT pg_advisory_lock(4343)');
    const first = await bg.launch("SELECT pg_advisory_xact_lock(4343); INSERT INTO bystander VALUES ('first')", { label: 'first' });
    await until(
      async () => (await db.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'", [first.pid])).length,
      'first to wait for the lock',
    );
    const second = await bg.launch("INSERT INTO bystander VALUES ('second')", { label: 'second' });
    // Cancelling `second` must not touch `first`, whatever connection each one got.
    await bg.cancel(second);
    const firstWhileLocked = (await bg.info(first)).state;
    await db.query('SELECT pg_advisory_unlock(4343)');
    await bg.wait(first);
    const outcome = async (h: WorkerHandle) => {
      const info = await bg.info(h);
      return { pid: h.pid, state: info.state, sqlstate: (await bg.errorInfo(h))?.sqlstate ?? null };
    };
    const observed = {
      samePid: first.pid === second.pid,
      firstWhileLocked,
      first: await outcome(first),
      second: (await outcome(second)).state,
      rows: (await db.query<{ id: string }>("SELECT id FROM bystander WHERE id IN ('first', 'second') ORDER BY id")).map((r) => r.id),
    };
    assert.deepEqual(observed, {
      samePid: false,
      firstWhileLocked: 'running',
      first: { pid: first.pid, state: 'stopped', sqlstate: null },
      second: observed.second === 'stopped' ? 'stopped' : 'canceled',
      rows: observed.second === 'stopped' ? ['first', 'second'] : ['first'],
    });
  });
});

// ---- d) nothing outlives close() -----------------------------------------------------------------------

test('d) after all of that and close(): no backend, no handle or timer, bounded memory', async () => {
  const start = takeBaseline();
  // Each test above closed its instance. Backends exit asynchronously after the Terminate message.
  await until(async () => (await db.backends()).length === 0, 'no backend of ours on the database');
  const leftovers = await until(() => resourcesGrownSince(start.resources).length === 0 && [], 'the active resources to return to the baseline').catch(() =>
    resourcesGrownSince(start.resources),
  );
  assert.deepEqual(leftovers, [], `resources that outlived close(): ${process.getActiveResourcesInfo().join(', ')}`);
  const growth = snapshot().rss - start.rss;
  console.log(`races d) rss growth ${(growth / 2 ** 20).toFixed(1)} MiB`);
  assert.ok(growth < 200 * 2 ** 20, `RSS grew by ${(growth / 2 ** 20).toFixed(1)} MiB`);
});
