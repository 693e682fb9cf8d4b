// pg_background 2.0's helpers against a real server: run (rows, failure, a timeout that
// cancels and waits for the stop), outcome, drain, waitAny, cancelByLabel (whose matcher must
// agree with the server's own LIKE), purge, fullSql, workersTimedOut and ResultInfo's times.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { PgBackgroundError, type WorkerHandle } from 'pg-background';
import { likeMatcher } from '../src/util/like-pattern.js';
import { useDatabase } from './support/database.js';

const db = useDatabase(import.meta.filename, {
  async setup(db) {
    await db.query('CREATE TABLE run_sink (n int)');
  },
});

/** fast-check's seed: fixed, so a failure replays; PGBG_FC_SEED overrides it. */
const FC_SEED = process.env.PGBG_FC_SEED ? Number(process.env.PGBG_FC_SEED) : 0x11_2024;

const code = (expected: string, pattern?: RegExp) => (error: unknown) => {
  assert.ok(error instanceof PgBackgroundError, String(error));
  assert.equal(error.code, expected, error.message);
  if (pattern) assert.match(error.message, pattern);
  return true;
};

test('run reads the rows, waits and detaches; a failed worker is an outcome', async () => {
  const bg = db.background();
  const ok = await bg.run<{ n: number }>('SELECT generate_series(1, 3) AS n', { label: 'run/ok' });
  const { launchedAt, elapsedMs, cookie, pid, ...rest } = ok;
  assert.ok(launchedAt instanceof Date && elapsedMs >= 0 && typeof cookie === 'bigint' && pid > 0);
  assert.deepEqual(rest, {
    label: 'run/ok',
    state: 'stopped',
    consumed: true,
    completed: true,
    hasError: false,
    rowCount: 3,
    commandTag: 'SELECT',
    sqlstate: null,
    errorMessage: null,
    timedOut: false,
    rows: [{ n: 1 }, { n: 2 }, { n: 3 }],
  });
  await assert.rejects(bg.outcome(ok), code('PGBG_UNKNOWN_WORKER'));

  const failed = await bg.run('SELECT 1/0');
  assert.deepEqual(
    [failed.state, failed.hasError, failed.sqlstate, failed.errorMessage, failed.rows, failed.timedOut],
    ['error', true, '22012', 'division by zero', null, false],
  );
  assert.deepEqual(await bg.list(), []);
  const stats = await bg.stats();
  assert.deepEqual([stats.workersCompleted, stats.workersFailed, stats.workersTimedOut, stats.workersActive], [1, 1, 0, 0]);
  await bg.close();
});

test('a timed-out run cancels, waits for the stop, commits nothing and says timedOut', async () => {
  const bg = db.background({ cancelGraceMs: 5000 });
  const sql = "INSERT INTO run_sink VALUES (1); SELECT 'v2-helpers-timeout' AS marker, pg_sleep(30)";
  const run = await bg.run(sql, { timeoutMs: 200, label: 'run/slow' });
  assert.deepEqual([run.state, run.completed, run.hasError, run.timedOut, run.sqlstate, run.rows], ['canceled', true, true, true, '57014', null]);
  assert.ok(run.elapsedMs >= 200, `elapsedMs ${run.elapsedMs}`);
  // Nothing of it is still running on the server the moment run() resolves.
  const running = await db.query(
    "SELECT pid FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid() AND (pid = $1 OR query LIKE '%v2-helpers-timeout%')",
    [run.pid],
  );
  assert.deepEqual(running, []);
  assert.deepEqual(await db.query('SELECT count(*)::int AS n FROM run_sink'), [{ n: 0 }]);
  assert.deepEqual(await bg.list(), []);
  const stats = await bg.stats();
  assert.deepEqual([stats.workersCanceled, stats.workersTimedOut, stats.workersActive], [1, 1, 0]);
  await bg.close();
});

test('run rejects only for bad arguments and a closed instance', async () => {
  const bg = db.background();
  await assert.rejects(bg.run(''), code('PGBG_INVALID_ARGUMENT', /`sql`/));
  await assert.rejects(bg.run('SELECT 1', { timeoutMs: -1 }), code('PGBG_INVALID_ARGUMENT', /`timeoutMs`.*-1/));
  await assert.rejects(bg.run('SELECT 1', { timeOutMs: 5 } as never), code('PGBG_INVALID_ARGUMENT', /timeOutMs/));
  assert.equal((await bg.stats()).workersLaunched, 0);
  await bg.close();
  await assert.rejects(bg.run('SELECT 1'), code('PGBG_CLOSED'));
});

