// Fault: the network between the library and the server is cut, through a TCP proxy that can
// freeze (packets silently go nowhere, sockets stay open) or drop (connections reset) every
// connection. Workers must reach a terminal state in bounded time, never hang, and the library
// must leave nothing behind.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PgBackground, WorkerError, type PgBackgroundOptions, type WorkerHandle } from 'pg-background';
import { TcpProxy } from './support/tcp-proxy.js';
import { until, useDatabase } from './support/database.js';

const db = useDatabase(import.meta.filename);

const LIVENESS_MS = 500;
const BIG = 'SELECT g, md5(g::text) AS m FROM generate_series(1, 5000000) g';

/** A PgBackground that reaches this file's database through `proxy`. */
function behind(proxy: TcpProxy, options: PgBackgroundOptions = {}): PgBackground {
  return new PgBackground({
    ...proxy.via(db.url),
    livenessTimeoutMs: LIVENESS_MS,
    // So that a backend whose client is gone notices it even while it sleeps, once the proxy
    // finally closes its side (the server of a frozen connection cannot know otherwise).
    options: '-c client_connection_check_interval=250',
    ...options,
  });
}

/** `promise`, or a rejection if it has not settled within `ms`: a hang fails fast and says what hung. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function startProxy(): Promise<TcpProxy> {
  const url = new URL(db.url);
  return TcpProxy.start({ host: url.hostname, port: Number(url.port) });
}

async function logTerminal(bg: PgBackground, h: WorkerHandle, faultAt: number, what: string): Promise<void> {
  const { finishedAt } = await bg.info(h);
  console.log(`[fault-network] ${what}: ${finishedAt!.getTime() - faultAt} ms from fault to terminal state`);
}

/** Closes the instance (it must resolve), then checks nothing is left: no proxy socket, no backend. */
async function closeAndCheck(bg: PgBackground, proxy: TcpProxy): Promise<void> {
  await within(bg.close(), 15_000, 'close()');
  // Every socket of ours is closed; the proxy passes that on to the server side.
  await until(() => proxy.openSockets === 0, 'the proxy to have no open socket left', 15_000);
  await proxy.close();
  await until(async () => (await db.backends()).length === 0, 'no backend of ours left on the server', 15_000);
}

/** Reads `h`'s result to the end, calling `atRow` with the count after each row. */
async function read(bg: PgBackground, h: WorkerHandle, atRow: (n: number) => void, counter: { rows: number }): Promise<void> {
  for await (const _row of bg.result(h)) atRow(++counter.rows);
}

const isLostConnection = (h: WorkerHandle) => (e: unknown) => {
  assert.ok(e instanceof WorkerError, `a WorkerError, got ${String(e)}`);
  assert.deepEqual([e.code, e.sqlstate, e.pid], ['PGBG_WORKER_FAILED', '08006', h.pid]);
  return true;
};

/**
 * Streams a large result through `proxy`, cuts the network after 10,000 rows, and checks what
 * every cut must give: the reading throws 08006 in bounded time, the worker ends in error and
 * nothing hangs. Returns the handle for the case's own checks.
 */
async function cutDuringStream(bg: PgBackground, proxy: TcpProxy, cut: () => void, what: string): Promise<WorkerHandle> {
  const h = await bg.launch(BIG, { label: 'stream' });
  let faultAt = 0;
  const counter = { rows: 0 };
  const reading = read(
    bg,
    h,
    (n) => {
      if (n === 10_000) {
        cut();
        faultAt = Date.now();
      }
    },
    counter,
  );
  await assert.rejects(within(reading, 15_000, 'reading the result'), isLostConnection(h));
  await logTerminal(bg, h, faultAt, what);
  assert.ok(counter.rows >= 10_000 && counter.rows < 5_000_000, `rows read: ${counter.rows}`);
  const info = await bg.info(h);
  assert.deepEqual([info.state, info.canceledBy, info.consumed], ['error', null, true]);
  assert.equal((await bg.errorInfo(h))?.sqlstate, '08006');
  return h;
}

test('a freeze in the middle of a streamed result: 08006 within bounded time, the reading throws, nothing hangs', async () => {
  const proxy = await startProxy();
  const bg = behind(proxy);
  try {
    const h = await cutDuringStream(bg, proxy, () => proxy.freeze(), 'freeze during a streamed result');
    assert.match((await bg.info(h)).lastError!, /outcome is unknown/);
    proxy.resume();
    const next = await bg.launch('SELECT 1 AS ok');
    assert.deepEqual(await bg.result(next).toArray(), [{ ok: 1 }]);
    await closeAndCheck(bg, proxy);
  } finally {
    await bg.close();
    await proxy.close();
  }
});

test('connections dropped in the middle of a streamed result: 08006, the reading throws', async () => {
  const proxy = await startProxy();
  const bg = behind(proxy);
  try {
    const h = await cutDuringStream(bg, proxy, () => proxy.drop(), 'drop during a streamed result');
    // The proxy still accepts connections: the instance carries on with a new one.
    const next = await bg.launch('SELECT pg_backend_pid() AS pid');
    const [row] = (await bg.result(next).toArray()) as { pid: number }[];
    assert.notEqual(row!.pid, h.pid);
    await closeAndCheck(bg, proxy);
  } finally {
    await bg.close();
    await proxy.close();
  }
});

