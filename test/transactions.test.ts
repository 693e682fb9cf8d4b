import { test } from 'node:test';
import assert from 'node:assert/strict';
import { until, useDatabase } from './support/database.js';

const db = useDatabase(import.meta.filename);

test('autonomous: the worker commits although the caller rolls back, and never sees its uncommitted rows', async () => {
  await db.query('CREATE TABLE audit (msg text)');
  const caller = await db.client();
  const bg = db.background();
  await caller.query('BEGIN');
  await caller.query("INSERT INTO audit VALUES ('caller')");
  const h = await bg.launch("INSERT INTO audit VALUES ('worker'); SELECT count(*)::int AS n FROM audit");
  assert.deepEqual(await bg.result(h).toArray(), [{ n: 1 }]); // its own row only
  await caller.query('ROLLBACK');
  assert.deepEqual(await db.query('SELECT msg FROM audit'), [{ msg: 'worker' }]);
  await bg.close();
});

test('several statements are one transaction: a later failure rolls back the earlier ones', async () => {
  await db.query('CREATE TABLE one_tx (n int)');
  const bg = db.background();
  const h = await bg.launch('INSERT INTO one_tx VALUES (1); INSERT INTO one_tx VALUES (2); SELECT 1/0');
  await bg.wait(h);
  assert.equal((await bg.errorInfo(h))?.sqlstate, '22012');
  assert.deepEqual(await db.query('SELECT count(*)::int AS n FROM one_tx'), [{ n: 0 }]);
  const ok = await bg.launch('INSERT INTO one_tx VALUES (1); INSERT INTO one_tx VALUES (2)');
  await bg.wait(ok);
  assert.deepEqual(await db.query('SELECT count(*)::int AS n FROM one_tx'), [{ n: 2 }]);
  await bg.close();
});

