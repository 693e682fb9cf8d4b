// Fault: warm (idle, pooled) connections that died while they idled: the server restarted,
// the backend was terminated, or the link went silent. A task that provably never reached a
// backend runs on a new connection, once, transparently; one that may have run keeps its honest
// error. This file runs its own throwaway server, since it restarts it; most cases reach it
// through a TCP proxy, which holds back what a dead backend sent, as a busy event loop would.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import pg from 'pg';
import { PgBackground, WorkerError, type PgBackgroundOptions, type WorkerHandle } from 'pg-background';
import { CHECK_AFTER_IDLE_MS } from '../src/pool/connection-pool.js';
import { TcpProxy } from './support/tcp-proxy.js';
import { until } from './support/database.js';
import { useRestartableServer } from './support/restartable-server.js';

const restartable = useRestartableServer();
const query = restartable.query.bind(restartable);

const LIVENESS_MS = 500;
/**
 * Connects get more than the checks' LIVENESS_MS (the default deadline of a connect too): ten
 * at once after a restart can take longer than that on a loaded machine, which proves nothing.
 */
const CONNECT_MS = 10_000;

function behind(proxy: TcpProxy, options: PgBackgroundOptions = {}): PgBackground {
  return new PgBackground({
    host: '127.0.0.1',
    port: proxy.port,
    user: restartable.server.user,
    password: restartable.server.password,
    database: 'postgres',
    livenessTimeoutMs: LIVENESS_MS,
    connectionTimeoutMillis: CONNECT_MS,
    ...options,
  });
}

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Opens `n` worker connections at once and waits until all of them are parked, reset. */
async function warm(bg: PgBackground, n: number): Promise<number[]> {
  const handles = await Promise.all(Array.from({ length: n }, () => bg.launch('SELECT pg_backend_pid() AS pid, pg_sleep(0.05)')));
  const pids = await Promise.all(handles.map(async (h) => ((await bg.result(h).toArray()) as { pid: number }[])[0]!.pid));
  assert.equal(new Set(pids).size, n);
  await until(() => String(bg).includes(`idle: ${n},`), 'the warm connections to be parked, reset');
  // A task of plain DML defers its reset: the idle connection runs it a moment later.
  const reset = async () =>
    (await query("SELECT 1 FROM pg_stat_activity WHERE pid = ANY($1) AND state = 'idle' AND query = 'DISCARD ALL'", [pids])).length === n;
  await until(reset, 'the warm connections reset on the server');
  await until(() => String(bg).includes(`idle: ${n},`), 'the warm connections parked again');
  return pids;
}

/** The backends of `pids` are terminated (FATAL 57P01) and gone. */
async function terminate(pids: number[]): Promise<void> {
  await query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = ANY($1)', [pids]);
  await until(async () => (await query('SELECT 1 FROM pg_stat_activity WHERE pid = ANY($1)', [pids])).length === 0, 'the backends to exit');
}

/** Each of `values` was inserted into `table` exactly once, and nothing else. */
async function committedOnce(table: string, values: number[]): Promise<void> {
  const rows = await query<{ n: number; c: number }>(`SELECT n, count(*)::int AS c FROM ${table} GROUP BY n ORDER BY n`);
  assert.deepEqual(
    rows,
    values.map((n) => ({ n, c: 1 })),
  );
}

async function closeAll(bg: PgBackground, proxy: TcpProxy | null): Promise<void> {
  await bg.close();
  await proxy?.close();
  await until(
    async () => (await query("SELECT 1 FROM pg_stat_activity WHERE application_name LIKE 'pg-background%' OR application_name LIKE 'pgbg:%'")).length === 0,
    'no backend of ours left',
  );
}

/** A PgBackground behind a new proxy to the test server; both closed (and checked gone) after `body`. */
async function throughProxy(body: (bg: PgBackground, proxy: TcpProxy) => Promise<void>, options?: PgBackgroundOptions): Promise<void> {
  const proxy = await TcpProxy.start({ host: restartable.server.host, port: restartable.server.port });
  const bg = behind(proxy, options);
  try {
    await body(bg, proxy);
  } finally {
    await closeAll(bg, proxy);
  }
}