test('workersTimedOut counts timeouts of launch and workerTimeoutMs, not plain cancels', async () => {
  // 1 s: the quick worker below must finish within it even on a loaded machine.
  const bg = db.background({ workerTimeoutMs: 1000 });
  const byInstance = await bg.launch('SELECT pg_sleep(30)');
  const byLaunch = await bg.launch('SELECT pg_sleep(30)', { timeoutMs: 50 });
  const cancelled = await bg.launch('SELECT pg_sleep(30)', { timeoutMs: 0 });
  const quick = await bg.launch('SELECT 1');
  await bg.cancel(cancelled);
  await bg.drain([byInstance, byLaunch, quick]);
  const outcomes = await Promise.all([byInstance, byLaunch, cancelled, quick].map((h) => bg.outcome(h)));
  assert.deepEqual(
    outcomes.map((o) => [o.state, o.timedOut]),
    [
      ['canceled', true],
      ['canceled', true],
      ['canceled', false],
      ['stopped', false],
    ],
  );
  const stats = await bg.stats();
  assert.deepEqual([stats.workersCanceled, stats.workersTimedOut, stats.workersCompleted], [3, 2, 1]);
  await bg.close();
});

test('outcome and resultInfo consume nothing; resultInfo has startedAt and finishedAt', async () => {
  const bg = db.background();
  const h = await bg.launch({ text: 'SELECT $1::int AS x FROM pg_sleep(0.1)', values: [7] });
  const live = await bg.outcome(h);
  assert.deepEqual([live.state, live.completed, live.consumed, live.timedOut], ['running', false, false, false]);
  const running = await bg.resultInfo(h);
  assert.ok(running.startedAt instanceof Date);
  assert.equal(running.finishedAt, null);
  await bg.wait(h);
  const info = await bg.resultInfo(h);
  assert.ok(info.finishedAt instanceof Date && info.finishedAt.getTime() >= info.startedAt!.getTime());
  assert.deepEqual(info.startedAt, running.startedAt);
  const done = await bg.outcome(h);
  assert.deepEqual([done.state, done.completed, done.consumed, done.rowCount, done.commandTag], ['stopped', true, false, 1, 'SELECT']);
  assert.equal(done.elapsedMs, info.finishedAt.getTime() - done.launchedAt.getTime());
  assert.deepEqual(await bg.result(h).toArray(), [{ x: 7 }]);
  assert.equal((await bg.outcome(h)).consumed, true);
  await bg.close();
});

test('drain of a slow, a fast and a failing worker: three outcomes in input order within the budget', async () => {
  const bg = db.background();
  const slow = await bg.launch("SELECT 'slow' AS s FROM pg_sleep(0.3)", { label: 'slow' });
  const fast = await bg.launch('SELECT 1', { label: 'fast' });
  const failing = await bg.launch('SELECT 1/0', { label: 'failing' });
  const outcomes = await bg.drain([slow, fast, failing], { timeoutMs: 30_000 });
  assert.deepEqual(
    outcomes.map((o) => [o.pid, o.cookie, o.label, o.state, o.completed, o.sqlstate]),
    [
      [slow.pid, slow.cookie, 'slow', 'stopped', true, null],
      [fast.pid, fast.cookie, 'fast', 'stopped', true, null],
      [failing.pid, failing.cookie, 'failing', 'error', true, '22012'],
    ],
  );
  // drain does not detach or consume: the rows are still there.
  assert.deepEqual(await bg.result(slow).toArray(), [{ s: 'slow' }]);
  assert.deepEqual(await bg.drain([]), []);
  await bg.close();
});

test('drain shares one budget: when it is spent, unfinished workers are reported running', async () => {
  const bg = db.background();
  const stuck = [await bg.launch('SELECT pg_sleep(30)'), await bg.launch('SELECT pg_sleep(30)'), await bg.launch('SELECT pg_sleep(30)')];
  const fast = await bg.launch('SELECT 1');
  const started = Date.now();
  const outcomes = await bg.drain([...stuck, fast], { timeoutMs: 500 });
  const took = Date.now() - started;
  assert.deepEqual(
    outcomes.map((o) => o.state),
    ['running', 'running', 'running', 'stopped'],
  );
  // One shared budget, not one per handle (that would take 1500 ms or more: the margin is for a loaded machine).
  assert.ok(took >= 500 && took < 1500, `drain took ${took} ms`);
  assert.deepEqual(
    (await bg.drain(stuck, { timeoutMs: 0 })).map((o) => o.completed),
    [false, false, false],
  );
  await bg.cancelAll();
  await bg.close();
});

