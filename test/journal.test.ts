// The journal: new PgBackground({ journal: true }) records every worker in pg_background_journal
// (install({ journal: true })), in batches on its control connection, and pg_background_workers
// shows them. Rows of stopped, failed and cancelled workers; a running one with its backend and
// live columns; a burst of launches as a handful of writes; a write that fails failing no worker
// and warning once; PGBG_NOT_INSTALLED; retention; and the proven outcome after kill -9 of the
// launching process: a worker that commits is shown stopped, one whose backend is then
// terminated is shown error 08006 "nothing committed", and nothing of it committed.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { PgBackground, type PgBackgroundError, type WorkerHandle } from 'pg-background';
import { JOURNAL_FLUSH_MS, journalCounts } from '../src/control/journal-writer.js';
import { NOTHING_COMMITTED_RUNNING } from '../src/store/migrations.js';
import { until, useDatabase } from './support/database.js';
import { journalWithMarks } from './support/journal-marks.js';

const writer = `pgbg_journal_writer_${randomBytes(3).toString('hex')}`;
const db = useDatabase(import.meta.filename, {
  async setup(db) {
    await journalWithMarks(db);
    await db.query(`CREATE ROLE ${pg.escapeIdentifier(writer)} NOLOGIN`);
    await db.query(`GRANT SELECT, INSERT, UPDATE, DELETE ON pg_background_journal, pg_background_journal_ends TO ${pg.escapeIdentifier(writer)}`);
    await db.query(`GRANT SELECT, INSERT ON marks TO ${pg.escapeIdentifier(writer)}`);
  },
  async teardown(db) {
    await db.query(`DROP OWNED BY ${pg.escapeIdentifier(writer)} CASCADE`);
    await db.query(`DROP ROLE ${pg.escapeIdentifier(writer)}`);
  },
});

const me = new URL(db.url).username;

/** The view's rows of `handles`, in their order, once `ready` holds for all of them. */
async function viewRows(handles: readonly WorkerHandle[], ready: (row: Record<string, unknown>) => boolean, what: string) {
  return until(async () => {
    const rows = await db.query('SELECT * FROM pg_background_workers WHERE cookie = ANY ($1::int8[])', [handles.map((h) => h.cookie.toString())]);
    const byCookie = new Map(rows.map((row) => [row.cookie as string, row]));
    const ordered = handles.map((h) => byCookie.get(h.cookie.toString()));
    return ordered.every((row) => row && ready(row)) ? (ordered as Record<string, unknown>[]) : null;
  }, what);
}