/**
 * throughProxy, with a table and one warm connection whose backend is terminated while the proxy
 * holds its FATAL back. `body` launches at once: the connection has idled a moment only, well
 * under CHECK_AFTER_IDLE_MS, so it is not checked (waiting for the backend to exit first could
 * take that long on a loaded machine). `gone` resolves once the backend has exited: the body
 * awaits it before it resumes the proxy, so that the task can reach no live backend.
 */
async function withDeadWarm(
  table: string,
  body: (bg: PgBackground, proxy: TcpProxy, oldPid: number, gone: Promise<void>) => Promise<void>,
  options?: PgBackgroundOptions,
): Promise<void> {
  await query(`CREATE TABLE ${table} (n int)`);
  await throughProxy(async (bg, proxy) => {
    const [oldPid] = await warm(bg, 1);
    proxy.freeze();
    const gone = terminate([oldPid!]);
    gone.catch(() => {}); // the body awaits it
    await body(bg, proxy, oldPid!, gone);
  }, options);
}

const inserts = (table: string, count: number) => Array.from({ length: count }, (_, i) => `INSERT INTO ${table} VALUES (${i}) RETURNING n`);

/** Launches every SQL at once, with nothing in between (no event loop turn), and reads each result. */
async function launchAll(bg: PgBackground, sqls: string[]): Promise<unknown[]> {
  const launches = sqls.map((sql) => bg.launch(sql));
  const handles = await Promise.all(launches);
  return Promise.all(handles.map((h) => bg.result(h).toArray()));
}

test('after a fast restart, warm connections whose FATAL is still unread are replaced: the next 10 launches all run, once', async () => {
  const table = 'warm_fast';
  await query(`CREATE TABLE ${table} (n int)`);
  await throughProxy(
    async (bg, proxy) => {
      try {
        await warm(bg, 4);
        await delay(CHECK_AFTER_IDLE_MS); // they idle past the threshold, as across any restart
        // What the dying backends send (FATAL 57P01, then the end) is held back until the launches
        // are written, as when the event loop is busy while the server restarts.
        proxy.freeze();
        await restartable.server.stopServer('fast');
        restartable.dropAdmin();
        await restartable.server.startServer();
        proxy.resume();
        const results = await launchAll(bg, inserts(table, 10));
        assert.deepEqual(
          results,
          Array.from({ length: 10 }, (_, n) => [{ n }]),
        );
        await committedOnce(
          table,
          Array.from({ length: 10 }, (_, n) => n),
        );
        const stats = await bg.stats();
        assert.deepEqual([stats.workersCompleted, stats.workersFailed], [14, 0]);
      } finally {
        await restartable.server.startServer();
      }
    },
    { maxWorkers: 10 },
  );
});

test('after a crash restart the event loop was busy through, the next 10 launches all run, once', async () => {
  const table = 'warm_crash';
  await query(`CREATE TABLE ${table} (n int)`);
  const bg = new PgBackground({
    connectionString: restartable.server.url,
    maxWorkers: 10,
    livenessTimeoutMs: LIVENESS_MS,
    connectionTimeoutMillis: CONNECT_MS,
  });
  try {
    const pids = await warm(bg, 4);
    await delay(CHECK_AFTER_IDLE_MS);
    // A backend crashes: the server kills every other backend (WARNING 57P02, then the end)
    // and restarts. This process is blocked until the server accepts again without them.
    const victim = (await query<{ pid: number }>('SELECT pg_backend_pid() AS pid'))[0]!.pid;
    restartable.dropAdmin();
    process.kill(victim, 'SIGKILL');
    const waiter = `
      import pg from 'pg';
      for (const deadline = Date.now() + 30000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 20))) {
        const client = new pg.Client(process.env.URL);
        client.on('error', () => {});
        try {
          await client.connect();
          const { rows } = await client.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = ANY($1)', [JSON.parse(process.env.PIDS)]);
          await client.end();
          if (rows[0].n === 0) process.exit(0);
        } catch {}
      }
      process.exit(1);`;
    const waited = spawnSync(process.execPath, ['--input-type=module', '-e', waiter], {
      env: { ...process.env, URL: restartable.server.url, PIDS: JSON.stringify(pids) },
      encoding: 'utf8',
    });
    assert.equal(waited.status, 0, waited.stderr);
    const results = await launchAll(bg, inserts(table, 10));
    assert.deepEqual(
      results,
      Array.from({ length: 10 }, (_, n) => [{ n }]),
    );
    await committedOnce(
      table,
      Array.from({ length: 10 }, (_, n) => n),
    );
  } finally {
    await closeAll(bg, null);
  }
});