test('cancelling a multi-statement worker commits nothing of it', async () => {
  await db.query('CREATE TABLE cancelled_tx (n int)');
  const bg = db.background();
  const h = await bg.launch('INSERT INTO cancelled_tx VALUES (99); SELECT pg_sleep(30); INSERT INTO cancelled_tx VALUES (100)');
  await until(async () => (await db.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event = 'PgSleep'", [h.pid])).length, 'the worker to sleep');
  await bg.cancel(h);
  assert.equal((await bg.list())[0]!.state, 'canceled');
  assert.deepEqual(await db.query('SELECT count(*)::int AS n FROM cancelled_tx'), [{ n: 0 }]);
  await bg.close();
});

test('transaction control statements are refused with 0A000 and nothing runs', async () => {
  await db.query('CREATE TABLE tcl (n int)');
  const bg = db.background();
  const refused = [
    'BEGIN; INSERT INTO tcl VALUES (1); COMMIT',
    'INSERT INTO tcl VALUES (1); COMMIT',
    'START TRANSACTION',
    'INSERT INTO tcl VALUES (1); ROLLBACK',
    'end',
    'abort',
    'INSERT INTO tcl VALUES (1); SAVEPOINT s; RELEASE SAVEPOINT s',
    "PREPARE TRANSACTION 'x'",
    "COMMIT PREPARED 'x'",
    '/* comment */ begin isolation level serializable',
  ];
  for (const sql of refused) {
    const h = await bg.launch(sql);
    await bg.wait(h);
    const [info] = await bg.list();
    assert.equal(info!.state, 'error', sql);
    assert.equal((await bg.errorInfo(h))?.sqlstate, '0A000', sql);
    assert.match(info!.lastError!, /transaction control statements are not allowed/);
  }
  assert.deepEqual(await db.query('SELECT count(*)::int AS n FROM tcl'), [{ n: 0 }]);
  // Words that only look like transaction control are fine.
  const ok = await bg.launch("SELECT 'BEGIN; COMMIT' AS s; PREPARE q AS SELECT 1; EXECUTE q");
  await bg.wait(ok);
  assert.equal((await bg.list())[0]!.state, 'stopped');
  await bg.close();
});

test('VACUUM and CREATE INDEX CONCURRENTLY work as the only statement, and fail inside a multi-statement transaction', async () => {
  await db.query('CREATE TABLE maint (n int); INSERT INTO maint SELECT generate_series(1, 1000)');
  const bg = db.background();
  for (const sql of ['VACUUM maint', 'VACUUM (ANALYZE) maint', 'CREATE INDEX CONCURRENTLY maint_n ON maint (n)', 'REINDEX TABLE CONCURRENTLY maint']) {
    const h = await bg.launch(sql);
    await bg.wait(h);
    assert.equal((await bg.list())[0]!.state, 'stopped', `${sql}: ${(await bg.errorInfo(h))?.message}`);
  }
  assert.deepEqual(await db.query("SELECT indexname FROM pg_indexes WHERE tablename = 'maint'"), [{ indexname: 'maint_n' }]);
  const h = await bg.launch('SELECT 1; VACUUM maint');
  await bg.wait(h);
  assert.equal((await bg.errorInfo(h))?.sqlstate, '25001');
  await bg.close();
});

test('an error raised at commit (deferred constraint) is the worker error, and nothing commits', async () => {
  await db.query(`
    CREATE TABLE parent (id int PRIMARY KEY);
    CREATE TABLE child (parent_id int REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)`);
  const bg = db.background();
  for (const sql of [
    'INSERT INTO child VALUES (1)',
    'INSERT INTO child VALUES (1); SELECT 42 AS answer',
    "INSERT INTO child VALUES (1) RETURNING 'row' AS r",
  ]) {
    const h = await bg.launch(sql);
    await assert.rejects(bg.result(h).toArray(), { name: 'WorkerError', sqlstate: '23503' }, sql);
    const info = await bg.errorInfo(h);
    assert.equal(info?.constraint, 'child_parent_id_fkey');
    assert.equal(info?.table, 'child');
    assert.equal((await bg.list())[0]!.state, 'error');
  }
  assert.deepEqual(await db.query('SELECT count(*)::int AS n FROM child'), [{ n: 0 }]);
  await bg.close();
});

test('COPY to or from the client is refused with 0A000; server-side COPY runs', async () => {
  await db.query('CREATE TABLE copied (n int)');
  const bg = db.background();
  for (const sql of [
    'COPY copied FROM STDIN',
    'COPY copied (n) FROM stdin WITH (FORMAT csv)',
    'copy (select 1) to stdout',
    'SELECT 1; COPY public.copied TO STDOUT',
  ]) {
    const h = await bg.launch(sql);
    await bg.wait(h);
    const info = await bg.errorInfo(h);
    assert.equal(info?.sqlstate, '0A000', sql);
    assert.match(info!.message, /COPY (FROM STDIN|TO STDOUT) is not supported/);
  }
  const h = await bg.launch("COPY (SELECT 1) TO PROGRAM 'cat > /dev/null'");
  await bg.wait(h);
  assert.equal((await bg.list())[0]!.state, 'stopped', (await bg.errorInfo(h))?.message);
  await bg.close();
});

test('a worker does not inherit the caller session: settings are explicit', async () => {
  const caller = await db.client();
  await caller.query("SET work_mem = '7MB'");
  const bg = db.background({ settings: { work_mem: '12MB' } });
  const h = await bg.launch('SHOW work_mem');
  assert.deepEqual(await bg.result(h).toArray(), [{ work_mem: '12MB' }]);
  const h2 = await bg.launch('SHOW work_mem', { settings: { work_mem: '256MB', search_path: 'pg_catalog' } });
  assert.deepEqual(await bg.result(h2).toArray(), [{ work_mem: '256MB' }]);
  await bg.close();
});

test('a single CALL may commit in batches (as with pg_cron); inside a multi-statement string it cannot', async () => {
  await db.query(`
    CREATE TABLE batches (n int);
    CREATE PROCEDURE fill_in_batches() LANGUAGE plpgsql AS $$
    BEGIN
      FOR i IN 1..3 LOOP
        INSERT INTO batches VALUES (i);
        COMMIT;
      END LOOP;
    END $$`);
  const bg = db.background();
  const alone = await bg.launch('CALL fill_in_batches()');
  await bg.wait(alone);
  assert.equal((await bg.info(alone)).state, 'stopped');
  assert.deepEqual(await db.query('SELECT count(*)::int AS n FROM batches'), [{ n: 3 }]);
  const inString = await bg.launch('SELECT 1; CALL fill_in_batches()');
  await bg.wait(inString);
  assert.equal((await bg.errorInfo(inString))?.sqlstate, '2D000');
  assert.deepEqual(await db.query('SELECT count(*)::int AS n FROM batches'), [{ n: 3 }]);
  await bg.close();
});
