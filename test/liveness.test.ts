// Liveness checks when the server is alive but will not give us another connection, and over a
// slow link. A full server (53300) or one that refuses new logins (28000) answers: it is not
// "unreachable", and a healthy worker must run to its end, exactly once, within its queue's
// budget. The server is made full for one role only (CONNECTION LIMIT), so that the other test
// files sharing the server are not locked out; connections go through a TCP proxy, which counts
// the connection attempts (each refused liveness check is one) and can slow the uplink.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { PgBackground, type PgBackgroundOptions, type WorkerHandle } from 'pg-background';
import { TcpProxy } from './support/tcp-proxy.js';
import { until, useDatabase } from './support/database.js';

const ROLE = `pgbg_liveness_${randomBytes(3).toString('hex')}`;
const PASSWORD = 'Liveness-Pa55';
/** A worker connection and the control connection. */
const ROLE_LIMIT = 2;
const LIVENESS_MS = 300;
const CONNECT_MS = 10_000;
const SOCKET_CHUNK = 65536;
const q = pg.escapeIdentifier;

const db = useDatabase(import.meta.filename, {
  async setup(db) {
    await db.query(`CREATE ROLE ${q(ROLE)} LOGIN NOSUPERUSER PASSWORD '${PASSWORD}' CONNECTION LIMIT ${ROLE_LIMIT}`);
    await db.query('CREATE TABLE runs (test text, n int)');
    await db.query(`GRANT SELECT, INSERT ON runs TO ${q(ROLE)}`);
  },
  async teardown(db) {
    await db.query(`DROP OWNED BY ${q(ROLE)}`);
    await db.query(`DROP ROLE ${q(ROLE)}`);
  },
});

function target(): { host: string; port: number } {
  const url = new URL(db.url);
  return { host: url.hostname, port: Number(url.port) };
}

/** The database as ROLE (or as the test's superuser), through `proxy`. */
function config(proxy: TcpProxy, asRole: boolean): pg.ClientConfig {
  const url = new URL(db.url);
  return {
    host: '127.0.0.1',
    port: proxy.port,
    user: asRole ? ROLE : decodeURIComponent(url.username),
    password: asRole ? PASSWORD : decodeURIComponent(url.password),
    database: decodeURIComponent(url.pathname.slice(1)),
  };
}

/**
 * An instance through `proxy`. Its connects get CONNECT_MS, more than the checks' LIVENESS_MS
 * (which is also a connect's deadline by default, and which a loaded machine's connect can
 * miss), except where the test needs a check's connect to time out (`connectionTimeoutMillis`).
 */
function behind(proxy: TcpProxy, options: PgBackgroundOptions & { asRole?: boolean } = {}): PgBackground {
  const { asRole = true, ...rest } = options;
  const { host, port, user, password, database } = config(proxy, asRole);
  return new PgBackground({
    host,
    port,
    user,
    password,
    database,
    livenessTimeoutMs: LIVENESS_MS,
    connectionTimeoutMillis: CONNECT_MS,
    maxWorkers: 1,
    ...rest,
  });
}

/** Plain clients of ROLE that hold every connection it may still open; the last attempt got 53300. */
async function fillRole(): Promise<pg.Client[]> {
  const url = new URL(db.url);
  const fillers: pg.Client[] = [];
  for (let i = 0; i <= ROLE_LIMIT; i++) {
    const client = new pg.Client({
      host: url.hostname,
      port: Number(url.port),
      database: decodeURIComponent(url.pathname.slice(1)),
      user: ROLE,
      password: PASSWORD,
      application_name: 'pgbg-test-filler',
    });
    client.on('error', () => {});
    try {
      await client.connect();
    } catch (error) {
      assert.equal((error as pg.DatabaseError).code, '53300', String(error));
      return fillers;
    }
    fillers.push(client);
  }
  throw new Error(`the role accepted more than ${ROLE_LIMIT} connections`);
}

const controlOpen = async () => (await db.query("SELECT 1 FROM pg_stat_activity WHERE usename = $1 AND application_name = 'pgbg:control'", [ROLE])).length > 0;

/** Terminates our control connection (if it is open), so that the next check must open another. */
async function dropControl(): Promise<void> {
  // Terminated again at each look: a liveness check may open another meanwhile.
  await until(async () => {
    await db.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1 AND application_name = 'pgbg:control'", [ROLE]);
    return !(await controlOpen());
  }, 'the control connection to be gone');
}

/**
 * Makes the server refuse ROLE's new connections with `sqlstate`, with our control connection
 * closed, so that the next liveness check must open one; returns the undo.
 */