test('a silently dead warm link is checked before use: the launch runs on a new connection', async () => {
  const table = 'warm_silent';
  await query(`CREATE TABLE ${table} (n int)`);
  await throughProxy(async (bg, proxy) => {
    const [oldPid] = await warm(bg, 1);
    proxy.blackhole(); // no FIN, no RST: the idle link just goes nowhere; new links work
    await delay(CHECK_AFTER_IDLE_MS);
    const h = await bg.launch(`INSERT INTO ${table} VALUES (1) RETURNING n`);
    assert.notEqual(h.pid, oldPid);
    assert.deepEqual(await bg.result(h).toArray(), [{ n: 1 }]);
    await committedOnce(table, [1]);
  });
});

const failsWith = (h: WorkerHandle, sqlstate: string) => (e: unknown) => {
  assert.ok(e instanceof WorkerError, `a WorkerError, got ${String(e)}`);
  assert.deepEqual([e.sqlstate, e.pid], [sqlstate, h.pid]);
  return true;
};

test('a task whose connection sent FATAL 57P01 before parsing it runs again on a new connection; its handle stays valid', async () => {
  await withDeadWarm('warm_retry', async (bg, proxy, oldPid, gone) => {
    // Written at once (the connection idled a moment only, so it is not checked), then the
    // held-back FATAL arrives: the server never answered the task's Parse.
    const h = await bg.launch({ text: 'INSERT INTO warm_retry VALUES ($1) RETURNING n', values: [7] });
    assert.equal(h.pid, oldPid);
    await gone;
    proxy.resume();
    assert.deepEqual(await bg.result(h).toArray(), [{ n: 7 }]);
    const info = await bg.info(h);
    assert.equal(info.state, 'stopped');
    assert.notEqual(info.pid, oldPid);
    await committedOnce('warm_retry', [7]);
  });
});

test('a task that never ran, and then finds no server for its second try, ends in error saying it never ran', async () => {
  await withDeadWarm('warm_down', async (bg, proxy, _oldPid, gone) => {
    try {
      const h = await bg.launch({ text: 'INSERT INTO warm_down VALUES ($1) RETURNING n', values: [1] });
      await gone;
      await restartable.server.stopServer('fast');
      restartable.dropAdmin();
      proxy.resume(); // the FATAL arrives; the new connection the task then needs is refused
      await assert.rejects(bg.result(h).toArray(), failsWith(h, '08006'));
      const error = await bg.errorInfo(h);
      assert.match(
        error!.message,
        /^the task never ran: its connection had died \(terminating connection due to administrator command\) and no new one could be opened: /,
      );
      assert.equal((await bg.info(h)).state, 'error');
      await restartable.server.startServer();
      await committedOnce('warm_down', []);
    } finally {
      await restartable.server.startServer();
    }
  });
});

test('a task with settings whose connection died before their round trip was answered runs on a new connection', async () => {
  await withDeadWarm('warm_settings', async (bg, proxy, oldPid, gone) => {
    // The settings go first, in their own round trip: the task itself was never written.
    const launching = bg.launch("INSERT INTO warm_settings SELECT 1 WHERE current_setting('work_mem') = '4321kB' RETURNING n", {
      settings: { work_mem: '4321kB' },
    });
    await gone;
    proxy.resume();
    const h = await launching;
    assert.notEqual(h.pid, oldPid);
    assert.deepEqual(await bg.result(h).toArray(), [{ n: 1 }]);
    await committedOnce('warm_settings', [1]);
  });
});

test('a live warm connection that idled past the threshold passes its check and is reused', async () => {
  await throughProxy(async (bg, proxy) => {
    const [pid] = await warm(bg, 1);
    await delay(CHECK_AFTER_IDLE_MS);
    const h = await bg.launch('SELECT pg_backend_pid() AS pid');
    assert.deepEqual(await bg.result(h).toArray(), [{ pid }]);
  });
});

