// WorkerMonitor from code that did not launch the workers: it sees a PgBackground's workers in
// the view with their exact fields, cancels, pauses and resumes them through the SQL functions,
// checks its inputs before any I/O, says PGBG_NOT_INSTALLED where the view is missing, and
// leaves no connection behind once closed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PgBackgroundError, WorkerMonitor } from 'pg-background';
import { until, useDatabase } from './support/database.js';
import { outsider } from './support/outsider.js';

// A role of its own: it may not signal the superuser's workers.
const stranger = outsider('pgbg_monitor_outsider');
const db = useDatabase(import.meta.filename, stranger.hooks);
const outsiderUrl = () => stranger.url(db.url);

function monitor(options: ConstructorParameters<typeof WorkerMonitor>[0] = {}): WorkerMonitor {
  return new WorkerMonitor({ connectionString: db.url, ...options });
}

async function rejectsWith(promise: Promise<unknown>, code: string, message?: RegExp): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof PgBackgroundError, String(error));
    assert.equal(error.code, code);
    if (message) assert.match(error.message, message);
    return true;
  });
}

test('list() shows another instance’s running worker with the view’s columns, typed (bigint cookie, Dates)', async () => {
  const bg = db.background({ journal: true });
  await bg.install({ journal: true });
  await using mon = monitor();
  const h = await bg.launch('SELECT pg_sleep(60)', { label: 'monitor/sleeper' });
  const seen = await until(async () => (await mon.list()).find((w) => w.cookie === h.cookie && w.waitEvent === 'Timeout:PgSleep'), 'the worker, sleeping');
  const [{ user }] = (await db.query('SELECT current_user AS user')) as [{ user: string }];
  const [view] = await db.query('SELECT owner, launched_at, started_at FROM pg_background_workers WHERE cookie = $1', [h.cookie.toString()]);
  assert.equal(typeof seen.elapsedMs, 'number');
  assert.ok(seen.updatedAt instanceof Date);
  assert.deepEqual(
    { ...seen, elapsedMs: 0, updatedAt: null },
    {
      cookie: h.cookie,
      pid: h.pid,
      label: 'monitor/sleeper',
      scope: 'root',
      parent: null,
      state: 'running',
      phase: null,
      fractionCompleted: null,
      sqlPreview: 'SELECT pg_sleep(60)',
      user,
      owner: view!.owner,
      attempts: 1,
      launchedAt: view!.launched_at,
      startedAt: view!.started_at,
      updatedAt: null,
      finishedAt: null,
      elapsedMs: 0,
      waitEvent: 'Timeout:PgSleep',
      blockedBy: [],
      sqlstate: null,
      errorMessage: null,
      commandTag: null,
      rowCount: seen.rowCount,
    },
  );
  assert.ok(seen.launchedAt instanceof Date);
  await bg.cancel(h);
  await bg.close();
});

test('cancel() from a monitor ends another instance’s worker canceled; again, or a wrong cookie, is false', async () => {
  const bg = db.background({ journal: true });
  await bg.install({ journal: true });
  await db.query('CREATE TABLE canceled_rows (n int)');
  await using mon = monitor();
  const h = await bg.launch('INSERT INTO canceled_rows SELECT 1 FROM pg_sleep(60)', { label: 'monitor/victim' });
  await until(async () => (await mon.list()).some((w) => w.cookie === h.cookie && w.state === 'running'), 'the worker running');
  assert.equal(await mon.cancel(h, { graceMs: 2000 }), true);
  await bg.wait(h);
  assert.equal((await bg.info(h)).state, 'canceled');
  assert.deepEqual(await db.query('SELECT count(*)::int AS n FROM canceled_rows'), [{ n: 0 }]);
  const after = await until(async () => (await mon.list()).find((w) => w.cookie === h.cookie && w.state === 'canceled'), 'the view saying canceled');
  assert.ok(after.finishedAt instanceof Date);
  assert.equal(await mon.cancel(h.cookie), false);
  assert.equal(await mon.cancel(12345n), false);
  // finishedWithinMs leaves out what finished earlier than that.
  await until(async () => !(await mon.list({ finishedWithinMs: 0 })).some((w) => w.cookie === h.cookie), 'it leaving the recent list');
  assert.equal((await mon.list()).filter((w) => w.cookie === h.cookie).length, 1);
  await bg.close();
});

test('a role that could not pg_cancel_backend the worker is refused: PGBG_PERMISSION_DENIED, and the worker runs on', async () => {
  const bg = db.background({ journal: true });
  await bg.install({ journal: true });
  await using mine = monitor();
  await using theirs = new WorkerMonitor({ connectionString: outsiderUrl() });
  const h = await bg.launch('SELECT pg_sleep(60)', { label: 'monitor/guarded' });
  await until(async () => (await mine.list()).some((w) => w.cookie === h.cookie && w.state === 'running'), 'the worker running');
  for (const call of [() => theirs.cancel(h, { graceMs: 0 }), () => theirs.pause(h), () => theirs.resume(h)]) {
    await assert.rejects(call(), (error: unknown) => {
      assert.ok(error instanceof PgBackgroundError);
      assert.equal(error.code, 'PGBG_PERMISSION_DENIED');
      assert.equal(error.sqlstate, '42501');
      assert.match(error.message, /permission denied/);
      return true;
    });
  }
  assert.equal((await bg.info(h)).state, 'running');
  assert.equal(await mine.cancel(h), true);
  assert.equal((await bg.info(h)).state, 'canceled');
  await bg.close();
});

