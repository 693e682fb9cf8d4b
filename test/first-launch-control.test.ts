// Control from SQL in the first moments of an instance: none of its workers becomes visible to
// the SQL functions (its tag in pg_stat_activity) before its control connection listens, so a
// pg_background_cancel_worker(cookie) sent the moment a fresh instance's very first worker
// appears reaches the owner, and the worker ends 'canceled' (not error 57014 from a direct
// cancel its owner never heard of), nothing committed. The outsider watches from inside the
// server (a loop over pg_stat_activity), so it sees the tag within microseconds of its arrival.
// A control connection that cannot listen (its login refused, or its LISTEN held up) does not
// fail the worker, nor hold it beyond the control connection's short bound (LISTEN_WAIT_MS): the
// old behaviour remains for it (the function cancels the backend directly: 57014). Both are made
// alike on every server version: the refusal by a proxy that closes a connection whose startup
// message names the control connection, the hold by the listeners' advisory lock taken
// exclusively by the test.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { type PgBackground } from 'pg-background';
import { until, useDatabase } from './support/database.js';
import { TcpProxy } from './support/tcp-proxy.js';
import { CONTROL_LISTENER_KEY } from '../src/catalog.js';
import { CONTROL_TAG } from '../src/store/worker-identity.js';

const db = useDatabase(import.meta.filename, {
  async setup(db) {
    await db.query('CREATE TABLE marks (mark text)');
    const bg = db.background();
    await bg.install();
    await bg.close();
  },
});

/** Sessions of this database that hear control requests (they hold the listeners' lock shared). */
async function listening(): Promise<number> {
  const [row] = await db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 AND mode = 'ShareLock'
        AND classid = $1 AND objid = $2 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
    [(CONTROL_LISTENER_KEY >> 32n).toString(), (CONTROL_LISTENER_KEY & 0xffffffffn).toString()],
  );
  return row!.n;
}

