import { test } from 'node:test';
import assert from 'node:assert/strict';
import { workerTag } from 'pg-background';
import { until, useDatabase } from './support/database.js';

const db = useDatabase(import.meta.filename);

test('a warm connection is reset between tasks: nothing of one task is visible to the next', async () => {
  await db.query('CREATE TABLE reuse_seq_owner (id serial)');
  const bg = db.background({ maxWorkers: 1 });
  const dirty = await bg.launch(`
    SET work_mem = '99MB';
    SET application_name = 'changed';
    SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE;
    CREATE TEMP TABLE scratch (n int);
    LISTEN some_channel;
    SELECT pg_advisory_lock(4242);
    PREPARE stmt AS SELECT 1;
    DECLARE held CURSOR WITH HOLD FOR SELECT 1;
    SELECT nextval('reuse_seq_owner_id_seq');
    SELECT pg_backend_pid() AS pid`);
  const [{ pid: firstPid }] = (await bg.result(dirty).toArray()) as [{ pid: number }];
  assert.equal((await bg.list())[0]!.state, 'stopped');

  const probe = await bg.launch(`
    SELECT pg_backend_pid() AS pid,
           current_setting('work_mem') AS work_mem,
           current_setting('application_name') AS application_name,
           current_setting('default_transaction_isolation') AS isolation,
           to_regclass('pg_temp.scratch') IS NULL AS no_temp_table,
           (SELECT count(*)::int FROM pg_listening_channels()) AS listens,
           (SELECT count(*)::int FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()) AS advisory_locks,
           (SELECT count(*)::int FROM pg_prepared_statements) AS prepared,
           (SELECT count(*)::int FROM pg_cursors WHERE name <> '') AS cursors`);
  const [row] = (await bg.result(probe).toArray()) as Record<string, unknown>[];
  assert.deepEqual(row, {
    pid: firstPid, // the same backend served both tasks
    work_mem: '4MB',
    application_name: workerTag(probe.cookie, null), // its own tag, not 'changed'
    isolation: 'read committed',
    no_temp_table: true,
    listens: 0,
    advisory_locks: 0,
    prepared: 0,
    cursors: 0,
  });
  // DISCARD ALL also forgets the sequence's session state.
  const currval = await bg.launch("SELECT currval('reuse_seq_owner_id_seq')");
  await bg.wait(currval);
  assert.equal((await bg.errorInfo(currval))?.sqlstate, '55000');
  await bg.close();
});

test('a task that fails still leaves nothing behind for the next one', async () => {
  const bg = db.background({ maxWorkers: 1 });
  // Advisory locks are not transactional: the failure does not release it, the reset must.
  const failed = await bg.launch('SELECT pg_advisory_lock(777); SELECT 1/0');
  await bg.wait(failed);
  assert.equal((await bg.errorInfo(failed))?.sqlstate, '22012');
  const probe = await bg.launch(
    "SELECT pg_backend_pid() AS pid, (SELECT count(*)::int FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()) AS locks",
  );
  const [row] = (await bg.result(probe).toArray()) as { pid: number; locks: number }[];
  assert.deepEqual(row, { pid: failed.pid, locks: 0 });
  await bg.close();
});

test('a refused task with settings and a role leaves neither on the connection', async () => {
  const bg = db.background({ maxWorkers: 1 });
  const first = await bg.launch('SELECT 1');
  await bg.wait(first);
  const refused = await bg.launch('BEGIN', { settings: { search_path: 'pg_catalog', statement_timeout: 1234 }, role: 'pg_monitor' });
  await bg.wait(refused);
  assert.equal((await bg.errorInfo(refused))?.sqlstate, '0A000');
  const probe = await bg.launch(
    "SELECT current_user = session_user AS own_role, current_setting('statement_timeout') AS st, current_setting('search_path') AS sp",
  );
  assert.deepEqual(await bg.result(probe).toArray(), [{ own_role: true, st: '0', sp: '"$user", public' }]);
  await bg.close();
});