async function refuse(sqlstate: '53300' | '28000'): Promise<() => Promise<void>> {
  // Opened at the first launch: one still being opened would not be dropped below.
  await until(controlOpen, 'the control connection to be open');
  if (sqlstate === '28000') {
    await db.query(`ALTER ROLE ${q(ROLE)} NOLOGIN`);
    await dropControl();
    return async () => void (await db.query(`ALTER ROLE ${q(ROLE)} LOGIN`));
  }
  // A check may open a control connection before the fillers take the freed slot: try again.
  const fillers = await until(async () => {
    await dropControl();
    const taken = await fillRole();
    if (taken.length > 0 && !(await controlOpen())) return taken;
    await Promise.all(taken.map((c) => c.end()));
    return null;
  }, 'the role to be full without our control connection');
  return async () => void (await Promise.all(fillers.map((c) => c.end())));
}

/**
 * Waits until the instance has tried (and failed) `n` more times to connect through `proxy`, or
 * until `broken()` says a check already did harm (then the caller's assertions say which).
 */
async function refusedChecks(proxy: TcpProxy, n: number, broken: () => Promise<boolean>): Promise<void> {
  const start = proxy.accepted;
  await until(async () => proxy.accepted >= start + n || (await broken()), `${n} liveness checks to be refused`);
}

async function closeAndCheck(bg: PgBackground, proxy: TcpProxy): Promise<void> {
  await bg.close();
  await until(() => proxy.openSockets === 0, 'the proxy to have no open socket left');
  await proxy.close();
  await until(async () => (await db.backends()).length === 0, 'no backend of ours left on the server');
}

async function runs(test: string): Promise<number> {
  const [row] = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM runs WHERE test = $1', [test]);
  return row!.n;
}

const LOCK = 7_000_001;