const marks = async (mark: string) => (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM marks WHERE mark = $1', [mark]))[0]!.n;

/**
 * A journaling instance whose one slot is held: its blocker waits on advisory lock `key`, held by
 * a session of the test until `release()`, so what is launched after it stays pending.
 */
async function heldSlot(t: TestContext, key: number, tagConnections = true) {
  const bg = db.background({ journal: true, maxWorkers: 1, whenFull: 'queue', tagConnections });
  const holder = new pg.Client({ connectionString: db.url });
  await holder.connect();
  t.after(() => holder.end());
  await holder.query('SELECT pg_advisory_lock($1)', [key]);
  const blocker = await bg.launch(`SELECT pg_advisory_lock(${key})`);
  const release = async () => {
    await holder.query('SELECT pg_advisory_unlock($1)', [key]);
    await bg.wait(blocker);
  };
  return { bg, release };
}

test('stopped, failed and cancelled workers: their rows in the journal and the view', async () => {
  const bg = db.background({ journal: true });
  const inserted = await bg.launch("INSERT INTO marks SELECT 'three' FROM generate_series(1, 3)", { label: 'etl/insert' });
  const failed = await bg.launch('SELECT 1 / 0', { label: 'etl/fail' });
  const sleeping = await bg.launch('SELECT pg_sleep(30)');
  await bg.wait(inserted);
  await bg.wait(failed);
  await until(async () => (await bg.info(sleeping)).state === 'running', 'the sleeper to run');
  await bg.cancel(sleeping);
  const rows = await viewRows([inserted, failed, sleeping], (row) => row.finished_at !== null, 'three finished rows');
  const fixed = rows.map(({ launched_at, started_at, updated_at, finished_at, elapsed_ms, ...rest }) => {
    assert.ok(launched_at instanceof Date && started_at instanceof Date && finished_at instanceof Date);
    assert.ok((started_at as Date) >= (launched_at as Date) && (finished_at as Date) >= (started_at as Date));
    assert.equal(updated_at!.valueOf(), finished_at!.valueOf());
    assert.equal(elapsed_ms, String((finished_at as Date).valueOf() - (launched_at as Date).valueOf()));
    return rest;
  });
  const common = { scope: 'root', parent: null, user_name: me, owner: `${hostname()}:${process.pid}`, attempts: 1, wait_event: null, blocked_by: [] };
  assert.deepEqual(fixed, [
    {
      ...common,
      cookie: inserted.cookie.toString(),
      pid: inserted.pid,
      label: 'etl/insert',
      state: 'stopped',
      phase: null,
      fraction_completed: null,
      sql_preview: "INSERT INTO marks SELECT 'three' FROM generate_series(1, 3)",
      sqlstate: null,
      error_message: null,
      command_tag: 'INSERT',
      row_count: '3',
    },
    {
      ...common,
      cookie: failed.cookie.toString(),
      pid: failed.pid,
      label: 'etl/fail',
      state: 'error',
      phase: null,
      fraction_completed: null,
      sql_preview: 'SELECT 1 / 0',
      sqlstate: '22012',
      error_message: 'division by zero',
      command_tag: null,
      row_count: '0',
    },
    {
      ...common,
      cookie: sleeping.cookie.toString(),
      pid: sleeping.pid,
      label: null,
      state: 'canceled',
      phase: null,
      fraction_completed: null,
      sql_preview: 'SELECT pg_sleep(30)',
      sqlstate: '57014',
      error_message: 'canceling statement due to user request',
      command_tag: null,
      row_count: '0',
    },
  ]);
  // What only the table keeps: the launching process, its control connection, the backends, the proof.
  const journal = await db.query(
    `SELECT j.cookie, j.owner_host, j.owner_pid, j.owner_application, j.proven, j.backend_started,
            c.application_name AS control_application
       FROM pg_background_journal j LEFT JOIN pg_stat_activity c
         ON c.pid = j.owner_control_pid AND (extract(epoch FROM c.backend_start) * 1000000)::int8 = j.owner_control_started
      WHERE j.cookie = ANY ($1::int8[]) ORDER BY j.launched_at`,
    [[inserted, failed, sleeping].map((h) => h.cookie.toString())],
  );
  const starts = await db.query<{ started: string }>('SELECT backend_started::text AS started FROM pg_background_journal WHERE cookie = $1', [
    inserted.cookie.toString(),
  ]);
  assert.match(starts[0]!.started, /^\d{16}$/);
  assert.deepEqual(
    journal.map(({ backend_started, ...row }) => ({ ...row, started: typeof backend_started })),
    [inserted, failed, sleeping].map((h) => ({
      cookie: h.cookie.toString(),
      owner_host: hostname(),
      owner_pid: process.pid,
      owner_application: 'pg-background',
      proven: true, // each ran in a transaction ending with the journal's record (a read-only one writes none)
      control_application: 'pgbg:control',
      started: 'string',
    })),
  );
  assert.equal(await marks('three'), 3);
  await bg.close();
});

test('a running worker is in the view within a second: its backend, live wait event, and the journaled row', async () => {
  const bg = db.background({ journal: true });
  const h = await bg.launch('SELECT pg_sleep(30)', { label: 'sleeper' });
  // Journaled (the owner is known) and live (the wait event from its backend).
  const [row] = await viewRows([h], (r) => r.owner !== null && r.state === 'running' && r.wait_event === 'Timeout:PgSleep', 'the sleeper running in the view');
  assert.equal(row!.pid, h.pid);
  assert.equal(row!.label, 'sleeper');
  assert.equal(row!.finished_at, null);
  const [backend] = await db.query('SELECT (extract(epoch FROM backend_start) * 1000000)::int8::text AS started FROM pg_stat_activity WHERE pid = $1', [h.pid]);
  const [journaled] = await db.query('SELECT pid, backend_started::text AS started, state FROM pg_background_journal WHERE cookie = $1', [h.cookie.toString()]);
  assert.deepEqual(journaled, { pid: h.pid, started: backend!.started, state: 'running' });
  await bg.cancel(h);
  await bg.close();
});

test('a burst of 200 launches is a handful of journal writes, not 200', async () => {
  const bg = db.background({ journal: true, maxWorkers: 16, whenFull: 'queue' });
  const before = journalCounts.writes;
  const started = Date.now();
  const handles = await Promise.all(Array.from({ length: 200 }, (_, i) => bg.submit({ text: 'SELECT $1::int', values: [i] })));
  await Promise.all(handles.map((h) => bg.wait(h)));
  await until(async () => {
    const [r] = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_background_journal WHERE cookie = ANY ($1::int8[]) AND state = 'stopped'", [
      handles.map((h) => h.cookie.toString()),
    ]);
    return r!.n === 200;
  }, 'all 200 rows stopped');
  const writes = journalCounts.writes - before;
  const elapsedMs = Date.now() - started;
  console.log(`journal: 200 launches, ${writes} writes in ${elapsedMs} ms`);
  // A write goes at most once per JOURNAL_FLUSH_MS, however many launches it carries: how many
  // that makes depends on how long the burst takes on this machine, not on the 200.
  assert.ok(writes >= 1 && writes <= Math.floor(elapsedMs / JOURNAL_FLUSH_MS) + 1, `${writes} writes for 200 launches in ${elapsedMs} ms`);
  await bg.close();
});