test('a reset that fails (the last task set a tiny statement_timeout) retires the connection; the next task runs clean elsewhere', async () => {
  await db.query('CREATE SCHEMA evil; CREATE TABLE public.audit (sp text); CREATE TABLE evil.audit (sp text)');
  const bg = db.background({ maxWorkers: 1, whenFull: 'queue' });
  // Many temp tables make DISCARD ALL slow enough for the 1 ms timeout this task leaves behind.
  // One statement: the timeout it sets applies from the next statement on (the reset), never to
  // the task's own commit, which a loaded machine could make overrun 1 ms.
  const dirty = await bg.launch(
    `DO $$BEGIN FOR i IN 1..400 LOOP EXECUTE format('CREATE TEMP TABLE tt%s (a int)', i); END LOOP;
      PERFORM set_config('search_path', 'evil, public', false); PERFORM set_config('statement_timeout', '1', false); END$$`,
  );
  const next = await bg.launch("INSERT INTO audit SELECT current_setting('search_path') RETURNING pg_backend_pid() AS pid");
  const [row] = (await bg.result(next).toArray()) as { pid: number }[];
  assert.equal((await bg.info(dirty)).state, 'stopped');
  assert.equal((await bg.info(next)).state, 'stopped');
  assert.deepEqual(await db.query('SELECT sp FROM public.audit'), [{ sp: '"$user", public' }]);
  assert.deepEqual(await db.query('SELECT sp FROM evil.audit'), []);
  assert.notEqual(row!.pid, dirty.pid);
  await bg.close();
});

test('settings and role of one task do not leak into the next on the same connection', async () => {
  const bg = db.background({ maxWorkers: 1 });
  const first = await bg.launch("SELECT pg_backend_pid() AS pid, current_setting('work_mem') AS wm", { settings: { work_mem: '64MB' } });
  const [a] = (await bg.result(first).toArray()) as { pid: number; wm: string }[];
  const second = await bg.launch("SELECT pg_backend_pid() AS pid, current_setting('work_mem') AS wm");
  const [b] = (await bg.result(second).toArray()) as { pid: number; wm: string }[];
  assert.deepEqual([a!.wm, b!.wm], ['64MB', '4MB']);
  assert.equal(a!.pid, b!.pid);
  await bg.close();
});

test('a task that failed leaves its connection reusable; a terminated one is replaced', async () => {
  const bg = db.background({ maxWorkers: 1 });
  const pidOf = async () => {
    const h = await bg.launch('SELECT pg_backend_pid() AS pid');
    return ((await bg.result(h).toArray()) as { pid: number }[])[0]!.pid;
  };
  const pid = await pidOf();
  const failed = await bg.launch('SELECT 1/0');
  await bg.wait(failed);
  assert.equal(await pidOf(), pid);
  const killed = await bg.launch('SELECT pg_sleep(30)');
  await bg.cancel(killed, { graceMs: 0 });
  assert.notEqual(await pidOf(), pid);
  await bg.close();
});

test('fresh: true runs on a brand-new connection', async () => {
  const bg = db.background({ maxWorkers: 2 });
  const first = await bg.launch('SELECT pg_backend_pid() AS pid');
  const [a] = (await bg.result(first).toArray()) as { pid: number }[];
  await bg.wait(first);
  const fresh = await bg.launch('SELECT pg_backend_pid() AS pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()', { fresh: true });
  const [b] = (await bg.result(fresh).toArray()) as { pid: number }[];
  assert.notEqual(b!.pid, a!.pid);
  await bg.close();
});

test('idle connections close after idleTimeoutMs; maxIdle 0 keeps none', async () => {
  const countOurs = async () => (await db.backends()).filter((b) => b.application_name.startsWith('pgbg:') && b.application_name !== 'pgbg:control').length;
  // The backends of earlier tests' closed instances exit a moment after close(): not ours to count.
  await until(async () => (await countOurs()) === 0, 'the backends of earlier tests to exit');
  // Long enough that a loaded machine still sees the parked connection before it closes.
  const bg = db.background({ idleTimeoutMs: 1000 });
  const h = await bg.launch('SELECT 1');
  await bg.wait(h);
  assert.equal(await countOurs(), 1);
  await until(async () => (await countOurs()) === 0, 'the idle connection to close', 5000).catch(() => {});
  assert.equal(await countOurs(), 0);
  const none = db.background({ maxIdle: 0 });
  const h2 = await none.launch('SELECT 1');
  await none.wait(h2);
  await until(async () => (await countOurs()) === 0, 'the connection to close', 5000).catch(() => {});
  assert.equal(await countOurs(), 0);
  await Promise.all([bg.close(), none.close()]);
});