test('a freeze during a cancel: cancel rejects (PGBG_CANCEL_FAILED), the worker ends in error (outcome unknown), not canceled', async () => {
  await db.query('CREATE TABLE frozen_cancel (n int)');
  const proxy = await startProxy();
  const bg = behind(proxy);
  try {
    const h = await bg.launch('INSERT INTO frozen_cancel VALUES (1); SELECT pg_sleep(30)', { label: 'sleeper' });
    await until(
      async () => (await db.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event = 'PgSleep'", [h.pid])).length,
      'the worker to sleep',
    );
    proxy.freeze();
    const faultAt = Date.now();
    // Neither the cancel request, nor pg_cancel_backend, nor pg_terminate_backend gets through.
    // So cancel() cannot say the work stopped: it rejects, after trying within its deadlines.
    await assert.rejects(within(bg.cancel(h, { graceMs: 200 }), 15_000, 'cancel()'), { code: 'PGBG_CANCEL_FAILED', pid: h.pid, sqlstate: '08006' });
    console.log(`[fault-network] freeze during a cancel: cancel() rejected ${Date.now() - faultAt} ms after the freeze`);
    await logTerminal(bg, h, faultAt, 'freeze during a cancel');
    const info = await bg.info(h);
    console.log(`[fault-network] freeze during a cancel: lastError = ${info.lastError}`);
    // Nobody can tell whether the work rolled back: that is an error, not a cancellation.
    assert.equal(info.state, 'error');
    assert.equal(info.canceledBy, 'cancel'); // the cancel was asked for, and is still reported
    assert.match(info.lastError!, /outcome is unknown/);
    assert.equal((await bg.errorInfo(h))?.sqlstate, '08006');
    await assert.rejects(bg.result(h).toArray(), (e: unknown) => e instanceof WorkerError && e.code === 'PGBG_WORKER_FAILED' && e.sqlstate === '08006');
    const stats = await bg.stats();
    assert.deepEqual([stats.workersFailed, stats.workersCanceled, stats.workersActive], [1, 0, 0]);

    proxy.resume();
    const next = await bg.launch('SELECT pg_backend_pid() AS pid');
    const [row] = (await bg.result(next).toArray()) as { pid: number }[];
    assert.notEqual(row!.pid, h.pid);
    // Once the proxy closed its server side, the old backend gave up, and its work rolled back.
    await until(async () => (await db.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [h.pid])).length === 0, 'the old backend to exit', 15_000);
    assert.deepEqual(await db.query('SELECT count(*)::int AS n FROM frozen_cancel'), [{ n: 0 }]);
    await closeAndCheck(bg, proxy);
  } finally {
    await bg.close();
    await proxy.close();
  }
});

test('cursor mode, a freeze during a cancel: cancel rejects (PGBG_CANCEL_FAILED), the worker ends in error, never canceled', async () => {
  const proxy = await startProxy();
  const bg = behind(proxy);
  try {
    const h = await bg.launch('SELECT pg_sleep(30) AS slept', { cursor: { batchRows: 100 } });
    await until(
      async () => (await db.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event = 'PgSleep'", [h.pid])).length,
      'the worker to sleep',
    );
    proxy.freeze();
    // The stop cannot be confirmed, so cancel() cannot resolve: the backend may run on.
    await assert.rejects(within(bg.cancel(h, { graceMs: 200 }), 15_000, 'cancel()'), { code: 'PGBG_CANCEL_FAILED', pid: h.pid, sqlstate: '08006' });
    const info = await bg.info(h);
    assert.equal(info.state, 'error');
    assert.match(info.lastError!, /before the transaction committed .*: nothing of it committed, but its backend was not seen to stop$/);
    proxy.resume();
    await until(async () => (await db.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [h.pid])).length === 0, 'the old backend to exit', 15_000);
    await closeAndCheck(bg, proxy);
  } finally {
    await bg.close();
    await proxy.close();
  }
});

test('close() while the network is frozen resolves, and leaves no socket and no backend behind', async () => {
  const proxy = await startProxy();
  const bg = behind(proxy);
  try {
    // A warm idle connection, a sleeping worker and one blocked on a consumer that reads nothing.
    const warm = await bg.launch('SELECT 1');
    await bg.wait(warm);
    const sleeper = await bg.launch('SELECT pg_sleep(30)');
    const blocked = await bg.launch(BIG, { queueSize: 4096 });
    await until(
      async () => (await db.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event = 'PgSleep'", [sleeper.pid])).length,
      'the worker to sleep',
    );
    await until(async () => (await bg.info(blocked)).queuedBytes >= 4096, 'the queue to fill');
    proxy.freeze();
    const faultAt = Date.now();
    const states = new Map<number, string>();
    bg.on('finished', ({ handle, state }) => states.set(handle.pid, state));
    await within(bg.close(), 15_000, 'close()');
    console.log(`[fault-network] freeze, then close(): close() resolved ${Date.now() - faultAt} ms after the freeze`);
    // close() waited for both: the network being gone, each ended in error.
    assert.deepEqual([states.get(sleeper.pid), states.get(blocked.pid)], ['error', 'error']);
    // The proxy still holds the server side of the frozen connections; closing it lets them go.
    await proxy.close();
    assert.equal(proxy.openSockets, 0);
    await until(async () => (await db.backends()).length === 0, 'no backend of ours left on the server', 15_000);
  } finally {
    await bg.close();
    await proxy.close();
  }
});