test('a journal write that fails (INSERT revoked) fails no worker, warns once, and is retried', async () => {
  const bg = db.background({ journal: true, options: `-c role=${writer}` });
  const warnings: PgBackgroundError[] = [];
  bg.on('warning', (warning) => warnings.push(warning));
  // The first launch finds the journal (and writes); then the right to insert goes.
  await bg.wait(await bg.launch('SELECT 1'));
  await db.query(`REVOKE INSERT ON pg_background_journal FROM ${pg.escapeIdentifier(writer)}`);
  const failuresBefore = journalCounts.failures;
  const handles = [await bg.launch("INSERT INTO marks VALUES ('revoked')"), await bg.launch('SELECT 2'), await bg.launch('SELECT 3')];
  for (const h of handles) await bg.wait(h);
  assert.deepEqual(
    (await Promise.all(handles.map((h) => bg.info(h)))).map((info) => info.state),
    ['stopped', 'stopped', 'stopped'],
  );
  await until(() => journalCounts.failures - failuresBefore >= 2, 'a write to fail and its retry to fail too');
  assert.equal(warnings.length, 1);
  assert.equal(warnings[0]!.code, 'PGBG_JOURNAL_WRITE_FAILED');
  assert.equal(warnings[0]!.sqlstate, '42501');
  assert.match(warnings[0]!.message, /^pg-background could not write the journal \(permission denied for table pg_background_journal\); no worker is affected/);
  // The INSERT's own transaction recorded that it committed anyway (another table, its own right).
  const own = await db.query('SELECT cookie FROM pg_background_journal_ends WHERE cookie = $1', [handles[0]!.cookie.toString()]);
  assert.deepEqual(own, [{ cookie: handles[0]!.cookie.toString() }]);
  assert.equal(await marks('revoked'), 1);
  // The right comes back: the kept rows land at the next retry.
  await db.query(`GRANT INSERT ON pg_background_journal TO ${pg.escapeIdentifier(writer)}`);
  const rows = await viewRows(handles, (row) => row.command_tag !== null, 'the kept rows to land');
  assert.deepEqual(
    rows.map((row) => [row.state, row.command_tag, row.row_count]),
    [
      ['stopped', 'INSERT', '1'],
      ['stopped', 'SELECT', '1'],
      ['stopped', 'SELECT', '1'],
    ],
  );
  assert.equal(warnings.length, 1);
  await bg.close();
});

test('the right to prove an end revoked after the instance looked: the worker that meets it fails, nothing committed, saying why; later ones run unproven', async () => {
  const bg = db.background({ journal: true, options: `-c role=${writer}` });
  await bg.wait(await bg.launch('SELECT 1'));
  await db.query(`REVOKE INSERT ON pg_background_journal_ends FROM ${pg.escapeIdentifier(writer)}`);
  try {
    const refused = await bg.launch("INSERT INTO marks VALUES ('refused proof')");
    await bg.wait(refused);
    const error = await bg.errorInfo(refused);
    assert.deepEqual([(await bg.info(refused)).state, error?.sqlstate], ['error', '42501']);
    assert.match(
      error!.hint!,
      /^The worker's SQL ran, then the journal's record of its end .* was refused, so nothing committed\. .*\(42501: permission denied for table pg_background_journal_ends\)$/,
    );
    assert.equal(await marks('refused proof'), 0);
    // The instance looked at its right again: the next workers run, without the proof.
    await until(async () => {
      const h = await bg.launch('SELECT 1');
      await bg.wait(h);
      return (await bg.info(h)).state === 'stopped';
    }, 'a worker to run unproven');
    const unproven = await bg.launch("INSERT INTO marks VALUES ('unproven')");
    await bg.wait(unproven);
    assert.equal((await bg.info(unproven)).state, 'stopped');
    assert.equal(await marks('unproven'), 1);
    await until(
      async () =>
        (await db.query("SELECT 1 FROM pg_background_journal WHERE cookie = $1 AND state = 'stopped' AND NOT proven", [String(unproven.cookie)])).length,
      'its row, stopped and unproven',
    );
    assert.deepEqual(await db.query('SELECT 1 FROM pg_background_journal_ends WHERE cookie = $1', [String(unproven.cookie)]), []);
  } finally {
    await db.query(`GRANT INSERT ON pg_background_journal_ends TO ${pg.escapeIdentifier(writer)}`);
    await db.query("DELETE FROM marks WHERE mark IN ('refused proof', 'unproven')");
    await bg.close();
  }
});