test('a simple-protocol task answered only by FATAL 57P01 may have run (a procedure can commit before any answer): its error stays', async () => {
  // Untagged: a single statement goes as one simple Query (tagged, the tag's Parse leads).
  await withDeadWarm(
    'warm_simple',
    async (bg, proxy, _oldPid, gone) => {
      const h = await bg.launch('INSERT INTO warm_simple VALUES (1) RETURNING n');
      await gone;
      proxy.resume();
      await assert.rejects(bg.result(h).toArray(), failsWith(h, '57P01'));
      assert.equal((await bg.info(h)).state, 'error');
      await committedOnce('warm_simple', []);
    },
    { tagConnections: false },
  );
});

test("a tagged task answered only by FATAL 57P01 never ran (its tag's Parse went first): it runs on a new connection", async () => {
  await withDeadWarm('warm_tagged', async (bg, proxy, oldPid, gone) => {
    const h = await bg.launch('INSERT INTO warm_tagged VALUES (1) RETURNING n');
    await gone;
    proxy.resume();
    assert.deepEqual(await bg.result(h).toArray(), [{ n: 1 }]);
    const info = await bg.info(h);
    assert.deepEqual([info.state, info.pid === oldPid], ['stopped', false]); // the second try's backend
    await committedOnce('warm_tagged', [1]);
  });
});

test('a task whose connection ended with nothing sent back may have run: its error stays (08006, outcome unknown)', async () => {
  await query('CREATE TABLE warm_eof (n int)');
  await throughProxy(async (bg, proxy) => {
    await warm(bg, 1);
    proxy.freeze();
    const h = await bg.launch({ text: 'INSERT INTO warm_eof VALUES ($1) RETURNING n', values: [1] });
    proxy.drop(); // the link resets: zero bytes came back, which proves nothing
    await assert.rejects(bg.result(h).toArray(), failsWith(h, '08006'));
    assert.equal((await bg.info(h)).state, 'error');
    await committedOnce('warm_eof', []);
  });
});

test('a task terminated after the server parsed it keeps its error (57P01), on its own connection', async () => {
  await throughProxy(async (bg, proxy) => {
    await warm(bg, 1);
    const h = await bg.launch({ text: 'SELECT pg_sleep($1)', values: [30] });
    await until(async () => (await query("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event = 'PgSleep'", [h.pid])).length, 'the task to sleep');
    await terminate([h.pid]);
    await assert.rejects(bg.result(h).toArray(), failsWith(h, '57P01'));
    const info = await bg.info(h);
    assert.deepEqual([info.state, info.pid], ['error', h.pid]);
  });
});

test("a notice raised by the task's own Parse counts as an answer: it proves the task was read, never that it was not", async () => {
  const { WorkerConnection } = await import('../src/pool/worker-connection.js');
  const { RowQueue } = await import('../src/results/row-queue.js');
  const { TaskQuery } = await import('../src/results/task-query.js');
  const { planTask } = await import('../src/plan/task-plan.js');
  const { provesNeverRan } = await import('../src/results/error-info.js');
  const connection = await WorkerConnection.open({ connectionString: restartable.server.url, application_name: 'pg-background test' }, 10_000);
  try {
    const notices: string[] = [];
    connection.onNotice = { notice: (notice) => void notices.push(notice.code ?? '') };
    // Identifiers are cut to 63 bytes: the lexer says so (NOTICE 42622) while the server parses.
    const plan = planTask({ text: `SELECT $1::int AS ${'x'.repeat(70)}`, values: [1] });
    const query = new TaskQuery(plan, { queue: new RowQueue(65536), columns() {} }, null);
    connection.run(query);
    assert.equal((await query.done).error, null);
    assert.deepEqual(notices, ['42622']);
    assert.equal(connection.firstAnswer, 0x31);
    // Were the connection to die now, that first answer proves nothing was skipped: no second try.
    const fatal = Object.assign(new pg.DatabaseError('terminating connection due to administrator command', 0, 'error'), { code: '57P01', severity: 'FATAL' });
    assert.equal(provesNeverRan(fatal, connection.firstAnswer, true), false);
  } finally {
    await connection.close();
  }
});
