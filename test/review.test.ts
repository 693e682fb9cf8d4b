// Outside review: promises that broke under inputs and faults the features' own tests did not try.
// - The journal's proof of an end (an insert into pg_background_journal_ends as the worker's last
//   statement) must not fail a worker that could not write it: a read-only session (a database or
//   role default, a read replica, the launch's settings or its own SQL) runs as without the journal.
// - A job's root ends only after every subtask it launched, also one whose launch was still being
//   accepted (waiting for the journal's first check) when the body returned.
// - The view says a started worker's backend is gone (error 08006) only once its owner is gone
//   too: a live owner's connection goes on to the next task (or idles) before its batch lands.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { PgBackground, type WorkerHandle } from 'pg-background';
import { until, useDatabase } from './support/database.js';
import { journalWithMarks } from './support/journal-marks.js';

const db = useDatabase(import.meta.filename, { setup: journalWithMarks });

test('journal: a worker whose settings or SQL make its transaction read-only runs, unproven (the view cannot say "nothing committed")', async () => {
  const bg = db.background({ journal: true });
  const h = await bg.launch('SELECT 2 AS n', { settings: { default_transaction_read_only: 'on' } });
  assert.deepEqual(await bg.result(h).toArray(), [{ n: 2 }]);
  const t = await bg.launch('SELECT 3 AS n', { settings: { default_transaction_read_only: 'Yes' } });
  assert.deepEqual(await bg.result(t).toArray(), [{ n: 3 }]);
  // Or the SQL itself, as a consistent report does.
  const r = await bg.launch('SET TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY, DEFERRABLE; SELECT 4 AS n');
  assert.deepEqual(await bg.result(r).toArray(), [{ n: 4 }]);
  // The same instance still proves the end of a worker that may write.
  const w = await bg.launch("INSERT INTO marks VALUES ('proven')");
  await bg.wait(w);
  assert.equal((await bg.info(w)).state, 'stopped');
  await bg.close();
  const ends = await db.query('SELECT cookie FROM pg_background_journal_ends WHERE cookie = ANY ($1::int8[]) ORDER BY cookie', [
    [h.cookie, t.cookie, r.cookie, w.cookie].map(String),
  ]);
  assert.deepEqual(ends, [{ cookie: String(w.cookie) }]);
  const proven = await db.query('SELECT cookie, proven FROM pg_background_journal WHERE cookie = ANY ($1::int8[])', [
    [h.cookie, t.cookie, r.cookie].map(String),
  ]);
  assert.deepEqual(
    proven.map((row) => row.proven),
    [false, false, false],
  );
});

test('journal: SQL that switches role (SET ROLE, SET SESSION AUTHORIZATION, set_config) runs, unproven, not refused by the proof', async () => {
  const role = `pgbg_review_reader_${process.pid}`;
  await db.query(`CREATE ROLE ${role}`);
  await db.query(`GRANT SELECT ON marks TO ${role}`);
  try {
    const bg = db.background({ journal: true });
    const handles = [];
    for (const sql of [
      `SET LOCAL ROLE ${role}; SELECT count(*)::int AS n FROM marks WHERE mark = 'none'`,
      `SET ROLE ${role}`,
      `SET SESSION AUTHORIZATION ${role}`,
      `SELECT pg_catalog.set_config('role', '${role}', true), 0 AS n`,
    ]) {
      const h = await bg.launch(sql);
      await bg.wait(h);
      assert.deepEqual([(await bg.info(h)).state, await bg.errorInfo(h)], ['stopped', null], sql);
      handles.push(h);
    }
    // A column or a literal named role is no switch: those keep the proof.
    await db.query('CREATE TABLE review_people (role text)');
    const kept = [];
    for (const sql of ["UPDATE review_people SET role = 'admin'", "SELECT count(*) FROM review_people WHERE role = 'role'"]) {
      const h = await bg.launch(sql);
      await bg.wait(h);
      assert.equal((await bg.info(h)).state, 'stopped', sql);
      kept.push(h);
    }
    await bg.close();
    const proven = async (hs: WorkerHandle[]) =>
      (await db.query('SELECT proven FROM pg_background_journal WHERE cookie = ANY ($1::int8[])', [hs.map((h) => String(h.cookie))])).map((row) => row.proven);
    assert.deepEqual(await proven(handles), [false, false, false, false]);
    assert.deepEqual(await proven(kept), [true, true]);
  } finally {
    await db.query(`DROP OWNED BY ${role}`);
    await db.query(`DROP ROLE ${role}`);
    await db.query('DROP TABLE IF EXISTS review_people');
  }
});