for (const sqlstate of ['53300', '28000'] as const) {
  test(`a healthy silent worker runs to its end, once, while the server refuses new connections (${sqlstate})`, async () => {
    const proxy = await TcpProxy.start(target());
    const bg = behind(proxy);
    const name = `silent-${sqlstate}`;
    let undo: (() => Promise<void>) | undefined;
    try {
      // The worker waits (silently) for a lock the test holds, after its INSERT.
      await db.query('SELECT pg_advisory_lock($1)', [LOCK]);
      const h = await bg.launch(`INSERT INTO runs VALUES ('${name}', 1); SELECT pg_advisory_xact_lock(${LOCK})`);
      await until(
        async () => (await db.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event = 'advisory'", [h.pid])).length,
        'the worker to wait for the lock',
      );
      undo = await refuse(sqlstate);
      await refusedChecks(proxy, 3, async () => (await bg.info(h)).state !== 'running');
      assert.deepEqual([(await bg.info(h)).state, (await bg.info(h)).lastError], ['running', null]);
      await db.query('SELECT pg_advisory_unlock($1)', [LOCK]);
      await bg.wait(h);
      const info = await bg.info(h);
      assert.deepEqual([info.state, info.lastError, await bg.errorInfo(h)], ['stopped', null, null]);
      assert.equal(await runs(name), 1);
      await undo();
      undo = undefined;
      await closeAndCheck(bg, proxy);
    } finally {
      await db.query('SELECT pg_advisory_unlock_all()');
      await undo?.();
      await bg.close();
      await proxy.close();
    }
  });
}

test('a paused queue keeps its budget while the server refuses new connections (53300)', async () => {
  const proxy = await TcpProxy.start(target());
  const bg = behind(proxy);
  let undo: (() => Promise<void>) | undefined;
  try {
    const queueSize = 65536;
    const total = 300_000;
    const h = await bg.launch(`SELECT g, md5(g::text) AS m FROM generate_series(1, ${total}) g`, { queueSize });
    await until(async () => (await bg.info(h)).queuedBytes >= queueSize, 'the queue to fill');
    undo = await refuse('53300');
    await refusedChecks(proxy, 3, async () => (await bg.info(h)).queuedBytes > queueSize + SOCKET_CHUNK);
    const info = await bg.info(h);
    assert.equal(info.state, 'running');
    assert.ok(info.queuedBytes <= queueSize + SOCKET_CHUNK, `queue bounded: ${info.queuedBytes}`);
    let rows = 0;
    for await (const _row of bg.result(h)) rows++;
    assert.equal(rows, total);
    assert.equal((await bg.info(h)).state, 'stopped');
    await undo();
    undo = undefined;
    await closeAndCheck(bg, proxy);
  } finally {
    await undo?.();
    await bg.close();
    await proxy.close();
  }
});

test('a full server cannot stop a terminate: the control connection is open from the first launch', async () => {
  const proxy = await TcpProxy.start(target());
  // No liveness checks: they would open the control connection too.
  const bg = behind(proxy, { livenessTimeoutMs: 0 });
  let undo: (() => Promise<void>) | undefined;
  try {
    await db.query('SELECT pg_advisory_lock($1)', [LOCK]);
    const h = await bg.launch(`INSERT INTO runs VALUES ('terminate', 1); SELECT pg_advisory_xact_lock(${LOCK})`);
    await until(
      async () => (await db.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event = 'advisory'", [h.pid])).length,
      'the worker to wait for the lock',
    );
    await until(controlOpen, 'the control connection to be open');
    // The role is full (worker and control connection): nobody else gets in.
    const fillers = await fillRole();
    undo = async () => void (await Promise.all(fillers.map((c) => c.end())));
    await bg.cancel(h, { graceMs: 0 }); // straight to pg_terminate_backend
    const info = await bg.info(h);
    assert.deepEqual([info.state, info.canceledBy], ['canceled', 'cancel']);
    await db.query('SELECT pg_advisory_unlock($1)', [LOCK]);
    assert.equal(await runs('terminate'), 0);
    await undo();
    undo = undefined;
    await closeAndCheck(bg, proxy);
  } finally {
    await db.query('SELECT pg_advisory_unlock_all()');
    await undo?.();
    await bg.close();
    await proxy.close();
  }
});

test('an instance that never launches opens no connection', async () => {
  const proxy = await TcpProxy.start(target());
  const bg = behind(proxy);
  try {
    assert.equal((await bg.stats()).workersLaunched, 0);
    assert.deepEqual(await bg.list(), []);
    await bg.close();
    assert.equal(proxy.accepted, 0);
  } finally {
    await bg.close();
    await proxy.close();
  }
});

test('a statement still being written over a slow link is not taken for a dead connection', async () => {
  const proxy = await TcpProxy.start(target());
  const bg = behind(proxy, { asRole: false, livenessTimeoutMs: 500 });
  try {
    // Open the worker and control connections at full speed; then a 10 KB/s uplink.
    await bg.wait(await bg.launch('SELECT 1'));
    proxy.throttle(10_000);
    const size = 30_000;
    const started = Date.now();
    const h: WorkerHandle = await bg.launch(`INSERT INTO runs VALUES ('slow', length('${'x'.repeat(size)}'))`);
    await bg.wait(h);
    const elapsed = Date.now() - started;
    proxy.throttle(null);
    const info = await bg.info(h);
    assert.deepEqual([info.state, info.lastError], ['stopped', null]);
    assert.deepEqual(await db.query("SELECT n FROM runs WHERE test = 'slow'"), [{ n: size }]);
    // It did take several liveness timeouts to arrive.
    assert.ok(elapsed >= 4 * 500, `the statement took ${elapsed} ms to arrive`);
    await closeAndCheck(bg, proxy);
  } finally {
    await bg.close();
    await proxy.close();
  }
});

test('a paused queue keeps its budget while the server does not answer a check, and its end still comes', async () => {
  const proxy = await TcpProxy.start(target());
  // A check's connect must time out here: at the checks' deadline (the launch's connect too).
  const bg = behind(proxy, { asRole: false, connectionTimeoutMillis: LIVENESS_MS });
  try {
    const queueSize = 65536;
    const total = 300_000;
    const h = await bg.launch(`SELECT g, md5(g::text) AS m FROM generate_series(1, ${total}) g`, { queueSize });
    await until(async () => (await bg.info(h)).queuedBytes >= queueSize, 'the queue to fill');
    // New connections get nowhere (a check's connect times out); the worker's link is fine.
    // The control connection (opened at the launch) must be up first, or it would answer the checks.
    const control = "FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'pgbg:control'";
    await until(async () => (await db.query(`SELECT 1 ${control}`)).length, 'the control connection to be open');
    proxy.stallNew();
    await db.query(`SELECT pg_terminate_backend(pid) ${control}`);
    await refusedChecks(proxy, 3, async () => (await bg.info(h)).queuedBytes > queueSize + SOCKET_CHUNK);
    const info = await bg.info(h);
    assert.deepEqual([info.state, info.lastError], ['running', null]);
    assert.ok(info.queuedBytes <= queueSize + SOCKET_CHUNK, `queue bounded: ${info.queuedBytes}`);
    let rows = 0;
    for await (const _row of bg.result(h)) rows++;
    assert.equal(rows, total);
    assert.equal((await bg.info(h)).state, 'stopped');
    proxy.stallNew(false);
    await closeAndCheck(bg, proxy);
  } finally {
    await bg.close();
    await proxy.close();
  }
});