test('a journaling launch on a database without the journal rejects with PGBG_NOT_INSTALLED, every time, starting nothing', async () => {
  await db.query('CREATE SCHEMA nowhere');
  const bg = db.background({ journal: true, options: '-c search_path=nowhere' });
  const expected = {
    code: 'PGBG_NOT_INSTALLED',
    message: 'journal: true, but this database has no pg_background_journal on the search_path: run install({ journal: true }) first',
  };
  await assert.rejects(bg.launch('SELECT 1'), expected);
  await assert.rejects(bg.submit('SELECT 1'), expected);
  assert.equal((await bg.stats()).workersLaunched, 0);
  // install() into that schema: the next launch finds it.
  await bg.install({ schema: 'nowhere', journal: true });
  const h = await bg.launch('SELECT 1');
  await bg.wait(h);
  await until(
    async () => (await db.query('SELECT 1 FROM nowhere.pg_background_journal WHERE cookie = $1', [h.cookie.toString()])).length === 1,
    'the row in nowhere',
  );
  await bg.close();
});

test('options: journal must be a boolean, journalRetentionMs needs it and is an integer of ms', () => {
  assert.throws(() => new PgBackground({ journal: 'yes' as unknown as boolean }), {
    code: 'PGBG_INVALID_ARGUMENT',
    message: 'Expected `journal` to be a boolean, got "yes"',
  });
  assert.throws(() => new PgBackground({ journalRetentionMs: 1000 }), {
    code: 'PGBG_INVALID_ARGUMENT',
    message: "Option `journalRetentionMs` (1000) needs `journal: true`: it is the journal's retention",
  });
  assert.throws(() => new PgBackground({ journal: true, journalRetentionMs: -1 }), { code: 'PGBG_INVALID_ARGUMENT' });
  assert.throws(() => new PgBackground({ journal: true, journalRetentionMs: 1.5 }), { code: 'PGBG_INVALID_ARGUMENT' });
});

test('rows of workers finished longer ago than the retention are pruned (default 14 days)', async () => {
  const old = (days: number, cookie: number) =>
    db.query(
      `INSERT INTO pg_background_journal (cookie, pid, scope, state, launched_at, updated_at, finished_at)
       VALUES ($1, 1, 'root', 'stopped', now() - $2 * interval '1 day', now() - $2 * interval '1 day', now() - $2 * interval '1 day')`,
      [cookie, days],
    );
  await old(20, 9001);
  await old(1, 9002);
  // An orphan: its owner died before it recorded the end, which its own transaction wrote 20 days
  // ago. That end is all that says it committed: it stays, and so does the verdict. An end of 20
  // days that no unfinished row names goes.
  await db.query(
    `INSERT INTO pg_background_journal (cookie, pid, backend_started, scope, state, launched_at, updated_at, proven, owner_control_pid, owner_control_started)
     VALUES (9003, 1, 1, 'root', 'running', now() - interval '20 days', now() - interval '20 days', true, 1, 1)`,
  );
  await db.query("INSERT INTO pg_background_journal_ends VALUES (9003, now() - interval '20 days'), (9004, now() - interval '20 days')");
  const orphan = async () => (await db.query('SELECT state, sqlstate FROM pg_background_workers WHERE cookie = 9003'))[0];
  assert.deepEqual(await orphan(), { state: 'stopped', sqlstate: null });
  const ends = async () => (await db.query('SELECT cookie FROM pg_background_journal_ends WHERE cookie IN (9003, 9004) ORDER BY cookie')).map((r) => r.cookie);
  const present = async () => (await db.query('SELECT cookie FROM pg_background_journal WHERE cookie IN (9001, 9002) ORDER BY cookie')).map((r) => r.cookie);
  const bg = db.background({ journal: true });
  await bg.wait(await bg.launch('SELECT 1'));
  await until(async () => (await present()).length === 1, 'the 20-day-old row to go');
  assert.deepEqual(await present(), ['9002']);
  assert.deepEqual(await ends(), ['9003']);
  assert.deepEqual(await orphan(), { state: 'stopped', sqlstate: null });
  await bg.close();
  const short = db.background({ journal: true, journalRetentionMs: 12 * 3_600_000 });
  await short.wait(await short.launch('SELECT 1'));
  await until(async () => (await present()).length === 0, 'the 1-day-old row to go with a 12 h retention');
  await short.close();
  assert.deepEqual(await orphan(), { state: 'stopped', sqlstate: null });
  await db.query('DELETE FROM pg_background_journal WHERE cookie = 9003');
  await db.query('DELETE FROM pg_background_journal_ends WHERE cookie = 9003');
});

// ---- kill -9 of the launching process ------------------------------------------------------

