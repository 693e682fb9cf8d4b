// A multi-statement worker commits all or nothing, whatever our lexer believes: each statement
// goes in a Parse of its own (the server refuses a Parse that holds two), inside our own
// BEGIN ... COMMIT. These tests run the cases outside testing found, then forge plans with
// boundaries our lexer would never produce, to show that a mis-split can only fail.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import type { PgBackgroundError } from 'pg-background';
import { WorkerConnection } from '../src/pool/worker-connection.js';
import { RowQueue } from '../src/results/row-queue.js';
import { TaskQuery, type TaskOutcome } from '../src/results/task-query.js';
import { errorInfo } from '../src/results/error-info.js';
import { planTask, type TaskPlan } from '../src/plan/task-plan.js';
import { until, useDatabase } from './support/database.js';

const db = useDatabase(import.meta.filename, {
  async setup(db) {
    await db.query('CREATE TABLE t (x int); CREATE TABLE periods (start int, "end" int)');
    await db.query('CREATE PROCEDURE commits() LANGUAGE plpgsql AS $$BEGIN INSERT INTO t VALUES (100); COMMIT; END$$');
  },
});

async function rowsOfT(): Promise<number[]> {
  return (await db.query<{ x: number }>('SELECT x FROM t ORDER BY x')).map((row) => row.x);
}

const routine = (body: string) => `CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql BEGIN ATOMIC ${body}; END`;

test('BEGIN ATOMIC bodies with case/end as a label or a qualified name: the COMMIT behind them is refused, nothing runs', async () => {
  await db.query('TRUNCATE t');
  const bg = db.background();
  for (const tail of ['SELECT pg_sleep(30)', 'SELECT 1/0']) {
    const h = await bg.launch(`INSERT INTO t VALUES (1); ${routine('SELECT 1 AS case')}; COMMIT; ${tail}`);
    await bg.wait(h);
    const info = await bg.errorInfo(h);
    assert.equal(info?.sqlstate, '0A000');
    assert.match(info!.message, /found COMMIT/);
  }
  assert.deepEqual(await rowsOfT(), []);
  await bg.close();
});

test('valid routine bodies that use end and case as names run and return their rows', async () => {
  const bg = db.background();
  const sql = `${routine('SELECT p.end - p.start FROM periods p LIMIT 1')}; ${routine('SELECT 1 AS case').replace('f()', 'g()')}; SELECT pg_temp.g() AS g`;
  const h = await bg.launch(sql);
  assert.deepEqual(await bg.result(h).toArray(), [{ g: 1 }]);
  await bg.close();
});

test('the statements of a multi-statement worker reach the server one Parse each, and a syntax error points into the caller\u2019s text', async () => {
  const bg = db.background();
  const sql = 'SELECT 1; SELECT 2; SELEC 3';
  const h = await bg.launch(sql);
  await bg.wait(h);
  const info = await bg.errorInfo(h);
  assert.equal(info?.sqlstate, '42601');
  assert.equal(info?.position, sql.indexOf('SELEC 3') + 1);
  const emoji = "SELECT '\u{1F422}'; SELEC 3";
  const h2 = await bg.launch(emoji);
  await bg.wait(h2);
  assert.equal((await bg.errorInfo(h2))?.position, [...emoji].indexOf('S', 2) + 1); // characters, not UTF-16 units
  await bg.close();
});

test('a procedure or DO block that commits cannot commit part of a multi-statement worker (2D000)', async () => {
  await db.query('TRUNCATE t');
  const bg = db.background();
  for (const middle of ['CALL commits()', 'DO $$BEGIN INSERT INTO t VALUES (33); COMMIT; END$$']) {
    const h = await bg.launch(`INSERT INTO t VALUES (1); ${middle}; SELECT 1`);
    await bg.wait(h);
    assert.equal((await bg.errorInfo(h))?.sqlstate, '2D000', middle);
  }
  assert.deepEqual(await rowsOfT(), []);
  // Alone, it is a series of transactions, as documented.
  const alone = await bg.launch('CALL commits()');
  await bg.wait(alone);
  assert.equal((await bg.info(alone)).state, 'stopped');
  assert.deepEqual(await rowsOfT(), [100]);
  await bg.close();
});