test('pause() and resume() of a running worker, or of a cookie nobody has, change nothing and say false', async (t) => {
  const bg = db.background({ journal: true });
  t.after(() => bg.close({ cancel: true }));
  await bg.install({ journal: true });
  await using mon = monitor();
  const h = await bg.launch('SELECT pg_sleep(60)', { label: 'monitor/running' });
  await until(async () => (await mon.info(h))?.state === 'running', 'the worker running');
  // A running statement cannot be paused (SPEC): nothing to hold, nothing to release.
  assert.deepEqual([await mon.pause(h), await mon.resume(h), await mon.pause(12345n), await mon.resume({ cookie: -12345n })], [false, false, false, false]);
  assert.equal((await bg.info(h)).state, 'running');
  assert.equal((await mon.info(h))?.state, 'running');
  assert.equal(await mon.info(12345n), null);
  await bg.close({ cancel: true });
});

test('pause() holds another instance’s pending worker past a freed slot, and resume() lets it run', async (t) => {
  const bg = db.background({ journal: true, maxWorkers: 1, whenFull: 'queue' });
  t.after(() => bg.close({ cancel: true }));
  await bg.install({ journal: true });
  await using mon = monitor();
  const first = await bg.launch('SELECT pg_sleep(60)', { label: 'monitor/first' });
  // A queued launch resolves once it starts: its handle comes from list() meanwhile.
  const launching = bg.launch('SELECT 2', { label: 'monitor/second' });
  const second = (await bg.list()).find((w) => w.label === 'monitor/second')!;
  assert.equal(second.state, 'pending');
  await until(async () => (await mon.info(second))?.state === 'pending', 'the second pending in the view');
  assert.equal(await mon.pause(second), true);
  await until(async () => (await bg.info(second)).state === 'paused', 'the second paused');
  await until(async () => (await mon.info(second))?.state === 'paused', 'the view saying paused');
  assert.equal(await mon.pause(second), false);
  assert.equal(await mon.cancel(first, { graceMs: 1000 }), true);
  assert.equal((await bg.info(first)).state, 'canceled');
  // The slot is free, yet it stays held.
  assert.equal((await bg.info(second)).state, 'paused');
  assert.equal(await mon.resume({ cookie: second.cookie }), true);
  await bg.wait(await launching);
  assert.equal((await bg.info(second)).state, 'stopped');
  // Once the journal says so (the owner's next batch), there is nothing to resume.
  await until(async () => (await mon.info(second))?.state === 'stopped', 'the view saying stopped');
  assert.equal(await mon.resume(second), false);
});

test('inputs are checked before any I/O; a missing view is PGBG_NOT_INSTALLED; a closed monitor is PGBG_CLOSED and leaves no connection', async () => {
  const mon = monitor({ application_name: 'pg-background-monitor-test' });
  await rejectsWith(mon.cancel(1 as never), 'PGBG_INVALID_ARGUMENT', /Expected a worker's cookie \(a bigint\) or an object with a bigint `cookie`, got 1/);
  await rejectsWith(mon.pause({ cookie: '1' } as never), 'PGBG_INVALID_ARGUMENT', /got an object/);
  await rejectsWith(mon.resume(2n ** 63n), 'PGBG_INVALID_ARGUMENT', /Expected `cookie` to be a 64-bit integer, got 9223372036854775808n/);
  await rejectsWith(mon.cancel(1n, { graceMs: -1 }), 'PGBG_INVALID_ARGUMENT', /Expected `graceMs` to be an integer from 0 to 3600000, got -1/);
  await rejectsWith(mon.list({ finishedWithinMs: 1.5 }), 'PGBG_INVALID_ARGUMENT', /finishedWithinMs/);
  assert.throws(() => new WorkerMonitor({ types: {} } as never), /Option `types` is not supported by WorkerMonitor/);
  assert.throws(() => new WorkerMonitor({ schema: '' }), /Expected `schema`/);
  const mine = async () => (await db.backends()).filter((b) => b.application_name === 'pg-background-monitor-test').length;
  assert.equal(await mine(), 0);

  await using elsewhere = monitor({ schema: 'nowhere' });
  await rejectsWith(elsewhere.list(), 'PGBG_NOT_INSTALLED', /schema "nowhere"/);
  await rejectsWith(elsewhere.cancel(1n), 'PGBG_NOT_INSTALLED');

  const bg = db.background();
  await bg.install();
  await bg.close();
  assert.ok((await mon.list()).every((w) => typeof w.cookie === 'bigint' && w.launchedAt instanceof Date));
  assert.equal(await mine(), 1);
  await mon.close();
  await mon.close();
  await rejectsWith(mon.list(), 'PGBG_CLOSED');
  await until(async () => (await mine()) === 0, 'its connection gone');
});