const CHILD = fileURLToPath(new URL('./support/journal-child.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** Starts a journaling process that launches `sql`; once its row says running, kills it (SIGKILL). */
async function launchJournaledAndKill(sql: string): Promise<{ cookie: string; pid: number }> {
  const child = spawn(process.execPath, ['--conditions=pg-background-source', '--import', 'tsx', CHILD], {
    cwd: ROOT,
    env: { ...process.env, PGBG_CHILD_URL: db.url, PGBG_CHILD_SQL: sql },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk));
  const exited = once(child, 'exit');
  try {
    const [cookie, pid] = await new Promise<[string, number]>((resolve, reject) => {
      let out = '';
      child.stdout!.on('data', (chunk: Buffer) => {
        out += chunk;
        const lines = out.split('\n');
        if (lines.length > 1) {
          const [c, p] = lines[0]!.split(' ');
          resolve([c!, Number(p)]);
        }
      });
      child.once('exit', (code) => reject(new Error(`the launching process exited (${code}) first: ${stderr}`)));
    });
    await until(
      async () => (await db.query("SELECT 1 FROM pg_background_journal WHERE cookie = $1 AND state = 'running' AND pid = $2", [cookie, pid])).length,
      'the running row to be journaled',
    );
    child.kill('SIGKILL');
    assert.deepEqual(await exited, [null, 'SIGKILL']);
    return { cookie, pid };
  } finally {
    child.kill('SIGKILL');
  }
}

const viewRow = async (cookie: string) =>
  (await db.query('SELECT state, sqlstate, error_message, label FROM pg_background_workers WHERE cookie = $1', [cookie]))[0];

/**
 * An advisory lock the test holds while `body` runs (released even when it fails): a worker that
 * waits for it is still running when its launching process is killed, and ends only after it, at
 * any machine speed (a sleep could end before its running row is journaled, or before the kill).
 */
const GATE = 7_500_001;
async function gated(body: () => Promise<void>): Promise<void> {
  await db.query('SELECT pg_advisory_lock($1)', [GATE]);
  try {
    await body();
  } finally {
    await db.query('SELECT pg_advisory_unlock($1)', [GATE]);
  }
}

test('kill -9 of the launching process: a worker that goes on to commit is shown stopped', async () => {
  let cookie = '';
  await gated(async () => {
    ({ cookie } = await launchJournaledAndKill(`INSERT INTO marks VALUES ('survivor'); SELECT pg_advisory_xact_lock(${GATE})`));
    assert.deepEqual(await viewRow(cookie), { state: 'running', sqlstate: null, error_message: null, label: 'orphan' });
  });
  await until(async () => (await marks('survivor')) === 1, 'the orphaned worker to commit', 15_000);
  assert.deepEqual(await viewRow(cookie), { state: 'stopped', sqlstate: null, error_message: null, label: 'orphan' });
  // Its own transaction said so: the dead process never wrote its end.
  assert.deepEqual(await db.query('SELECT state FROM pg_background_journal WHERE cookie = $1', [cookie]), [{ state: 'running' }]);
  assert.equal((await db.query('SELECT 1 FROM pg_background_journal_ends WHERE cookie = $1', [cookie])).length, 1);
});

test('kill -9 of the launching process, then its worker terminated: error 08006 "nothing committed", and nothing did', async () => {
  const { cookie, pid } = await launchJournaledAndKill("INSERT INTO marks VALUES ('victim'); SELECT pg_sleep(60)");
  assert.deepEqual(await viewRow(cookie), { state: 'running', sqlstate: null, error_message: null, label: 'orphan' });
  await db.query('SELECT pg_terminate_backend($1)', [pid]);
  await until(async () => (await db.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid])).length === 0, 'the backend to exit');
  assert.deepEqual(await viewRow(cookie), { state: 'error', sqlstate: '08006', error_message: NOTHING_COMMITTED_RUNNING, label: 'orphan' });
  assert.equal(await marks('victim'), 0);
  // The table itself still says what the dead process last wrote; the view computed the truth.
  assert.deepEqual(await db.query('SELECT state, proven FROM pg_background_journal WHERE cookie = $1', [cookie]), [{ state: 'running', proven: true }]);
  assert.deepEqual(await db.query('SELECT 1 FROM pg_background_journal_ends WHERE cookie = $1', [cookie]), []);
});

test('a viewer whose snapshot is older than the commit of a dead owner’s worker never reads "nothing committed"', async () => {
  let cookie = '';
  let pid = 0;
  const viewer = await db.client();
  try {
    await gated(async () => {
      ({ cookie, pid } = await launchJournaledAndKill(`INSERT INTO marks VALUES ('late commit'); SELECT pg_advisory_xact_lock(${GATE})`));
      // A snapshot taken now, before the worker commits; pg_stat_activity not read yet.
      await viewer.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
      await viewer.query('SELECT 1 FROM pg_background_journal_ends LIMIT 1');
    });
    // The worker commits, its client is gone: its backend exits.
    await until(async () => (await marks('late commit')) === 1, 'the orphaned worker to commit', 15_000);
    await until(async () => (await db.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid])).length === 0, 'its backend to exit');
    // That snapshot sees no end, and the backend gone: no verdict from it (the row as its owner
    // last wrote it), never "nothing committed".
    const [row] = (await viewer.query('SELECT state, sqlstate FROM pg_background_workers WHERE cookie = $1', [cookie])).rows;
    assert.deepEqual(row, { state: 'running', sqlstate: null });
    await viewer.query('COMMIT');
    // A fresh statement sees the end.
    assert.deepEqual(await viewRow(cookie), { state: 'stopped', sqlstate: null, error_message: null, label: 'orphan' });
  } finally {
    await viewer.query('ROLLBACK').catch(() => {});
    await viewer.end();
    await db.query("DELETE FROM marks WHERE mark = 'late commit'");
  }
});