test('a failed multi-statement worker leaves no open transaction: its locks are gone and the connection serves the next task', async () => {
  const bg = db.background({ maxWorkers: 1 });
  const failed = await bg.launch('LOCK TABLE t IN ACCESS EXCLUSIVE MODE; SELECT 1/0');
  await bg.wait(failed);
  assert.equal((await bg.errorInfo(failed))?.sqlstate, '22012');
  const probe = await bg.launch("SELECT pg_backend_pid() AS pid, (SELECT count(*)::int FROM pg_locks WHERE relation = 't'::regclass) AS locks");
  assert.deepEqual(await bg.result(probe).toArray(), [{ pid: failed.pid, locks: 0 }]);
  await bg.close();
});

test('a multi-statement worker that commits raises no warning of ours (the ROLLBACK behind it is silent)', async () => {
  const bg = db.background({ maxWorkers: 1 });
  const notices: string[] = [];
  bg.on('notice', (event) => notices.push(event.message));
  for (let i = 0; i < 3; i++) await bg.wait(await bg.launch('SELECT 1; SELECT 2'));
  const h = await bg.launch('SELECT 1');
  await bg.wait(h);
  assert.deepEqual(notices, []);
  await bg.close();
});

test('cancelling a multi-statement worker whose routine body fooled the old lexer commits nothing', async () => {
  await db.query('TRUNCATE t');
  const bg = db.background();
  const h = await bg.launch(`INSERT INTO t VALUES (1); ${routine('SELECT p.end FROM periods p')}; SELECT pg_sleep(30)`);
  await until(async () => (await db.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event = 'PgSleep'", [h.pid])).length, 'the worker to sleep');
  await bg.cancel(h);
  assert.equal((await bg.info(h)).state, 'canceled');
  assert.deepEqual(await rowsOfT(), []);
  await bg.close();
});

test('client_encoding, DateStyle and IntervalStyle that node-postgres would misread are refused, naming the setting', async () => {
  const bg = db.background();
  const cases: [Record<string, string>, RegExp][] = [
    [{ client_encoding: 'SJIS' }, /settings\.client_encoding` cannot be "SJIS": node-postgres always sends and reads UTF-8/],
    [{ client_encoding: 'LATIN1' }, /settings\.client_encoding` cannot be "LATIN1"/],
    [{ DateStyle: 'SQL, DMY' }, /settings\.DateStyle` cannot be "SQL, DMY": node-postgres parses dates in the ISO style only/],
    [{ datestyle: 'German' }, /settings\.datestyle` cannot be "German"/],
    [{ IntervalStyle: 'iso_8601' }, /settings\.IntervalStyle` cannot be "iso_8601"/],
  ];
  for (const [settings, message] of cases) {
    await assert.rejects(
      bg.launch('SELECT 1', { settings }),
      (error: PgBackgroundError) => error.code === 'PGBG_INVALID_ARGUMENT' && message.test(error.message),
    );
    assert.throws(
      () => db.background({ settings }),
      (error: PgBackgroundError) => error.code === 'PGBG_INVALID_ARGUMENT' && message.test(error.message),
    );
  }
  // What pg reads correctly stays allowed.
  const h = await bg.launch("SELECT '2026-12-01 13:00'::timestamp AS ts, '1 day'::interval AS iv", {
    settings: { client_encoding: 'UTF8', DateStyle: 'ISO, DMY', IntervalStyle: 'postgres' },
  });
  const [row] = (await bg.result(h).toArray()) as { ts: Date; iv: { days: number } }[];
  assert.equal(row!.ts.getFullYear(), 2026);
  assert.equal(row!.iv.days, 1);
  await bg.close();
});

test('a worker session that starts in a DateStyle pg cannot read fails to connect with a clear error, not null timestamps', async () => {
  const role = `pgbg_sql_datestyle_${process.pid}`;
  await db.query(`CREATE ROLE ${role} LOGIN PASSWORD 'pw'; GRANT ALL ON SCHEMA public TO ${role}; ALTER ROLE ${role} SET DateStyle = 'SQL, DMY'`);
  try {
    const url = new URL(db.url);
    url.username = role;
    url.password = 'pw';
    const bg = db.background({ connectionString: url.toString() });
    await assert.rejects(
      bg.launch('SELECT now()'),
      (error: PgBackgroundError) => error.code === 'PGBG_CONNECTION_FAILED' && /DateStyle = 'SQL, DMY'/.test(error.message) && !error.message.includes('pw'),
    );
    await bg.close();
  } finally {
    await db.query(`REVOKE ALL ON SCHEMA public FROM ${role}; DROP ROLE ${role}`);
  }
});

// ---- the server is the judge: forged plans whose boundaries are wrong ----

async function runPlan(plan: TaskPlan): Promise<TaskOutcome> {
  const connection = await WorkerConnection.open({ connectionString: db.url, application_name: 'pg-background test' }, 10_000);
  try {
    const query = new TaskQuery(plan, { queue: new RowQueue(65536), columns() {} }, connection);
    connection.run(query);
    return await query.done;
  } finally {
    await connection.close();
  }
}

const forged = (pieces: string[], refusal: string | null = null): TaskPlan => ({
  text: pieces.join(';'),
  values: null,
  pieces,
  statementCount: pieces.length,
  refusal,
  inBlock: false,
});

test('a piece that holds two statements (a mis-split) fails on the server and rolls back what ran before it', async () => {
  await db.query('TRUNCATE t');
  const outcome = await runPlan(forged(['INSERT INTO t VALUES (1)', 'SELECT 1; COMMIT', 'SELECT 1/0']));
  assert.ok(outcome.error instanceof pg.DatabaseError);
  assert.equal(outcome.error.code, '42601');
  assert.match(outcome.error.message, /cannot insert multiple commands into a prepared statement/);
  assert.deepEqual(await rowsOfT(), []);
});

test('a single statement our lexer misjudged cannot run two statements either', async () => {
  await db.query('TRUNCATE t');
  const outcome = await runPlan(forged(['INSERT INTO t VALUES (1); COMMIT; SELECT 1/0']));
  assert.equal((outcome.error as pg.DatabaseError).code, '42601');
  assert.deepEqual(await rowsOfT(), []);
});

test('a COMMIT the lexer missed is reported as outcome unknown, never as a plain failure', async () => {
  await db.query('TRUNCATE t');
  const outcome = await runPlan(forged(['INSERT INTO t VALUES (1)', 'COMMIT', 'SELECT 1/0']));
  const info = errorInfo(outcome.error);
  assert.equal(info.sqlstate, '08006');
  assert.match(info.message, /^outcome unknown: the server ran a transaction control statement \(COMMIT\)/);
  assert.deepEqual(await rowsOfT(), [1]); // it did commit: the library said it might have
  assert.equal(planTask('INSERT INTO t VALUES (1); COMMIT; SELECT 1/0').refusal?.includes('found COMMIT'), true);
});

test("a terminate or a cancel while the worker's COMMIT runs (a slow deferred trigger) ends canceled, and nothing committed", async () => {
  await db.query(`CREATE TABLE slow_commit (n int);
    CREATE FUNCTION slow_check() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN PERFORM pg_sleep(30); RETURN NULL; END$$;
    CREATE CONSTRAINT TRIGGER slow_commit_check AFTER INSERT ON slow_commit DEFERRABLE INITIALLY DEFERRED
      FOR EACH ROW EXECUTE FUNCTION slow_check()`);
  const bg = db.background();
  for (const [graceMs, sqlstate] of [
    [0, '57P01'], // terminated inside the COMMIT: a FATAL with no CommandComplete
    [5000, '57014'], // cancelled inside the COMMIT: an ERROR, the COMMIT fails
  ] as const) {
    const h = await bg.launch('INSERT INTO slow_commit VALUES (1); SELECT 1');
    // The trigger sleeps inside our COMMIT (a simple query of its own, so pg_stat_activity says so).
    await until(
      async () => (await db.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND query = 'COMMIT' AND wait_event = 'PgSleep'", [h.pid])).length,
      'the COMMIT to run the deferred trigger',
    );
    await bg.cancel(h, { graceMs });
    assert.deepEqual([(await bg.info(h)).state, (await bg.errorInfo(h))?.sqlstate], ['canceled', sqlstate]);
  }
  assert.deepEqual(await db.query('SELECT count(*)::int AS n FROM slow_commit'), [{ n: 0 }]);
  await bg.close();
});

test('a ROLLBACK the lexer missed is outcome unknown even when nothing failed: part of the work committed, part not', async () => {
  await db.query('TRUNCATE t');
  const outcome = await runPlan(forged(['INSERT INTO t VALUES (1)', 'ROLLBACK', 'INSERT INTO t VALUES (2)']));
  const info = errorInfo(outcome.error);
  assert.equal(info.sqlstate, '08006');
  assert.match(info.message, /^outcome unknown: the server ran a transaction control statement \(ROLLBACK\).*the task then ended without an error/);
  assert.deepEqual(await rowsOfT(), [2]);
});
