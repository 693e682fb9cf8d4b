// The pg_background_workers view (migration 2, redefined by the journal's migration 4): its
// exact columns and types with and without the journal; without it, the running workers read
// from the tags of their connections (application_name pgbg:<cookie hex>:<label>), with their
// live columns from pg_stat_activity, pg_blocking_pids() and pg_stat_progress_*; and install()
// refusing a view or a journal table that is not its own.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NOTHING_COMMITTED_PENDING, NOTHING_COMMITTED_RUNNING, OUTCOME_UNKNOWN_GONE } from '../src/store/migrations.js';
import pg from 'pg';
import { serverUrl, until, useDatabase } from './support/database.js';

const db = useDatabase(import.meta.filename, {
  async setup(db) {
    await db.query('CREATE TABLE view_locked (id int)');
  },
});

/** SPEC Part 2's columns of the view, in order, with their types. */
const COLUMNS = [
  ['cookie', 'bigint'],
  ['pid', 'integer'],
  ['label', 'text'],
  ['scope', 'text'],
  ['parent', 'bigint'],
  ['state', 'text'],
  ['phase', 'text'],
  ['fraction_completed', 'double precision'],
  ['sql_preview', 'text'],
  ['user_name', 'text'],
  ['owner', 'text'],
  ['attempts', 'integer'],
  ['launched_at', 'timestamp with time zone'],
  ['started_at', 'timestamp with time zone'],
  ['updated_at', 'timestamp with time zone'],
  ['finished_at', 'timestamp with time zone'],
  ['elapsed_ms', 'bigint'],
  ['wait_event', 'text'],
  ['blocked_by', 'integer[]'],
  ['sqlstate', 'text'],
  ['error_message', 'text'],
  ['command_tag', 'text'],
  ['row_count', 'bigint'],
];

async function viewColumns(schema: string) {
  const rows = await db.query<{ name: string; type: string }>(
    `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type FROM pg_attribute a
      WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`,
    [`${schema}.pg_background_workers`],
  );
  return rows.map((row) => [row.name, row.type]);
}

/** A plain connection carrying a worker's tag, as a pg-background worker connection does, and its backend pid. */
async function tagged(tag: string) {
  const client = await db.client({ application_name: tag });
  const pid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
  return Object.assign(client, { pid });
}

test('install() creates the view with SPEC columns and types, and no journal table', async () => {
  await db.query('CREATE SCHEMA plain');
  const bg = db.background();
  await bg.install({ schema: 'plain' });
  assert.deepEqual(await viewColumns('plain'), COLUMNS);
  const [found] = await db.query("SELECT to_regclass('plain.pg_background_journal') AS journal, to_regclass('plain.pg_background_workers')::text AS view");
  assert.deepEqual(found, { journal: null, view: 'plain.pg_background_workers' });
  const recorded = await db.query('SELECT id, name FROM plain.pg_background_migrations ORDER BY id');
  assert.deepEqual(recorded, [
    { id: 1, name: 'progress function' },
    { id: 2, name: 'workers view' },
    { id: 3, name: 'control functions' },
  ]);
  await bg.close();
});

test('install({ journal: true }) keeps the same columns and types, and adds the journal (migrations 4 and 5)', async () => {
  await db.query('CREATE SCHEMA journaled');
  const bg = db.background();
  await bg.install({ schema: 'journaled', journal: true });
  assert.deepEqual(await viewColumns('journaled'), COLUMNS);
  assert.deepEqual(
    (await db.query('SELECT id FROM journaled.pg_background_migrations ORDER BY id')).map((r) => r.id),
    [1, 2, 3, 4, 5],
  );
  await bg.close();
});