test('a cancelled worker whose end is not journaled yet is not shown as gone while its owner and backend live', async () => {
  const bg = db.background({ journal: true });
  const h = await bg.launch('SELECT pg_sleep(30)', { label: 'journal/late-end' });
  await viewRows([h], (row) => row.state === 'running' && row.wait_event === 'Timeout:PgSleep', 'the running row');
  const journaled = async () => (await db.query('SELECT state FROM pg_background_journal WHERE cookie = $1', [h.cookie.toString()]))[0]?.state;
  await until(async () => (await journaled()) === 'running', 'the journal row of the running worker');
  // The owner's next batch waits behind this lock (reads of the view do not).
  const blocker = new pg.Client({ connectionString: db.url });
  await blocker.connect();
  try {
    await blocker.query('BEGIN');
    await blocker.query('LOCK TABLE pg_background_journal IN SHARE MODE');
    await bg.cancel(h);
    assert.equal((await bg.info(h)).state, 'canceled');
    const [row] = await db.query('SELECT state, sqlstate, error_message FROM pg_background_workers WHERE cookie = $1', [h.cookie.toString()]);
    assert.deepEqual(row, { state: 'running', sqlstate: null, error_message: null }); // what the owner last said, not a guess
  } finally {
    await blocker.query('COMMIT');
    await blocker.end();
  }
  const [ended] = await viewRows([h], (row) => row.state === 'canceled', 'the canceled row');
  assert.equal(ended!.sqlstate, '57014');
  await bg.close();
});

/**
 * Listening on `channel`, a journaling process launches `gatedSql` (it waits for GATE first) and
 * is killed; the gate opens and the orphaned worker commits: what was heard, and its view row.
 */
async function notifiedOrphan(channel: string, gatedSql: string) {
  const listener = new pg.Client({ connectionString: db.url });
  await listener.connect();
  const heard: string[] = [];
  listener.on('notification', (n) => heard.push(n.payload ?? ''));
  await listener.query(`LISTEN ${channel}`);
  try {
    let cookie = '';
    await gated(async () => {
      ({ cookie } = await launchJournaledAndKill(`SELECT pg_advisory_xact_lock(${GATE}); ${gatedSql}`));
    });
    await until(async () => heard.length === 1, 'the notification', 15_000);
    return { heard, row: await viewRow(cookie) };
  } finally {
    await listener.end();
  }
}

test('kill -9 of the launching process: a worker whose only effect is a NOTIFY is shown stopped once it commits (its xid comes only at commit)', async () => {
  const { heard, row } = await notifiedOrphan('journal_notified', "NOTIFY journal_notified, 'committed'");
  assert.deepEqual(heard, ['committed']);
  assert.deepEqual(row, { state: 'stopped', sqlstate: null, error_message: null, label: 'orphan' });
});

test('kill -9 of the launching process: a worker whose function sends a notification (no NOTIFY in its text) is shown stopped once it commits', async (t) => {
  await db.query("CREATE FUNCTION tell_quietly() RETURNS void LANGUAGE sql AS $$ SELECT pg_notify('journal_told', 'quietly') $$");
  t.after(() => db.query('DROP FUNCTION tell_quietly()'));
  const { heard, row } = await notifiedOrphan('journal_told', 'SELECT tell_quietly()');
  assert.deepEqual(heard, ['quietly']);
  assert.deepEqual(row, { state: 'stopped', sqlstate: null, error_message: null, label: 'orphan' });
});