test('a task of plain DML defers its reset: the next task carries it, or the idle connection runs it; nothing of the first is seen', async () => {
  for (const tagConnections of [true, false]) {
    const bg = db.background({ maxWorkers: 1, whenFull: 'queue', tagConnections });
    // One DML statement that changes the session: two settings and an advisory lock.
    const dirty = bg.launch("SELECT set_config('work_mem', '99MB', false), set_config('search_path', 'pg_catalog', false), pg_advisory_lock(4343)");
    // Launched at once: it waits for the slot and takes the connection with the reset still owed.
    const probe = bg.launch(
      `SELECT pg_backend_pid() AS pid, current_setting('work_mem') AS work_mem, current_setting('search_path') AS search_path,
              (SELECT count(*)::int FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()) AS locks`,
    );
    const [first, second] = await Promise.all([dirty, probe]);
    assert.deepEqual(await bg.result(second).toArray(), [{ pid: first.pid, work_mem: '4MB', search_path: '"$user", public', locks: 0 }]);
    // No next task: the idle connection resets itself, and the lock goes with the reset.
    const locker = await bg.launch('SELECT pg_advisory_lock(4344)');
    await bg.wait(locker);
    await until(
      async () => (await db.query("SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND objid = 4344")).length === 0,
      'the idle reset to free the lock',
    );
    assert.equal((await bg.info(locker)).state, 'stopped');
    await bg.close();
  }
});

test('connections that go idle in the same turn each run their own deferred reset', async () => {
  // Idle connections stay open past the checks below: only a reset can free the locks.
  const bg = db.background({ maxWorkers: 3, whenFull: 'queue', idleTimeoutMs: 60_000 });
  // Three warm connections, reset and idle, so that the next three tasks are written in one turn.
  const warm = await Promise.all([1, 2, 3].map(() => bg.launch('SELECT pg_sleep(0.05)')));
  await Promise.all(warm.map((h) => bg.wait(h)));
  const pids = warm.map((h) => h.pid);
  await until(
    async () => (await db.backends()).filter((b) => pids.includes(b.pid) && b.application_name === 'pgbg:idle' && b.state === 'idle').length === 3,
    'three idle connections, reset',
  );
  // Three plain DML tasks at once, each leaving an advisory lock on its own connection.
  const handles = await Promise.all([4351, 4352, 4353].map((key) => bg.launch(`SELECT pg_advisory_lock(${key})`)));
  // The event loop held while the three answers arrive: it then reads all three sockets in one
  // poll phase, so the three connections park in the same turn (not a wait for a condition).
  const until250 = Date.now() + 250;
  while (Date.now() < until250);
  await Promise.all(handles.map((h) => bg.wait(h)));
  assert.equal(new Set(handles.map((h) => h.pid)).size, 3);
  // No next task: every idle connection resets itself (one immediate for all parked in a turn).
  await until(
    async () => (await db.query("SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND objid IN (4351, 4352, 4353)")).length === 0,
    'the idle resets to free all three locks',
  );
  const idle = (await db.backends()).filter((b) => handles.some((h) => h.pid === b.pid));
  assert.deepEqual(
    idle.map((b) => b.application_name),
    ['pgbg:idle', 'pgbg:idle', 'pgbg:idle'],
  );
  await bg.close();
});

test('a deferred reset that fails ahead of the next task makes the server skip it: it runs once, on a new connection', async () => {
  await db.query(`CREATE TABLE prefix_audit (sp text)`);
  await db.query(`CREATE FUNCTION leave_a_mess() RETURNS int LANGUAGE plpgsql AS $$
    BEGIN
      -- Many temp tables make DISCARD ALL slow enough for the 1 ms timeout left behind.
      FOR i IN 1..400 LOOP EXECUTE format('CREATE TEMP TABLE mess%s (a int)', i); END LOOP;
      PERFORM set_config('search_path', 'pg_catalog', false);
      PERFORM set_config('statement_timeout', '1', false);
      RETURN 1;
    END $$`);
  const bg = db.background({ maxWorkers: 1, whenFull: 'queue' });
  const dirty = bg.launch('SELECT leave_a_mess()');
  const next = bg.launch("INSERT INTO public.prefix_audit SELECT current_setting('search_path') RETURNING pg_backend_pid() AS pid");
  const [a, b] = await Promise.all([dirty, next]);
  const [row] = (await bg.result(b).toArray()) as { pid: number }[];
  assert.equal((await bg.info(a)).state, 'stopped');
  assert.deepEqual([(await bg.info(b)).state, (await bg.errorInfo(b))?.message], ['stopped', undefined]);
  // It started on the first connection (its handle says so), was skipped there, and ran elsewhere.
  assert.equal(b.pid, a.pid);
  assert.notEqual(row!.pid, a.pid);
  assert.equal((await bg.info(b)).pid, row!.pid);
  assert.deepEqual(await db.query('SELECT sp FROM prefix_audit'), [{ sp: '"$user", public' }]);
  await bg.close();
});