test('waitAny resolves with the first to finish, woken by its completion (no polling timer)', async () => {
  const bg = db.background();
  const slow = await bg.launch('SELECT pg_sleep(30)');
  const fast = await bg.launch('SELECT 1 FROM pg_sleep(0.1)');
  let macrotaskRan = false;
  bg.once('finished', () => setImmediate(() => (macrotaskRan = true)));
  const first = await bg.waitAny([slow, fast]);
  assert.equal(first, fast);
  // It resolved within the same turn of the event loop as the completion: no timer was involved.
  assert.equal(macrotaskRan, false);
  assert.equal(await bg.waitAny([slow, fast], { timeoutMs: 0 }), fast);
  assert.equal(await bg.waitAny([slow], { timeoutMs: 50 }), null);
  await bg.cancel(slow);
  assert.equal(await bg.waitAny([fast, slow]), fast);
  await bg.close();
});

test('drain and waitAny validate their arguments before waiting', async () => {
  const bg = db.background();
  const h = await bg.launch('SELECT 1');
  await assert.rejects(bg.waitAny([]), code('PGBG_INVALID_ARGUMENT', /`handles`.*non-empty/));
  await assert.rejects(bg.drain('x' as never), code('PGBG_INVALID_ARGUMENT', /`handles`.*"x"/));
  await assert.rejects(bg.waitAny([h, { pid: 1 } as never]), code('PGBG_INVALID_ARGUMENT', /`handles\[1\]`.*cookie/));
  await assert.rejects(bg.drain([h], { timeoutMs: -5 }), code('PGBG_INVALID_ARGUMENT', /`timeoutMs`.*-5/));
  await assert.rejects(bg.waitAny([h], { budget: 1 } as never), code('PGBG_INVALID_ARGUMENT', /budget/));
  await assert.rejects(bg.drain([{ pid: h.pid, cookie: h.cookie ^ 1n }]), code('PGBG_COOKIE_MISMATCH'));
  await assert.rejects(bg.waitAny([{ pid: 1, cookie: 1n }]), code('PGBG_UNKNOWN_WORKER'));
  const controller = new AbortController();
  const slow = await bg.launch('SELECT pg_sleep(30)');
  const waiting = bg.drain([slow], { signal: controller.signal });
  controller.abort(new Error('stop waiting'));
  await assert.rejects(waiting, /stop waiting/);
  assert.equal((await bg.outcome(slow)).state, 'running');
  await bg.close({ cancel: true });
});

test('cancelByLabel cancels exactly the active workers whose label matches, and waits for them', async () => {
  const bg = db.background();
  const done = await bg.launch('SELECT 1', { label: 'etl/prod/done' });
  await bg.wait(done);
  const labels = ['etl/prod/a', 'etl/prod/b', 'etl/dev/a', 'etl_prod', 'etlXprod', '50%/x', undefined] as const;
  const handles = new Map<string, WorkerHandle>();
  for (const label of labels) handles.set(label ?? '(none)', await bg.launch('SELECT pg_sleep(30)', label === undefined ? {} : { label }));
  const states = async () => Object.fromEntries(await Promise.all([...handles].map(async ([label, h]) => [label, (await bg.info(h)).state])));

  assert.equal(await bg.cancelByLabel('etl/prod/%', { graceMs: 1000 }), 2);
  assert.deepEqual(await states(), {
    'etl/prod/a': 'canceled',
    'etl/prod/b': 'canceled',
    'etl/dev/a': 'running',
    etl_prod: 'running',
    etlXprod: 'running',
    '50%/x': 'running',
    '(none)': 'running',
  });
  assert.equal((await bg.outcome(done)).state, 'stopped');
  assert.equal(await bg.cancelByLabel('etl\\_prod'), 1);
  assert.equal((await bg.info(handles.get('etlXprod')!)).state, 'running');
  assert.equal(await bg.cancelByLabel('50\\%%'), 1);
  assert.equal(await bg.cancelByLabel('nothing%'), 0);
  await assert.rejects(bg.cancelByLabel('etl\\'), code('PGBG_INVALID_ARGUMENT', /escape/));
  await assert.rejects(bg.cancelByLabel(5 as never), code('PGBG_INVALID_ARGUMENT', /`pattern`/));
  await assert.rejects(bg.cancelByLabel('%', { graceMs: 3_600_001 }), code('PGBG_INVALID_ARGUMENT', /`graceMs`/));
  // An unlabelled worker never matches, not even '%' (NULL LIKE '%' is not true).
  assert.equal(await bg.cancelByLabel('%'), 2);
  assert.equal((await bg.info(handles.get('(none)')!)).state, 'running');
  await bg.close({ cancel: true });
});