test('without the journal, a tagged connection running a statement is a running worker: cookie, label, live columns', async () => {
  await db.query('CREATE SCHEMA live');
  const bg = db.background();
  await bg.install({ schema: 'live' });
  const client = await tagged('pgbg:00000000000000ff:etl/load');
  const pid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
  const sleeping = client.query('SELECT pg_sleep(30)').catch((error: Error) => error);
  const row = await until(async () => {
    const [r] = await db.query('SELECT * FROM live.pg_background_workers WHERE cookie = 255');
    return r?.wait_event === 'Timeout:PgSleep' ? r : null;
  }, 'the tagged backend to sleep');
  const { launched_at, started_at, updated_at, elapsed_ms, user_name, ...rest } = row;
  assert.deepEqual(rest, {
    cookie: '255',
    pid,
    label: 'etl/load',
    scope: 'root',
    parent: null,
    state: 'running',
    phase: null,
    fraction_completed: null,
    sql_preview: 'SELECT pg_sleep(30)',
    owner: null,
    attempts: 1,
    finished_at: null,
    wait_event: 'Timeout:PgSleep',
    blocked_by: [],
    sqlstate: null,
    error_message: null,
    command_tag: null,
    row_count: null,
  });
  assert.equal(user_name, new URL(db.url).username);
  assert.ok(launched_at instanceof Date && started_at instanceof Date && updated_at instanceof Date);
  assert.equal(typeof elapsed_ms, 'string'); // int8
  // The cookie's 64 bits as two's complement; an empty label is null; untagged backends are not workers.
  const negative = await tagged('pgbg:ffffffffffffffff:');
  const alsoSleeping = negative.query('SELECT pg_sleep(30)').catch((error: Error) => error);
  await until(
    async () => (await db.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event = 'PgSleep'", [negative.pid])).length,
    'the second to sleep',
  );
  const idle = await tagged('pgbg:idle');
  const idleWorker = await tagged('pgbg:0000000000000abc:done'); // a tag on an idle connection: its task is over
  const rows = await db.query(`SELECT cookie, pid, label FROM live.pg_background_workers WHERE pid = ANY ($1::int[]) ORDER BY cookie`, [
    [pid, negative.pid, idle.pid, idleWorker.pid],
  ]);
  assert.deepEqual(rows, [
    { cookie: '-1', pid: negative.pid, label: null },
    { cookie: '255', pid, label: 'etl/load' },
  ]);
  await db.query('SELECT pg_cancel_backend(pid) FROM unnest($1::int[]) AS pid', [[pid, negative.pid]]);
  assert.equal(((await sleeping) as Error & { code: string }).code, '57014');
  assert.equal(((await alsoSleeping) as Error & { code: string }).code, '57014');
  await bg.close();
});

test('the view shows the workers of its own database only, the ones its functions act on', async (t) => {
  const bg = db.background();
  await bg.install();
  const cancelBoth = () =>
    db.query("SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name IN ('pgbg:0000000000000777:elsewhere', 'pgbg:0000000000000778:here')");
  t.after(cancelBoth); // also when an assertion fails: no sleeper outlives the test
  // A tagged backend of another database (the server's own, as a worker of an instance there would be).
  const elsewhere = new pg.Client({ connectionString: serverUrl(), application_name: 'pgbg:0000000000000777:elsewhere' });
  await elsewhere.connect();
  t.after(() => elsewhere.end());
  const here = await tagged('pgbg:0000000000000778:here');
  const away = elsewhere.query('SELECT pg_sleep(30)').catch((error: Error) => error);
  const near = here.query('SELECT pg_sleep(30)').catch((error: Error) => error);
  await until(
    async () =>
      (
        await db.query(
          "SELECT 1 FROM pg_stat_activity WHERE application_name IN ('pgbg:0000000000000777:elsewhere', 'pgbg:0000000000000778:here') AND wait_event = 'PgSleep'",
        )
      ).length === 2,
    'both tagged backends to sleep',
  );
  assert.deepEqual(await db.query('SELECT cookie, label FROM pg_background_workers WHERE cookie IN (1911, 1912)'), [{ cookie: '1912', label: 'here' }]);
  // Its function finds nothing to do with the other database's worker.
  assert.deepEqual(await db.query('SELECT pg_background_cancel_worker(1911) AS done'), [{ done: false }]);
  await cancelBoth();
  assert.equal(((await away) as Error & { code: string }).code, '57014');
  assert.equal(((await near) as Error & { code: string }).code, '57014');
  await bg.close();
});

test('a tagged worker waiting on a lock shows the wait event and blockedBy the holder', async () => {
  await db.query('CREATE SCHEMA locks');
  const bg = db.background();
  await bg.install({ schema: 'locks' });
  const holder = await db.client();
  await holder.query('BEGIN');
  await holder.query('LOCK TABLE view_locked IN ACCESS EXCLUSIVE MODE');
  const holderPid = (await holder.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
  const waiter = await tagged('pgbg:0000000000000007:waiter');
  const waiting = waiter.query('SELECT count(*) FROM view_locked');
  const row = await until(async () => {
    const [r] = await db.query('SELECT wait_event, blocked_by, state FROM locks.pg_background_workers WHERE cookie = 7');
    return r?.wait_event === 'Lock:relation' ? r : null;
  }, 'the tagged backend to wait for the lock');
  assert.deepEqual(row, { wait_event: 'Lock:relation', blocked_by: [holderPid], state: 'running' });
  await holder.query('ROLLBACK');
  assert.deepEqual((await waiting).rows, [{ count: '0' }]);
  await bg.close();
});

test('a COPY on a tagged connection shows its phase from pg_stat_progress_copy (no total: no fraction)', async () => {
  await db.query('CREATE SCHEMA progress');
  const bg = db.background();
  await bg.install({ schema: 'progress' });
  const copier = await tagged('pgbg:0000000000000009:copy');
  const copying = copier.query("COPY (SELECT pg_sleep(0.01) FROM generate_series(1, 3000)) TO '/dev/null'").catch((error: Error) => error);
  const row = await until(async () => {
    const [r] = await db.query('SELECT phase, fraction_completed FROM progress.pg_background_workers WHERE cookie = 9');
    return r?.phase ? r : null;
  }, 'the COPY to show in the progress view');
  assert.deepEqual(row, { phase: 'COPY TO', fraction_completed: null });
  await db.query('SELECT pg_cancel_backend($1)', [copier.pid]);
  assert.equal(((await copying) as Error & { code: string }).code, '57014');
  await bg.close();
});

test('install() refuses a pg_background_workers view or a journal table it did not create', async () => {
  await db.query('CREATE SCHEMA foreign_view');
  await db.query('CREATE VIEW foreign_view.pg_background_workers AS SELECT 1 AS one');
  const bg = db.background();
  await assert.rejects(bg.install({ schema: 'foreign_view' }), {
    code: 'PGBG_INSTALL_CONFLICT',
    message:
      'install(): view foreign_view.pg_background_workers already exists and was not created by pg-background; pg-background will not replace it. Install into another schema ({ schema }) or drop that view first.',
  });
  assert.deepEqual(await db.query("SELECT to_regclass('foreign_view.pg_background_migrations') AS t"), [{ t: null }]);
  await db.query('CREATE SCHEMA foreign_journal');
  await db.query('CREATE TABLE foreign_journal.pg_background_journal (cookie int8)');
  // Refused up front, even by a plain install(): the schema could never get the journal.
  await assert.rejects(bg.install({ schema: 'foreign_journal' }), {
    code: 'PGBG_INSTALL_CONFLICT',
    message:
      'install(): table foreign_journal.pg_background_journal already exists and was not created by pg-background; pg-background will not replace it. Install into another schema ({ schema }) or drop that table first.',
  });
  await bg.close();
});

test('a plain install() after the journal keeps it; a view dropped by hand comes back with the journal rows', async () => {
  await db.query('CREATE SCHEMA repaired');
  const bg = db.background();
  await bg.install({ schema: 'repaired', journal: true });
  await db.query(`INSERT INTO repaired.pg_background_journal (cookie, pid, scope, state, updated_at, finished_at, launched_at, proven)
                  VALUES (42, 1, 'root', 'stopped', now(), now(), now(), true)`);
  await db.query('DROP VIEW repaired.pg_background_workers');
  await bg.install({ schema: 'repaired' });
  // (The view answers for the whole server: other files' running workers are in it too.)
  assert.deepEqual(await db.query('SELECT cookie, state FROM repaired.pg_background_workers WHERE cookie = 42'), [{ cookie: '42', state: 'stopped' }]);
  assert.deepEqual(
    (await db.query('SELECT id FROM repaired.pg_background_migrations ORDER BY id')).map((r) => r.id),
    [1, 2, 3, 4, 5],
  );
  await bg.close();
});

test('the view computes the truth of journal rows whose backend or owner is gone: nothing committed when proven, else outcome unknown', async () => {
  await db.query('CREATE SCHEMA truth');
  const bg = db.background();
  await bg.install({ schema: 'truth', journal: true });
  const [me] = await db.query<{ pid: number; started: string }>(
    'SELECT pid, (extract(epoch FROM backend_start) * 1000000)::int8::text AS started FROM pg_stat_activity WHERE pid = pg_backend_pid()',
  );
  const dead = 2147483000; // no backend has this pid
  const row = (cookie: number, state: string, pid: number, started: string | null, proven: boolean, control: [number, string] | null) =>
    db.query(
      `INSERT INTO truth.pg_background_journal (cookie, pid, backend_started, scope, state, launched_at, updated_at, proven, owner_control_pid, owner_control_started)
       VALUES ($1, $2, $3, 'root', $4, '2026-01-01T00:00:00Z', '2026-01-01T00:00:05Z', $5, $6, $7)`,
      [cookie, pid, started, state, proven, control?.[0] ?? null, control?.[1] ?? null],
    );
  await row(1, 'running', dead, '1', true, null);
  await row(2, 'running', dead, '1', false, null);
  await row(3, 'running', me!.pid, '1', true, null); // that pid, but another backend (pid reused)
  await row(4, 'running', me!.pid, me!.started, true, null); // its backend is there: running
  await row(5, 'pending', 0, null, true, [dead, '1']); // owner gone, no backend carries its tag
  await row(6, 'pending', 0, null, true, [me!.pid, me!.started]); // owner alive
  await row(7, 'cancelling', dead, '1', false, null);
  await row(8, 'running', dead, '1', true, null); // its own transaction recorded that it committed
  await db.query("INSERT INTO truth.pg_background_journal_ends VALUES (8, '2026-01-01T00:00:07Z')");
  const rows = await db.query(
    'SELECT cookie, state, sqlstate, error_message, finished_at, elapsed_ms FROM truth.pg_background_workers WHERE cookie BETWEEN 1 AND 99 ORDER BY cookie',
  );
  const gone = (cookie: string, message: string) => ({
    cookie,
    state: 'error',
    sqlstate: '08006',
    error_message: message,
    finished_at: null,
    elapsed_ms: '5000',
  });
  assert.deepEqual(
    rows.map((r) => (r.state === 'error' ? r : { cookie: r.cookie, state: r.state, sqlstate: r.sqlstate, error_message: r.error_message })),
    [
      gone('1', NOTHING_COMMITTED_RUNNING),
      gone('2', OUTCOME_UNKNOWN_GONE),
      gone('3', NOTHING_COMMITTED_RUNNING),
      { cookie: '4', state: 'running', sqlstate: null, error_message: null },
      gone('5', NOTHING_COMMITTED_PENDING),
      { cookie: '6', state: 'pending', sqlstate: null, error_message: null },
      gone('7', OUTCOME_UNKNOWN_GONE),
      { cookie: '8', state: 'stopped', sqlstate: null, error_message: null },
    ],
  );
  const [committed] = await db.query('SELECT finished_at, updated_at, elapsed_ms FROM truth.pg_background_workers WHERE cookie = 8');
  assert.deepEqual(committed, { finished_at: new Date('2026-01-01T00:00:07Z'), updated_at: new Date('2026-01-01T00:00:07Z'), elapsed_ms: '7000' });
  assert.match(NOTHING_COMMITTED_RUNNING, /nothing committed$/);
  assert.match(OUTCOME_UNKNOWN_GONE, /^outcome unknown: /);
  await bg.close();
});
