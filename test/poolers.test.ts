// Behind a real PgBouncer, in session and in transaction mode: nothing of ours may ever touch
// another client's session, a task's role and settings apply to that task or the launch fails,
// and in session mode everything works as on a direct connection.
// The poolers are started for this file (test/support/pgbouncer.ts); where the Debian package
// is missing the file fails, saying so.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { PgBackground, PgBackgroundError, workerTag, type PgBackgroundOptions } from 'pg-background';
import { pgBouncerBinary, startPgBouncer, type PgBouncer } from './support/pgbouncer.js';
import { until, useDatabase } from './support/database.js';

const binary = pgBouncerBinary();

const poolers: { session?: PgBouncer; transaction?: PgBouncer; statement?: PgBouncer } = {};
const instances: PgBackground[] = [];
const clients: pg.Client[] = [];

// Roles are the cluster's, not the database's: one of its own for this file's run.
let ROLE = '';
const db = useDatabase(import.meta.filename, {
  async setup(db) {
    ROLE = `${db.name}_role`;
    [poolers.session, poolers.transaction, poolers.statement] = await Promise.all([
      startPgBouncer(binary, db.url, { mode: 'session' }),
      startPgBouncer(binary, db.url, { mode: 'transaction', poolSize: 4 }),
      startPgBouncer(binary, db.url, { mode: 'statement' }),
    ]);
    await db.query(`CREATE ROLE ${ROLE} NOLOGIN`);
    await db.query(`GRANT ${ROLE} TO current_user`);
  },
  async teardown(db) {
    await Promise.all(instances.map((bg) => bg.close({ cancel: true })));
    await Promise.all(clients.map((c) => c.end().catch(() => {})));
    await Promise.all(Object.values(poolers).map((p) => p.stop()));
    await db.query(`DROP ROLE IF EXISTS ${ROLE}`);
  },
});

function behind(mode: keyof typeof poolers, options: PgBackgroundOptions = {}): PgBackground {
  const bg = new PgBackground({ connectionString: poolers[mode]!.url(db.url), ...options });
  instances.push(bg);
  return bg;
}

/** Another application's client on the same pooler. */
async function otherClient(mode: keyof typeof poolers): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: poolers[mode]!.url(db.url), application_name: 'pgbg-test-other' });
  client.on('error', () => {});
  await client.connect();
  clients.push(client);
  return client;
}