test('a pending worker is journaled as proven when its SQL will carry the proof (a VACUUM will not), so an orphaned pending row reads "nothing committed"', async (t) => {
  const { bg, release } = await heldSlot(t, 5151);
  const pendingInsert = bg.launch("INSERT INTO marks VALUES ('pending')", { label: 'journal/pending-insert' });
  const pendingVacuum = bg.launch('VACUUM marks', { label: 'journal/pending-vacuum' });
  const rows = () =>
    db.query<{ label: string; state: string; proven: boolean }>(
      "SELECT label, state, proven FROM pg_background_journal WHERE label LIKE 'journal/pending-%' ORDER BY label",
    );
  await until(async () => (await rows()).length === 2, 'both pending rows');
  assert.deepEqual(await rows(), [
    { label: 'journal/pending-insert', state: 'pending', proven: true },
    { label: 'journal/pending-vacuum', state: 'pending', proven: false },
  ]);
  await release();
  await Promise.all([bg.wait(await pendingInsert), bg.wait(await pendingVacuum)]);
  await db.query("DELETE FROM marks WHERE mark = 'pending'");
  await bg.close();
  // Untagged, a backend running a task its dead owner had just sent carries no tag to find it by:
  // its pending row is not proven (the view says "outcome unknown", never "nothing committed").
  const untagged = await heldSlot(t, 5152, false);
  const pendingUntagged = untagged.bg.launch("INSERT INTO marks VALUES ('pending')", { label: 'journal/pending-untagged' });
  await until(async () => (await rows()).some((row) => row.label === 'journal/pending-untagged'), 'the untagged pending row');
  assert.deepEqual(
    (await rows()).find((row) => row.label === 'journal/pending-untagged'),
    { label: 'journal/pending-untagged', state: 'pending', proven: false },
  );
  await untagged.release();
  await untagged.bg.wait(await pendingUntagged);
  // Once it ran, its task carried the proof: its row says so.
  await until(
    async () => (await db.query("SELECT 1 FROM pg_background_journal WHERE label = 'journal/pending-untagged' AND state = 'stopped' AND proven")).length,
    'the untagged row to be written stopped and proven',
  );
  await db.query("DELETE FROM marks WHERE mark = 'pending'");
  await untagged.bg.close();
});

test('when its control session ends, a pending worker’s row names the next one as its owner: the view keeps it pending, not orphaned', async (t) => {
  const { bg, release } = await heldSlot(t, 5454);
  t.after(() => bg.close({ cancel: true }));
  // Pending behind the blocker: its launch resolves only once it starts.
  const pending = bg.launch("INSERT INTO marks VALUES ('rehomed')", { label: 'journal/rehomed' });
  const owner = async () =>
    (
      await db.query<{ state: string; owner_control_pid: number | null }>(
        "SELECT state, owner_control_pid FROM pg_background_journal WHERE label = 'journal/rehomed'",
      )
    )[0];
  const first = await until(async () => (await owner())?.owner_control_pid, 'the pending row');
  assert.deepEqual(await db.query("SELECT 1 AS one FROM pg_stat_activity WHERE pid = $1 AND application_name = 'pgbg:control'", [first]), [{ one: 1 }]);
  await db.query('SELECT pg_terminate_backend($1, 10000)', [first]);
  const second = await until(async () => {
    const row = await owner();
    return row?.owner_control_pid !== first && row?.owner_control_pid;
  }, 'the row to name the new control session');
  assert.deepEqual(await db.query("SELECT 1 AS one FROM pg_stat_activity WHERE pid = $1 AND application_name = 'pgbg:control'", [second]), [{ one: 1 }]);
  assert.deepEqual(await db.query("SELECT state, sqlstate, error_message FROM pg_background_workers WHERE label = 'journal/rehomed'"), [
    { state: 'pending', sqlstate: null, error_message: null },
  ]);
  await release();
  const handle = await pending;
  await bg.wait(handle);
  assert.equal(await marks('rehomed'), 1);
  await viewRows([handle], (row) => row.state === 'stopped', 'the stopped row');
  await db.query("DELETE FROM marks WHERE mark = 'rehomed'");
  await bg.close();
});