test('journal: a single statement whose function makes its transaction read-only fails 25006 with a hint that names the proof and the way out, nothing committed; with the setting it runs', async () => {
  await db.query(`CREATE FUNCTION ro_then_read() RETURNS int LANGUAGE plpgsql AS $$
BEGIN
  SET TRANSACTION READ ONLY;
  RETURN (SELECT count(*)::int FROM marks);
END $$`);
  const bg = db.background({ journal: true });
  try {
    const h = await bg.launch('SELECT ro_then_read() AS n');
    await bg.wait(h);
    const error = await bg.errorInfo(h);
    assert.equal((await bg.info(h)).state, 'error');
    assert.equal(error!.sqlstate, '25006');
    assert.match(
      error!.hint!,
      /^The worker's SQL ran, then the journal's record of its end .* was refused: .*nothing committed\. Launch it with settings: \{ default_transaction_read_only: 'on' \}/,
    );
    // The way out the hint names: the setting, and the worker runs without the proof.
    const ok = await bg.launch('SELECT ro_then_read() AS n', { settings: { default_transaction_read_only: 'on' } });
    assert.deepEqual(await bg.result(ok).toArray(), [{ n: (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM marks'))[0]!.n }]);
    // A 25006 of the worker's own statement keeps the server's words alone.
    const own = await bg.launch("SELECT ro_then_read(); INSERT INTO marks VALUES ('never')");
    await bg.wait(own);
    const ownError = await bg.errorInfo(own);
    assert.equal(ownError!.sqlstate, '25006');
    assert.equal(ownError!.hint, null);
  } finally {
    await bg.close();
    await db.query('DROP FUNCTION ro_then_read()');
  }
  assert.equal((await db.query<{ n: number }>("SELECT count(*)::int AS n FROM marks WHERE mark = 'never'"))[0]!.n, 0);
});

test('journal: on a database whose sessions are read-only (a read replica alike), workers run; nothing claims a proof', async () => {
  const [{ name }] = (await db.query('SELECT current_database() AS name')) as [{ name: string }];
  await db.query(`ALTER DATABASE ${pg.escapeIdentifier(name)} SET default_transaction_read_only = on`);
  const bg = db.background({ journal: true });
  bg.on('warning', () => {}); // the journal's own batches cannot be written either
  try {
    const h = await bg.launch('SELECT 1 AS n');
    assert.deepEqual(await bg.result(h).toArray(), [{ n: 1 }]);
    const m = await bg.launch('SELECT 1 AS a; SELECT 2 AS b');
    assert.deepEqual(await bg.result(m).toArray(), [{ b: 2 }]);
  } finally {
    await bg.close();
    await db.query(`ALTER DATABASE ${pg.escapeIdentifier(name)} RESET default_transaction_read_only`);
  }
});

test("jobs: a subtask submitted without await while its launch waits (a journaling instance's first launch) is the root's too", async () => {
  const bg = db.background({ journal: true });
  let submitted: Promise<WorkerHandle> | undefined;
  // The body returns at once; the subtask's launch is still waiting for the journal's check.
  const job = await bg.job((ctx) => {
    submitted = ctx.submit('SELECT 1/0', { label: 'late' });
  });
  await bg.wait(job);
  const h = await submitted!;
  const [root, child] = [await bg.info(job), await bg.info(h)];
  assert.deepEqual([root.state, child.state, root.lastError], ['error', 'error', `subtask "late" (pid ${child.pid}) failed: division by zero`]);
  await bg.close();
});

// The worker waits for a lock the test holds until its running row is in the journal: a sleep
// could end first on a slow machine (its first batch would then write it stopped, and the view
// would have no row for it between the end of its tagged task and that batch).
const GATE = 7_400_001;
for (const [kind, sql] of [
  ['a proven SELECT', `SELECT pg_advisory_xact_lock(${GATE})`],
  ['an unproven DO block', `DO $$ BEGIN PERFORM pg_advisory_xact_lock(${GATE}); END $$`],
] as const) {
  test(`view: ${kind} that just ended is never shown as error while its owner lives (its connection went on)`, async () => {
    const bg = db.background({ journal: true });
    await db.query('SELECT pg_advisory_lock($1)', [GATE]);
    let h: WorkerHandle;
    const row = async () =>
      (await db.query('SELECT state, sqlstate, error_message FROM pg_background_workers WHERE cookie = $1', [String(h.cookie)]))[0] as
        { state: string; sqlstate: string | null; error_message: string | null } | undefined;
    try {
      h = await bg.launch(sql);
      // Journaled, not only seen live from the connection's tag (which goes when the task ends).
      const journaled = async () => (await db.query("SELECT 1 FROM pg_background_journal WHERE cookie = $1 AND state = 'running'", [String(h.cookie)])).length;
      await until(journaled, 'the running row in the journal');
      assert.equal((await row())?.state, 'running');
    } finally {
      await db.query('SELECT pg_advisory_unlock($1)', [GATE]);
    }
    await bg.wait(h);
    assert.equal((await bg.info(h)).state, 'stopped');
    // Until the owner's batch lands, the view shows the row as the owner last wrote it.
    const seen = new Set<string>();
    await until(async () => {
      const now = (await row())!;
      seen.add(JSON.stringify(now));
      return now.state === 'stopped' || null;
    }, 'the stopped row');
    assert.deepEqual(
      [...seen].filter(
        (state) => !['{"state":"running","sqlstate":null,"error_message":null}', '{"state":"stopped","sqlstate":null,"error_message":null}'].includes(state),
      ),
      [],
    );
    await bg.close();
  });
}