const marks = async (mark: string) => (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM marks WHERE mark = $1', [mark]))[0]!.n;

/**
 * Runs on `outsider` (not awaited): loops in the server until a worker labelled `label` is
 * tagged in pg_stat_activity, then cancels it by the tag's cookie at once. Resolves with it.
 */
function cancelOnSight(outsider: pg.Client, label: string): Promise<bigint> {
  const sql = `DO $$
DECLARE
  k int8;
  give_up timestamptz := clock_timestamp() + interval '20 s';
BEGIN
  LOOP
    PERFORM pg_catalog.pg_stat_clear_snapshot();
    SELECT ('x' || substr(application_name, 6, 16))::bit(64)::int8 INTO k FROM pg_catalog.pg_stat_activity
     WHERE datname = current_database() AND application_name LIKE 'pgbg:%:' || ${pg.escapeLiteral(label)};
    EXIT WHEN k IS NOT NULL;
    IF clock_timestamp() > give_up THEN RAISE EXCEPTION 'worker % never appeared', ${pg.escapeLiteral(label)}; END IF;
  END LOOP;
  IF NOT pg_background_cancel_worker(k) THEN RAISE EXCEPTION 'cancel of % returned false', k; END IF;
  PERFORM set_config('pgbg_test.cancelled', k::text, false);
END $$`;
  return outsider.query(sql).then(async () => BigInt((await outsider.query<{ k: string }>("SELECT current_setting('pgbg_test.cancelled') AS k")).rows[0]!.k));
}

const sleeper = (mark: string) => `INSERT INTO marks VALUES ('${mark}'); SELECT pg_sleep(30)`;

test('a fresh instance’s very first worker, cancelled from SQL the moment it appears: canceled, nothing committed (ten fresh instances)', async () => {
  const outsider = await db.client();
  const outsiderPid = (await outsider.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
  const ends: string[] = [];
  for (let i = 0; i < 10; i++) {
    const label = `first/${i}`;
    const cancelled = cancelOnSight(outsider, label);
    // The outsider's loop is running before the instance exists.
    await until(
      async () => (await db.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND state = 'active'", [outsiderPid])).length === 1,
      'the outsider to watch',
    );
    const bg: PgBackground = db.background();
    try {
      const h = await bg.launch(sleeper(label), { label });
      assert.equal(await cancelled, h.cookie);
      await bg.wait(h);
      const info = await bg.info(h);
      ends.push(`${info.state} ${(await bg.errorInfo(h))?.sqlstate ?? ''}`);
    } finally {
      await bg.close({ cancel: true });
    }
    assert.equal(await marks(label), 0);
    await until(async () => (await listening()) === 0, 'the instance to stop listening');
  }
  assert.deepEqual(ends, Array(10).fill('canceled 57014'));
});

/** The worker's end, as 'state sqlstate'. */
async function endOf(bg: PgBackground, h: { pid: number; cookie: bigint }): Promise<string> {
  await bg.wait(h);
  return `${(await bg.info(h)).state} ${(await bg.errorInfo(h))?.sqlstate ?? ''}`;
}

const tagged = async (cookie: bigint, label: string) =>
  (
    await db.query("SELECT 1 FROM pg_stat_activity WHERE application_name = $1 AND wait_event = 'PgSleep'", [
      `pgbg:${BigInt.asUintN(64, cookie).toString(16).padStart(16, '0')}:${label}`,
    ])
  ).length === 1;

test('a control connection refused at login does not fail or hold the workers; the function then cancels the backend directly (error 57014), nothing committed', async () => {
  // The instance reaches the server through a proxy that closes its control connection at once.
  const { hostname, port } = new URL(db.url);
  const proxy = await TcpProxy.start({ host: hostname, port: Number(port) });
  proxy.refuseStartup(CONTROL_TAG);
  const url = new URL(db.url);
  url.port = String(proxy.port);
  const bg = db.background({ connectionString: url.toString() });
  try {
    const quick = await bg.launch("INSERT INTO marks VALUES ('refused/quick')", { label: 'refused/quick' });
    assert.equal(await endOf(bg, quick), 'stopped ');
    assert.equal(await marks('refused/quick'), 1);
    const h = await bg.launch(sleeper('refused/sleeper'), { label: 'refused/sleeper' });
    await until(() => tagged(h.cookie, 'refused/sleeper'), 'the worker to run, tagged');
    assert.equal(await listening(), 0);
    assert.deepEqual(await db.query("SELECT 1 FROM pg_stat_activity WHERE application_name = 'pgbg:control' AND datname = current_database()"), []);
    assert.deepEqual(await db.query(`SELECT pg_background_cancel_worker(${h.cookie}) AS r`), [{ r: true }]);
    assert.equal(await endOf(bg, h), 'error 57014');
    assert.equal(await marks('refused/sleeper'), 0);
  } finally {
    await bg.close({ cancel: true });
    await proxy.close();
  }
});

test('a control connection whose LISTEN is held up holds a worker for LISTEN_WAIT_MS at most, then none; once it listens, a cancel from SQL reaches the owner again', async () => {
  // The listeners' lock, held exclusively: the control connection's shared lock waits behind it.
  const holder = await db.client();
  await holder.query(`SELECT pg_advisory_lock(${CONTROL_LISTENER_KEY})`);
  const bg = db.background();
  let held = true;
  try {
    // The first worker goes once the bound passed (LISTEN_WAIT_MS; the ceiling here is 5 s, far
    // below the control connection's own deadline), its control connection still waiting for
    // the lock; the second does not wait at all.
    const first = await bg.launch("INSERT INTO marks VALUES ('held/first')", { label: 'held/first' });
    await until(async () => (await bg.info(first)).state === 'stopped', 'the first worker to end within the bound', 5_000);
    assert.equal(await endOf(bg, first), 'stopped ');
    const second = await bg.launch("INSERT INTO marks VALUES ('held/second')", { label: 'held/second' });
    assert.equal(await endOf(bg, second), 'stopped ');
    assert.equal((await marks('held/first')) + (await marks('held/second')), 2);
    const waiting = await db.query("SELECT 1 FROM pg_stat_activity WHERE application_name = 'pgbg:control' AND wait_event = 'advisory'");
    assert.equal(waiting.length, 1, 'the control connection still waits to listen');
    assert.equal(await listening(), 0);
    // Let it in: it listens, and the next worker's cancel from SQL goes through the owner.
    await holder.query(`SELECT pg_advisory_unlock(${CONTROL_LISTENER_KEY})`);
    held = false;
    await until(async () => (await listening()) === 1, 'the control connection to listen');
    const h = await bg.launch(sleeper('held/sleeper'), { label: 'held/sleeper' });
    await until(() => tagged(h.cookie, 'held/sleeper'), 'the worker to run, tagged');
    assert.deepEqual(await db.query(`SELECT pg_background_cancel_worker(${h.cookie}) AS r`), [{ r: true }]);
    assert.equal(await endOf(bg, h), 'canceled 57014');
    assert.equal(await marks('held/sleeper'), 0);
  } finally {
    if (held) await holder.query(`SELECT pg_advisory_unlock(${CONTROL_LISTENER_KEY})`);
    await bg.close({ cancel: true });
  }
});

test('after its control session ended, an instance’s next worker (on a warm connection) is not shown before a new session listens: cancelled on sight, canceled (five times)', async () => {
  const outsider = await db.client();
  const outsiderPid = (await outsider.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
  const bg = db.background({ maxWorkers: 1 });
  const ends: string[] = [];
  try {
    const warmUp = await bg.launch('SELECT 1');
    await bg.wait(warmUp);
    for (let i = 0; i < 5; i++) {
      await until(async () => (await listening()) === 1, 'the control connection to listen');
      await db.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'pgbg:control' AND datname = current_database()");
      await until(async () => (await listening()) === 0, 'the control session to end');
      const label = `again/${i}`;
      const cancelled = cancelOnSight(outsider, label);
      await until(
        async () => (await db.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND state = 'active'", [outsiderPid])).length === 1,
        'the outsider to watch',
      );
      const h = await bg.launch(sleeper(label), { label });
      assert.equal(await cancelled, h.cookie);
      ends.push(await endOf(bg, h));
      assert.equal(await marks(label), 0);
    }
  } finally {
    await bg.close({ cancel: true });
  }
  assert.deepEqual(ends, Array(5).fill('canceled 57014'));
});

test('cancel() of a worker that waits for its instance to listen: nothing is sent, it ends canceled, and cancel resolves only once it has', async () => {
  // The listeners' lock, held exclusively: the first worker waits (LISTEN_WAIT_MS) before its tag and task go out.
  const holder = await db.client();
  await holder.query(`SELECT pg_advisory_lock(${CONTROL_LISTENER_KEY})`);
  const bg = db.background({ livenessTimeoutMs: 2_000 });
  try {
    const launching = bg.launch(sleeper('gate/cancel'), { label: 'gate/cancel' });
    let cookie = 0n;
    let pid = 0;
    await until(async () => {
      const info = (await bg.list()).find((w) => w.label === 'gate/cancel');
      if (info?.state !== 'running') return false;
      [cookie, pid] = [info.cookie, info.pid];
      return true;
    }, 'the worker to hold its connection, its task not sent');
    // Attached to its backend, which shows neither the tag nor the task.
    const [backend] = await db.query<{ application_name: string; state: string }>('SELECT application_name, state FROM pg_stat_activity WHERE pid = $1', [pid]);
    assert.deepEqual(backend, { application_name: 'pgbg:idle', state: 'idle' });
    await bg.cancel({ pid, cookie }, { graceMs: 200 });
    // Resolved only once the worker stopped: terminal already, canceled, and nothing ran.
    const info = await bg.info({ pid, cookie });
    assert.equal(info.state, 'canceled');
    assert.equal((await bg.errorInfo({ pid, cookie }))!.sqlstate, '57014');
    assert.equal((await launching).cookie, cookie);
    assert.equal(await marks('gate/cancel'), 0);
  } finally {
    await holder.query(`SELECT pg_advisory_unlock(${CONTROL_LISTENER_KEY})`);
    await bg.close({ cancel: true });
  }
  assert.equal(await marks('gate/cancel'), 0);
});