test('journal rows keep every text exactly (quotes, backslashes, braces, commas, NULL as a word, non-ASCII), with progress, lock wait and blockedBy', async (t) => {
  const bg = db.background({ journal: true });
  const holder = new pg.Client({ connectionString: db.url });
  await holder.connect();
  t.after(() => holder.end());
  const [{ pid: holderPid }] = (await holder.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows as [{ pid: number }];
  await holder.query('SELECT pg_advisory_lock(5252)');
  const label = 'etl/"q" \\ {x,y} NULL é';
  const phase = 'loading "a", {b} \\ c';
  const waiting = await bg.launch(`SELECT pg_background_progress(40, '${phase}'); SELECT pg_advisory_xact_lock(5252)`, { label });
  const failing = await bg.launch(`DO $$ BEGIN RAISE EXCEPTION 'bad "x" \\ {1,2}'; END $$`, { label: 'NULL' });
  await bg.wait(failing);
  const row = (cookie: bigint) =>
    db.query(
      'SELECT label, state, phase, fraction_completed, wait_event, blocked_by, sqlstate, error_message, sql_preview, command_tag FROM pg_background_journal WHERE cookie = $1',
      [cookie.toString()],
    );
  // The lock wait and its holder are observed after a second of running, and journaled.
  await until(async () => (await row(waiting.cookie))[0]?.blocked_by?.length === 1, 'the waiting worker journaled with its blocker', 10_000);
  assert.deepEqual(await row(waiting.cookie), [
    {
      label,
      state: 'running',
      phase,
      fraction_completed: 0.4,
      wait_event: 'Lock:advisory',
      blocked_by: [holderPid],
      sqlstate: null,
      error_message: null,
      sql_preview: `SELECT pg_background_progress(40, '${phase}'); SELECT pg_advisory_xact_lock(5252)`,
      command_tag: null,
    },
  ]);
  await until(async () => (await row(failing.cookie))[0]?.state === 'error', 'the failed worker journaled');
  assert.deepEqual(await row(failing.cookie), [
    {
      label: 'NULL',
      state: 'error',
      phase: null,
      fraction_completed: null,
      wait_event: null,
      blocked_by: [],
      sqlstate: 'P0001',
      error_message: 'bad "x" \\ {1,2}',
      sql_preview: `DO $$ BEGIN RAISE EXCEPTION 'bad "x" \\ {1,2}'; END $$`,
      command_tag: null,
    },
  ]);
  await holder.query('SELECT pg_advisory_unlock(5252)');
  await bg.wait(waiting);
  await until(async () => (await row(waiting.cookie))[0]?.state === 'stopped', 'the released worker journaled as stopped');
  assert.deepEqual(await row(waiting.cookie), [
    {
      label,
      state: 'stopped',
      phase,
      fraction_completed: 0.4,
      wait_event: null,
      blocked_by: [],
      sqlstate: null,
      error_message: null,
      sql_preview: `SELECT pg_background_progress(40, '${phase}'); SELECT pg_advisory_xact_lock(5252)`,
      command_tag: 'SELECT',
    },
  ]);
  await bg.close();
});

test('the proof of the end: every transactional worker records it, whatever it wrote (a zero-row UPDATE or DELETE, a read-only SELECT)', async () => {
  const bg = db.background({ journal: true });
  const noRow = await bg.launch("UPDATE marks SET mark = 'never' WHERE false");
  const deleted = await bg.launch("DELETE FROM marks WHERE mark = 'no such mark'");
  const readOnly = await bg.launch('SELECT 42');
  const inserted = await bg.launch("  insert INTO marks VALUES ('proof')");
  for (const h of [noRow, deleted, readOnly, inserted]) await bg.wait(h);
  const ends = await db.query<{ cookie: string }>('SELECT cookie FROM pg_background_journal_ends WHERE cookie = ANY ($1::int8[]) ORDER BY cookie', [
    [noRow, deleted, readOnly, inserted].map((h) => h.cookie.toString()),
  ]);
  assert.deepEqual(
    ends.map((e) => e.cookie),
    [noRow, deleted, readOnly, inserted]
      .map((h) => h.cookie)
      .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
      .map(String),
  );
  assert.equal(await marks('proof'), 1);
  const rows = await viewRows([noRow, deleted, readOnly, inserted], (row) => row.finished_at !== null, 'four finished rows');
  assert.deepEqual(
    rows.map((r) => [r.state, r.command_tag, r.row_count]),
    [
      ['stopped', 'UPDATE', '0'],
      ['stopped', 'DELETE', '0'],
      ['stopped', 'SELECT', '1'],
      ['stopped', 'INSERT', '1'],
    ],
  );
  await db.query("DELETE FROM marks WHERE mark = 'proof'");
  await bg.close();
});

test('a worker whose row is already in the table at its first write (a write that failed may have committed) is written all the same, as the upsert, with no warning', async (t) => {
  const warnings: PgBackgroundError[] = [];
  const { bg, release } = await heldSlot(t, 5353);
  bg.on('warning', (warning) => warnings.push(warning));
  const launching = bg.submit("INSERT INTO marks VALUES ('written twice')", { label: 'journal/conflict' });
  const queued = await until(async () => (await bg.list()).find((info) => info.label === 'journal/conflict'), 'the queued worker in list()');
  assert.equal(queued.state, 'pending');
  // Within the writer's hold (500 ms from the launch): a row of the same cookie, as a stale one.
  await db.query("INSERT INTO pg_background_journal (cookie, scope, state, updated_at) VALUES ($1, 'root', 'pending', now() - interval '1 day')", [
    queued.cookie.toString(),
  ]);
  const failuresBefore = journalCounts.failures;
  const row = async () =>
    (await db.query('SELECT label, state, owner_pid, proven FROM pg_background_journal WHERE cookie = $1', [queued.cookie.toString()]))[0];
  await until(async () => (await row())?.label === 'journal/conflict', 'the pending row written over the stale one');
  assert.deepEqual(await row(), { label: 'journal/conflict', state: 'pending', owner_pid: process.pid, proven: true });
  await release();
  await bg.wait(await launching);
  await until(async () => (await row())?.state === 'stopped', 'the stopped row');
  assert.deepEqual(await row(), { label: 'journal/conflict', state: 'stopped', owner_pid: process.pid, proven: true });
  assert.equal(journalCounts.failures, failuresBefore);
  assert.deepEqual(warnings, []);
  assert.equal(await marks('written twice'), 1);
  await db.query("DELETE FROM marks WHERE mark = 'written twice'");
  await bg.close();
});