test("the label matcher agrees with the server's LIKE on generated labels and patterns", async () => {
  const chars = ['a', 'b', 'A', '%', '_', '\\', 'é', '😀', '.', '*', '\n'];
  const text = fc.array(fc.constantFrom(...chars), { maxLength: 8 }).map((a) => a.join(''));
  // Patterns derived from a label match often; free ones mostly do not: test both.
  const derived = fc
    .tuple(
      fc.array(fc.constantFrom(...chars), { maxLength: 8 }),
      fc.array(fc.constantFrom('keep', 'keep', 'one', 'any', 'escape', 'drop'), { minLength: 8, maxLength: 8 }),
    )
    .map(([label, ops]) => {
      const pattern = label.map((char, i) => ({ keep: char, one: '_', any: '%', escape: '\\' + char, drop: '' })[ops[i]!]!).join('');
      return [label.join(''), pattern] as const;
    });
  const pairs = fc.oneof(fc.tuple(text, text), derived);
  let matched = 0;
  let refusedByServer = 0;
  await fc.assert(
    fc.asyncProperty(pairs, async ([label, pattern]) => {
      let server: boolean | 'error';
      try {
        server = (await db.query<{ m: boolean }>('SELECT $1::text LIKE $2::text AS m', [label, pattern]))[0]!.m;
      } catch (error) {
        assert.equal((error as { code?: string }).code, '22025', String(error));
        server = 'error';
      }
      let ours: boolean | 'refused';
      try {
        ours = likeMatcher(pattern)(label);
      } catch (error) {
        assert.ok(error instanceof PgBackgroundError && error.code === 'PGBG_INVALID_ARGUMENT', String(error));
        ours = 'refused';
      }
      const where = `${JSON.stringify(label)} LIKE ${JSON.stringify(pattern)}`;
      if (/(^|[^\\])(\\\\)*\\$/.test(pattern)) {
        // A lone trailing escape: the server raises 22025 once its matching reaches it (so only
        // for some labels, else it answers false); we refuse such a pattern whatever the label.
        assert.equal(ours, 'refused', where);
        assert.notEqual(server, true, where);
        refusedByServer += server === 'error' ? 1 : 0;
        return;
      }
      if (server === true) matched++;
      assert.equal(ours, server, where);
    }),
    { seed: FC_SEED, numRuns: 600 },
  );
  assert.ok(matched > 50, `only ${matched} generated pairs matched: the test would not see wrong rejections`);
  assert.ok(refusedByServer > 5, `only ${refusedByServer} trailing escapes reached the server's check`);
});

test('purge drops finished workers only; running ones stay tracked', async () => {
  const bg = db.background();
  const finished = [await bg.launch('SELECT 1'), await bg.launch('SELECT 1/0'), await bg.submit('SELECT 2')];
  const running = await bg.launch('SELECT pg_sleep(30)', { label: 'keeps running' });
  await bg.drain(finished);
  assert.equal(await bg.purge(), 3);
  assert.deepEqual(
    (await bg.list()).map((w) => [w.label, w.state]),
    [['keeps running', 'running']],
  );
  for (const h of finished) await assert.rejects(bg.outcome(h), code('PGBG_UNKNOWN_WORKER'));
  assert.equal(await bg.purge(), 0);
  await bg.cancel(running);
  assert.equal(await bg.purge(), 1);
  assert.deepEqual(await bg.list(), []);
  const stats = await bg.stats();
  assert.deepEqual([stats.workersLaunched, stats.workersActive], [4, 0]);
  await bg.close();
});

test('fullSql returns the whole SQL text, beyond the 120-code-point preview', async () => {
  const bg = db.background();
  const sql = `SELECT '${'😀'.repeat(150)}' AS long, 1 AS n`;
  const h = await bg.launch(sql);
  assert.equal(await bg.fullSql(h), sql);
  assert.equal(Array.from((await bg.info(h)).sqlPreview).length, 120);
  const p = await bg.launch({ text: 'SELECT $1::text AS t', values: ['x'] });
  assert.equal(await bg.fullSql(p), 'SELECT $1::text AS t');
  await assert.rejects(bg.fullSql({ pid: h.pid, cookie: h.cookie ^ 1n }), code('PGBG_COOKIE_MISMATCH'));
  await bg.close();
  await assert.rejects(bg.fullSql(h), code('PGBG_CLOSED'));
});