const pidOf = async (client: pg.Client): Promise<number> => (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;

/**
 * A warm worker connection whose identity (read at connect) names backend B1, and another
 * client holding B1 in a transaction: the next task of `bg` has to run on another backend.
 */
async function warmWithBackendTaken(bg: PgBackground): Promise<{ other: pg.Client; otherPid: number }> {
  const warm = await bg.launch('SELECT 1');
  await bg.wait(warm);
  const other = await otherClient('transaction');
  await other.query('BEGIN');
  const otherPid = await pidOf(other);
  assert.equal(otherPid, warm.pid, 'the other client got the backend the warm connection was opened on');
  return { other, otherPid };
}

describe('behind PgBouncer in transaction mode', () => {
  test('cancel() with graceMs 0 terminates our task, never the backend another client holds', async () => {
    await db.query('CREATE TABLE tx_terminate (n int)');
    const bg = behind('transaction', { maxWorkers: 1 });
    const { other, otherPid } = await warmWithBackendTaken(bg);
    const h = await bg.launch('INSERT INTO tx_terminate VALUES (1); SELECT pg_sleep(5)');
    await until(
      async () => (await db.query("SELECT 1 FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND datname = current_database()")).length,
      'the task to sleep',
    );
    await bg.cancel(h, { graceMs: 0 });
    const info = await bg.info(h);
    // Terminated: its own backend (its handle names the backend its transaction ran on).
    assert.deepEqual([info.state, info.canceledBy, (await bg.errorInfo(h))?.sqlstate], ['canceled', 'cancel', '57P01']);
    assert.notEqual(h.pid, otherPid);
    // The other client's session is intact: same backend, its transaction still open.
    assert.equal(await pidOf(other), otherPid);
    await other.query('COMMIT');
    assert.deepEqual(await db.query('SELECT count(*)::int AS n FROM tx_terminate'), [{ n: 0 }]);
  });

  test('the liveness check never drops a healthy task because of a backend it no longer runs on', async () => {
    await db.query('CREATE TABLE tx_liveness (n int)');
    const bg = behind('transaction', { maxWorkers: 1, livenessTimeoutMs: 300 });
    const { other, otherPid } = await warmWithBackendTaken(bg);
    const h = await bg.launch('INSERT INTO tx_liveness VALUES (1); SELECT pg_sleep(1.5)');
    // The backend the connection was opened on goes away (here: its own client's session ends).
    await other.query('ROLLBACK');
    await db.query('SELECT pg_terminate_backend($1)', [otherPid]);
    await bg.wait(h);
    const info = await bg.info(h);
    assert.deepEqual([info.state, info.lastError], ['stopped', null]);
    assert.deepEqual(await db.query('SELECT count(*)::int AS n FROM tx_liveness'), [{ n: 1 }]);
  });

  test("a task's role and settings apply to that task, every time, and never leak to other clients", async () => {
    const bg = behind('transaction', { maxWorkers: 6, whenFull: 'queue' });
    // Other clients keep the pool's backends busy, so that backends change hands all the time.
    const others = await Promise.all([otherClient('transaction'), otherClient('transaction')]);
    let running = true;
    const churn = others.map(async (client) => {
      while (running) await client.query('SELECT 1');
    });
    const handles = await Promise.all(
      Array.from({ length: 30 }, () =>
        bg.launch(`SELECT current_user AS "user", current_setting('work_mem') AS work_mem, current_setting('application_name') AS app`, {
          role: ROLE,
          settings: { work_mem: '7777kB' },
        }),
      ),
    );
    const rows = await Promise.all(handles.map(async (h) => (await bg.result(h).toArray())[0]));
    running = false;
    await Promise.all(churn);
    assert.deepEqual(
      rows.filter((row) => row?.user !== ROLE || row?.work_mem !== '7777kB'),
      [],
    );
    // Each task saw its own tag (SET LOCAL inside its transaction).
    assert.deepEqual(
      rows.map((row) => row?.app),
      handles.map((h) => workerTag(h.cookie, null)),
    );
    await bg.close();
    // Every backend of the pool, held at once by other clients: none has our role or setting.
    const holders = await Promise.all(Array.from({ length: 4 }, () => otherClient('transaction')));
    const seen = await Promise.all(
      holders.map(async (client) => {
        await client.query('BEGIN');
        return (await client.query(`SELECT current_user AS "user", current_setting('work_mem') AS work_mem, current_setting('application_name') AS app`))
          .rows[0];
      }),
    );
    for (const client of holders) await client.query('COMMIT');
    assert.equal(seen.filter((row) => row.user === ROLE || row.work_mem === '7777kB' || row.app.startsWith('pgbg:')).length, 0);
  });

  test('cancel() by protocol stops the task and its backend is never handed on; failures roll back, a failed COMMIT is an error', async () => {
    await db.query('CREATE TABLE tx_cancel (n int)');
    const bg = behind('transaction', { maxWorkers: 2 });
    const h = await bg.launch('INSERT INTO tx_cancel VALUES (1); SELECT pg_sleep(30)');
    const [running] = await db.query<{ pid: number; xact: boolean }>('SELECT pid, xact_start IS NOT NULL AS xact FROM pg_stat_activity WHERE pid = $1', [
      h.pid,
    ]);
    assert.deepEqual(running, { pid: h.pid, xact: true }); // the handle names the backend running it
    await bg.cancel(h);
    assert.deepEqual([(await bg.info(h)).state, (await bg.errorInfo(h))?.sqlstate], ['canceled', '57014']);
    // Its backend is not handed to anyone after a cancel: the pooler closes it.
    await until(async () => (await db.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [h.pid])).length === 0, 'the backend to go');
    assert.deepEqual(await db.query('SELECT count(*)::int AS n FROM tx_cancel'), [{ n: 0 }]);
    // A single DO block runs in our BEGIN here, where it cannot commit: its cancel is canceled.
    const block = await bg.launch('DO $$ BEGIN INSERT INTO tx_cancel VALUES (9); PERFORM pg_sleep(30); END $$');
    await until(
      async () => (await db.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event = 'PgSleep'", [block.pid])).length,
      'the block to sleep',
    );
    await bg.cancel(block);
    assert.deepEqual([(await bg.info(block)).state, (await bg.errorInfo(block))?.sqlstate], ['canceled', '57014']);
    assert.deepEqual(await db.query('SELECT count(*)::int AS n FROM tx_cancel'), [{ n: 0 }]);

    // A failure rolls back; a COMMIT that fails (a deferred constraint) is the worker's error.
    await db.query('CREATE TABLE tx_deferred (n int UNIQUE DEFERRABLE INITIALLY DEFERRED)');
    const failing = await bg.launch('INSERT INTO tx_cancel VALUES (2); SELECT 1/0');
    const deferred = await bg.launch('INSERT INTO tx_deferred VALUES (1), (1)');
    await Promise.all([bg.wait(failing), bg.wait(deferred)]);
    assert.deepEqual([(await bg.info(failing)).state, (await bg.errorInfo(failing))?.sqlstate], ['error', '22012']);
    assert.deepEqual([(await bg.info(deferred)).state, (await bg.errorInfo(deferred))?.sqlstate], ['error', '23505']);
    assert.deepEqual(await db.query('SELECT (SELECT count(*)::int FROM tx_cancel) AS a, (SELECT count(*)::int FROM tx_deferred) AS b'), [{ a: 0, b: 0 }]);
    const ok = await bg.launch('INSERT INTO tx_cancel VALUES (3) RETURNING n');
    assert.deepEqual(await bg.result(ok).toArray(), [{ n: 3 }]);
    assert.deepEqual(await db.query('SELECT n FROM tx_cancel'), [{ n: 3 }]);
  });

  test('a multi-statement task is one transaction behind the pooler too: a failure, or a DO block that commits, commits nothing', async () => {
    await db.query('CREATE TABLE tx_multi (n int)');
    const bg = behind('transaction');
    const failed = await bg.launch('INSERT INTO tx_multi VALUES (1); SELECT 1/0');
    await bg.wait(failed);
    assert.equal((await bg.errorInfo(failed))?.sqlstate, '22012');
    const committing = await bg.launch('INSERT INTO tx_multi VALUES (2); DO $$BEGIN INSERT INTO tx_multi VALUES (3); COMMIT; END$$; SELECT 1');
    await bg.wait(committing);
    assert.equal((await bg.errorInfo(committing))?.sqlstate, '2D000');
    const ok = await bg.launch('INSERT INTO tx_multi VALUES (4); SELECT count(*)::int AS n FROM tx_multi');
    assert.deepEqual(await bg.result(ok).toArray(), [{ n: 1 }]);
    assert.deepEqual(await db.query('SELECT n FROM tx_multi'), [{ n: 4 }]);
    await bg.close();
  });

  test('default_transaction_* settings apply to the task; a statement that needs no transaction block is refused, saying why', async () => {
    const bg = behind('transaction');
    const h = await bg.launch(`SELECT current_setting('transaction_isolation') AS iso, current_setting('transaction_read_only') AS ro`, {
      settings: { default_transaction_isolation: 'serializable', default_transaction_read_only: true },
    });
    assert.deepEqual(await bg.result(h).toArray(), [{ iso: 'serializable', ro: 'on' }]);
    await db.query('CREATE TABLE tx_vacuum (n int)');
    const v = await bg.launch('VACUUM tx_vacuum');
    await bg.wait(v);
    const error = await bg.errorInfo(v);
    assert.deepEqual([(await bg.info(v)).state, error?.sqlstate], ['error', '25001']);
    assert.match(error!.hint!, /direct endpoint/);
  });

  test("onCallerExit 'rollback' warns and falls back (PgBouncer refuses the startup option)", async () => {
    const warnings: Error[] = [];
    const onWarning = (warning: Error) => warnings.push(warning);
    process.on('warning', onWarning);
    try {
      const bg = behind('transaction', { onCallerExit: 'rollback' });
      const h = await bg.launch('SELECT 42 AS n');
      assert.deepEqual(await bg.result(h).toArray(), [{ n: 42 }]);
      await until(() => warnings.length, 'the warning');
      assert.equal((warnings[0] as Error & { code?: string }).code, 'PGBG_CALLER_CHECK_UNSUPPORTED');
      await bg.close();
    } finally {
      process.off('warning', onWarning);
    }
  });

  test('cursor mode is refused with PGBG_POOLER_UNSUPPORTED; the worker ends in error 0A000', async () => {
    const bg = behind('transaction');
    await assert.rejects(bg.launch('SELECT 1 AS n', { cursor: { batchRows: 10 } }), (error: unknown) => {
      assert.ok(error instanceof PgBackgroundError);
      assert.equal(error.code, 'PGBG_POOLER_UNSUPPORTED');
      assert.match(error.message, /^cursor mode is not supported behind a connection pooler/);
      return true;
    });
    const [worker] = await bg.list();
    assert.equal(worker!.state, 'error');
    assert.equal(worker!.lastError, 'cursor mode is not supported behind a connection pooler');
    // The default path still works on the same instance.
    assert.deepEqual(await bg.result(await bg.launch('SELECT 1 AS n')).toArray(), [{ n: 1 }]);
    await bg.close();
  });
});

describe('behind PgBouncer in session mode', () => {
  test('pids are real, role and settings apply, cancel and terminate stop only our task, progress and close work', async () => {
    await db.query('CREATE TABLE session_mode (n int)');
    const bg = behind('session', { maxWorkers: 2 });
    await bg.install();
    const h = await bg.launch(`SELECT pg_backend_pid() AS pid, current_user AS "user", current_setting('work_mem') AS work_mem`, {
      role: ROLE,
      settings: { work_mem: '7777kB' },
    });
    const [row] = await bg.result(h).toArray();
    assert.deepEqual(row, { pid: h.pid, user: ROLE, work_mem: '7777kB' });

    const p = await bg.launch("SELECT pg_background_progress(50, 'half'); SELECT pg_sleep(30)");
    await until(async () => (await bg.getProgress(p))?.pct === 50, 'progress');
    // The progress comes from the first statement; the sleep starts right after it.
    await until(
      async () => (await db.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event = 'PgSleep'", [p.pid])).length,
      'the worker to sleep',
    );
    await bg.cancel(p);
    assert.equal((await bg.info(p)).state, 'canceled');

    const other = await otherClient('session');
    const otherPid = await pidOf(other);
    const t = await bg.launch('INSERT INTO session_mode VALUES (1); SELECT pg_sleep(30)');
    await until(async () => (await db.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event = 'PgSleep'", [t.pid])).length, 'the task to sleep');
    await bg.cancel(t, { graceMs: 0 });
    assert.notEqual((await bg.info(t)).state, 'stopped');
    assert.equal(await pidOf(other), otherPid);
    assert.deepEqual(await db.query('SELECT count(*)::int AS n FROM session_mode'), [{ n: 0 }]);
    await bg.close();
  });
});

describe('behind PgBouncer in statement mode', () => {
  test('a launch is refused with PGBG_POOLER_UNSUPPORTED, naming session mode and the direct endpoint', async () => {
    const bg = behind('statement');
    await assert.rejects(bg.launch('SELECT 1'), (error: unknown) => {
      assert.ok(error instanceof PgBackgroundError);
      assert.equal(error.code, 'PGBG_POOLER_UNSUPPORTED');
      assert.match(error.message, /session mode/);
      assert.match(error.message, /direct/);
      return true;
    });
    await bg.close();
  });
});
