// Control from SQL (migration 3): pg_background_cancel_worker, _pause_worker and _resume_worker
// called in plain SQL by this process on the workers of a second, spawned process (the owner,
// test/support/control-child.ts). Through the owner (it listens on its control connection) a
// cancel ends the worker 'canceled' and nothing commits; the worker of an owner killed with
// SIGKILL is stopped by another instance's handler, or by the function itself when nobody
// listens; grace_ms is honoured before the terminate; a wrong cookie, and pause or resume of a
// running worker, return false and send nothing; a role that could not pg_cancel_backend the
// worker is refused with 42501 (and a request it forges with pg_notify is ignored by the owner).
// With a journal table, pending workers are found there and their owner is the one it names.
// Behind a transaction pooler an instance does not listen, and the function acts directly.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { PgBackground, type PgBackgroundOptions } from 'pg-background';
import { until, useDatabase } from './support/database.js';
import { pgBouncerBinary, startPgBouncer } from './support/pgbouncer.js';
import { CONTROL_CHANNEL, CONTROL_LISTENER_KEY } from '../src/catalog.js';
import { ACK_WAIT_MS, tagPrefix } from '../src/control/remote-control.js';
import { workerTag } from '../src/store/worker-identity.js';

const q = pg.escapeIdentifier;
const suffix = randomBytes(3).toString('hex');
/** The owner's role: no superuser (pg_signal_backend cannot signal a superuser's backend). */
const ownerRole = `pgbg_control_owner_${suffix}`;
const stranger = `pgbg_control_stranger_${randomBytes(3).toString('hex')}`;
const signaller = `pgbg_control_signaller_${randomBytes(3).toString('hex')}`;
const db = useDatabase(import.meta.filename, {
  async setup(db) {
    await db.query('CREATE TABLE control_marks (mark text)');
    await db.query(`CREATE ROLE ${q(ownerRole)} LOGIN PASSWORD 'owner'`);
    await db.query(`GRANT SELECT, INSERT ON control_marks TO ${q(ownerRole)}`);
    await db.query(`CREATE ROLE ${q(stranger)} LOGIN PASSWORD 'stranger'`);
    await db.query(`CREATE ROLE ${q(signaller)} LOGIN PASSWORD 'signaller' IN ROLE pg_signal_backend`);
    const bg = db.background();
    await bg.install();
    await bg.close();
  },
  async teardown(db) {
    for (const role of [ownerRole, stranger, signaller]) {
      await db.query(`DROP OWNED BY ${q(role)} CASCADE`);
      await db.query(`DROP ROLE ${q(role)}`);
    }
  },
});

const CHILD = fileURLToPath(new URL('./support/control-child.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('..', import.meta.url));

interface End {
  label: string;
  state: string;
  sqlstate: string | null;
}

interface Owner {
  child: ChildProcess;
  cookies: bigint[];
  pids: number[];
  /** Each worker's end as the owner reports it, by label. */
  ends: Map<string, Promise<End>>;
  /** What it wrote on stderr so far (its warnings). */
  stderr(): string;
  kill(): Promise<void>;
}

/** `db.url` as another role. */
function urlAs(role: string, password: string): string {
  const url = new URL(db.url);
  url.username = role;
  url.password = password;
  return url.toString();
}

const children = new Set<ChildProcess>();
/** This process's instances of a test: one that failed must not go on listening into the next. */
const instances = new Set<PgBackground>();
function instance(options?: PgBackgroundOptions): PgBackground {
  const bg = db.background(options);
  instances.add(bg);
  return bg;
}
// Whatever a test left: its owners, and the workers they leave running (onCallerExit 'finish').
test.afterEach(async () => {
  await Promise.all([...instances].map((bg) => bg.close({ cancel: true })));
  instances.clear();
  await Promise.all([...children].map((child) => (child.exitCode === null && child.signalCode === null ? (child.kill('SIGKILL'), once(child, 'exit')) : null)));
  children.clear();
  await db.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'pgbg:%' AND datname = current_database()");
  await until(
    async () => (await db.query("SELECT 1 FROM pg_stat_activity WHERE application_name LIKE 'pgbg:%' AND datname = current_database()")).length === 0,
    'tagged backends to exit',
  );
  await until(async () => (await listening()) === 0, 'no control connection to listen');
});

/** Spawns the owner with `workers`, and waits until each runs its main statement, tagged, and the owner listens. */
async function spawnOwner(workers: { label: string; sql: string }[], listeners = 1): Promise<Owner> {
  const child = spawn(process.execPath, ['--conditions=pg-background-source', '--import', 'tsx', CHILD], {
    cwd: ROOT,
    env: {
      ...process.env,
      PGBG_CHILD_URL: urlAs(ownerRole, 'owner'),
      PGBG_CHILD_WORKERS: JSON.stringify(workers),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk));
  const resolvers = new Map<string, (end: End) => void>();
  const ends = new Map(workers.map((w) => [w.label, new Promise<End>((resolve) => resolvers.set(w.label, resolve))]));
  const started = new Promise<{ cookies: string[]; pids: number[] }>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      out += chunk;
      const lines = out.split('\n');
      out = lines.pop()!;
      for (const line of lines) {
        const message = JSON.parse(line) as { cookies?: string[]; pids?: number[] } & Partial<End>;
        if (message.cookies) resolve(message as { cookies: string[]; pids: number[] });
        else resolvers.get(message.label!)!(message as End);
      }
    });
    child.once('exit', (code) => reject(new Error(`the owner exited (${code}) before its workers ran: ${stderr}`)));
  });
  const { cookies, pids } = await started;
  const owner: Owner = {
    child,
    cookies: cookies.map(BigInt),
    pids,
    ends,
    stderr: () => stderr,
    async kill() {
      const exited = once(child, 'exit');
      child.kill('SIGKILL');
      await exited;
      children.delete(child);
    },
  };
  for (const [i, { label }] of workers.entries()) {
    const tag = workerTag(owner.cookies[i]!, label);
    await until(
      async () =>
        (await db.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND application_name = $2 AND wait_event = 'PgSleep'", [pids[i], tag])).length === 1,
      `worker ${label} to run its main statement, tagged`,
    );
  }
  await until(async () => (await listening()) === listeners, `${listeners} control connection(s) to listen`);
  return owner;
}

/** Sessions of this database that hear control requests. */
async function listening(): Promise<number> {
  const [row] = await db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1
        AND classid = $1 AND objid = $2 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
    [(CONTROL_LISTENER_KEY >> 32n).toString(), (CONTROL_LISTENER_KEY & 0xffffffffn).toString()],
  );
  return row!.n;
}

const marks = async (mark: string) => (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM control_marks WHERE mark = $1', [mark]))[0]!.n;
const backendGone = (pid: number) =>
  until(async () => (await db.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid])).length === 0, `backend ${pid} to exit`, 15_000);
const isActive = async (pid: number) => (await db.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND state = 'active'", [pid])).length === 1;

/**
 * The control requests sent while `work` runs: a session LISTENs on the channel, and a marker of
 * its own sent after `work` is the fence (notifications arrive in commit order).
 */
async function requestsDuring(work: () => Promise<void>): Promise<unknown[]> {
  const listener = await db.client();
  const heard: unknown[] = [];
  const fence = `fence-${randomBytes(4).toString('hex')}`;
  let fenced!: () => void;
  const done = new Promise<void>((resolve) => (fenced = resolve));
  listener.on('notification', (message) => {
    if (message.payload === fence) fenced();
    else heard.push(JSON.parse(message.payload!));
  });
  await listener.query(`LISTEN ${CONTROL_CHANNEL}`);
  await work();
  await db.query('SELECT pg_notify($1, $2)', [CONTROL_CHANNEL, fence]);
  await done;
  await listener.end();
  return heard;
}

const sleeper = (mark: string) => `INSERT INTO control_marks VALUES ('${mark}'); SELECT pg_sleep(60)`;

test('a second process cancels the owner’s worker with pg_background_cancel_worker(cookie): true, the owner ends it canceled, nothing commits', async () => {
  const owner = await spawnOwner([{ label: 'etl/one', sql: sleeper('one') }]);
  const psql = await db.client();
  const asked = performance.now();
  const { rows } = await psql.query(`SELECT pg_background_cancel_worker(${owner.cookies[0]})`);
  const returned = performance.now();
  assert.deepEqual(rows, [{ pg_background_cancel_worker: true }]);
  assert.deepEqual(await owner.ends.get('etl/one'), { label: 'etl/one', state: 'canceled', sqlstate: '57014' });
  console.log(
    `[sql-control] through the owner: the function returned in ${(returned - asked).toFixed(1)} ms, the owner reported canceled ${(performance.now() - asked).toFixed(1)} ms after the call`,
  );
  assert.equal(await marks('one'), 0);
  await psql.end();
  await owner.kill();
});

test('SELECT pg_background_cancel_worker(cookie) FROM (the tagged workers) WHERE label LIKE ... cancels just those', async () => {
  const owner = await spawnOwner([
    { label: 'etl/a', sql: sleeper('etl/a') },
    { label: 'etl/b', sql: sleeper('etl/b') },
    { label: 'report/c', sql: sleeper('report/c') },
  ]);
  const rows = await db.query(`SELECT label, pg_background_cancel_worker(cookie) AS canceled
      FROM (SELECT ('x' || substr(application_name, 6, 16))::bit(64)::int8 AS cookie, substr(application_name, 23) AS label
              FROM pg_stat_activity WHERE application_name LIKE 'pgbg:%' AND datname = current_database()) AS workers
     WHERE label LIKE 'etl/%' ORDER BY label`);
  assert.deepEqual(rows, [
    { label: 'etl/a', canceled: true },
    { label: 'etl/b', canceled: true },
  ]);
  assert.deepEqual(await owner.ends.get('etl/a'), { label: 'etl/a', state: 'canceled', sqlstate: '57014' });
  assert.deepEqual(await owner.ends.get('etl/b'), { label: 'etl/b', state: 'canceled', sqlstate: '57014' });
  assert.equal(await isActive(owner.pids[2]!), true, 'report/c runs on');
  assert.deepEqual([await marks('etl/a'), await marks('etl/b')], [0, 0]);
  await owner.kill();
});

test('a wrong cookie returns false and sends nothing; pause and resume of a running worker return false', async () => {
  const owner = await spawnOwner([{ label: 'keep', sql: sleeper('keep') }]);
  const wrong = owner.cookies[0]! ^ 1n;
  const heard = await requestsDuring(async () => {
    assert.deepEqual(await db.query(`SELECT pg_background_cancel_worker(${wrong}) AS r`), [{ r: false }]);
    assert.deepEqual(await db.query(`SELECT pg_background_cancel_worker(${wrong}, 0) AS r`), [{ r: false }]);
    assert.deepEqual(await db.query(`SELECT pg_background_pause_worker(${owner.cookies[0]}) AS r`), [{ r: false }]);
    assert.deepEqual(await db.query(`SELECT pg_background_resume_worker(${owner.cookies[0]}) AS r`), [{ r: false }]);
    assert.deepEqual(await db.query('SELECT pg_background_cancel_worker(NULL) AS r'), [{ r: false }]);
  });
  assert.deepEqual(heard, []);
  assert.equal(await isActive(owner.pids[0]!), true);
  await assert.rejects(db.query(`SELECT pg_background_cancel_worker(${owner.cookies[0]}, -1)`), {
    code: '22023',
    message: 'pg_background_cancel_worker: grace_ms must be 0 or more, got -1',
  });
  await owner.kill();
});

test('a role that could not pg_cancel_backend the worker is refused with 42501, for pause and resume too; pg_signal_backend may', async () => {
  const owner = await spawnOwner([{ label: 'guarded', sql: sleeper('guarded') }]);
  const as = async (role: string, password: string) => {
    const client = new pg.Client({ connectionString: urlAs(role, password) });
    await client.connect();
    return client;
  };
  const outsider = await as(stranger, 'stranger');
  const heard = await requestsDuring(async () => {
    for (const call of [
      `pg_background_cancel_worker(${owner.cookies[0]})`,
      `pg_background_pause_worker(${owner.cookies[0]})`,
      `pg_background_resume_worker(${owner.cookies[0]})`,
    ]) {
      const name = call.slice(0, call.indexOf('('));
      await assert.rejects(outsider.query(`SELECT ${call}`), {
        code: '42501',
        message: `${name}: permission denied to signal worker ${owner.cookies[0]}`,
        detail: `Its backend belongs to role "${ownerRole}"; role "${stranger}" could not pg_cancel_backend() it.`,
      });
    }
  });
  assert.deepEqual(heard, []);
  assert.equal(await isActive(owner.pids[0]!), true);
  // Requests forged with pg_notify are checked by the owner against their row, and ignored.
  const forge = (id: string) =>
    outsider.query('SELECT pg_notify($1, $2)', [
      CONTROL_CHANNEL,
      JSON.stringify({ v: 1, id, schema: 'public', action: 'cancel', cookie: owner.cookies[0]!.toString(), pid: owner.pids[0], handler: 0 }),
    ]);
  await forge('00000000-0000-4000-8000-000000000000');
  await until(() => owner.stderr().includes('was ignored: it names no request of a table pg-background trusts'), 'the owner to ignore a request without a row');
  await assert.rejects(
    outsider.query(`INSERT INTO pg_background_control_requests (requester, action, cookie, grace_ms) VALUES ($1, 'cancel', $2, 0)`, [
      ownerRole,
      owner.cookies[0]!.toString(),
    ]),
    { code: '42501', message: 'new row violates row-level security policy for table "pg_background_control_requests"' },
  );
  const [own] = (
    await outsider.query<{ id: string }>(`INSERT INTO pg_background_control_requests (action, cookie, grace_ms) VALUES ('cancel', $1, 0) RETURNING id`, [
      owner.cookies[0]!.toString(),
    ])
  ).rows;
  await forge(own!.id);
  await until(() => owner.stderr().includes("was ignored: its requester may not signal the worker's backend"), 'the owner to refuse the stranger’s request');
  assert.equal(await isActive(owner.pids[0]!), true);
  // A request naming the stranger's own backend, which carries a copy of the worker's tag: the
  // owner judges the right against its worker's backend, not the one the notification names.
  const refusals = () => owner.stderr().split("its requester may not signal the worker's backend").length - 1;
  await outsider.query(`SET application_name = '${tagPrefix(owner.cookies[0]!)}copy'`);
  const ownPid = (await outsider.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
  const [copied] = (
    await outsider.query<{ id: string }>(`INSERT INTO pg_background_control_requests (action, cookie, grace_ms) VALUES ('cancel', $1, 0) RETURNING id`, [
      owner.cookies[0]!.toString(),
    ])
  ).rows;
  await outsider.query('SELECT pg_notify($1, $2)', [
    CONTROL_CHANNEL,
    JSON.stringify({ v: 1, id: copied!.id, schema: 'public', action: 'cancel', cookie: owner.cookies[0]!.toString(), pid: ownPid, handler: 0 }),
  ]);
  await until(() => refusals() === 2, 'the owner to refuse the request naming a backend with a copied tag');
  assert.equal(await isActive(owner.pids[0]!), true);
  await outsider.end();
  // pg_signal_backend's members may: the owner's worker ends canceled.
  const member = await as(signaller, 'signaller');
  assert.deepEqual((await member.query(`SELECT pg_background_cancel_worker(${owner.cookies[0]}) AS r`)).rows, [{ r: true }]);
  assert.deepEqual(await owner.ends.get('guarded'), { label: 'guarded', state: 'canceled', sqlstate: '57014' });
  assert.equal(await marks('guarded'), 0);
  // …but not a superuser's backend (a session tagged by hand, as the test's superuser).
  const superuser = await db.client();
  const superCookie = -42n;
  await superuser.query(`SET application_name = '${tagPrefix(superCookie)}root'`);
  await assert.rejects(member.query(`SELECT pg_background_cancel_worker(${superCookie})`), {
    code: '42501',
    detail: `Its backend belongs to role "${new URL(db.url).username}"; role "${signaller}" could not pg_cancel_backend() it.`,
  });
  assert.equal((await db.query('SELECT rolsuper FROM pg_roles WHERE rolname = current_user'))[0]!.rolsuper, true);
  await superuser.end();
  await member.end();
  await owner.kill();
});

test('an owner killed with SIGKILL and nobody listening: the function itself stops the worker, nothing commits', async () => {
  const owner = await spawnOwner([{ label: 'orphan', sql: sleeper('orphan') }]);
  await owner.kill();
  await until(async () => (await listening()) === 0, 'the killed owner to stop listening');
  assert.equal(await isActive(owner.pids[0]!), true, 'the orphaned worker runs on (onCallerExit finish)');
  const asked = performance.now();
  assert.deepEqual(await db.query(`SELECT pg_background_cancel_worker(${owner.cookies[0]}) AS r`), [{ r: true }]);
  const returned = performance.now() - asked;
  await backendGone(owner.pids[0]!);
  console.log(`[sql-control] nobody listening: the function stopped the backend itself and returned in ${returned.toFixed(1)} ms`);
  assert.equal(await marks('orphan'), 0);
});

test('an owner killed with SIGKILL, another instance listening: its handler stops the worker after the ack wait, nothing commits', async () => {
  const owner = await spawnOwner([{ label: 'adopted', sql: sleeper('adopted') }]);
  const other = instance();
  const h = await other.launch('SELECT 1');
  await other.wait(h);
  await until(async () => (await listening()) === 2, 'the second instance to listen');
  await owner.kill();
  await until(async () => (await listening()) === 1, 'the killed owner to stop listening');
  let asked = 0;
  const heard = await requestsDuring(async () => {
    asked = performance.now();
    assert.deepEqual(await db.query(`SELECT pg_background_cancel_worker(${owner.cookies[0]}) AS r`), [{ r: true }]);
  });
  assert.equal(heard.length, 1);
  await backendGone(owner.pids[0]!);
  const took = performance.now() - asked;
  // The handler waited for the dead owner's ack first.
  assert.ok(took >= ACK_WAIT_MS, `stopped ${took.toFixed(0)} ms after the call, within the ${ACK_WAIT_MS} ms ack wait`);
  console.log(`[sql-control] owner dead, another instance handled it: backend gone ${took.toFixed(0)} ms after the call (ack wait ${ACK_WAIT_MS} ms)`);
  assert.equal(await marks('adopted'), 0);
  await other.close();
});

const stubborn = (mark: string) =>
  `INSERT INTO control_marks VALUES ('${mark}');
   DO $$BEGIN LOOP BEGIN PERFORM pg_sleep(60); EXCEPTION WHEN query_canceled THEN INSERT INTO control_marks VALUES ('${mark} cancel ignored'); END; END LOOP; END $$`;

test('grace_ms: a worker that ignores the cancel is terminated once the grace passed, through the owner and directly', async () => {
  const owner = await spawnOwner([{ label: 'stubborn', sql: stubborn('stubborn') }]);
  const asked = Date.now();
  assert.deepEqual(await db.query(`SELECT pg_background_cancel_worker(${owner.cookies[0]}, 400) AS r`), [{ r: true }]);
  assert.deepEqual(await owner.ends.get('stubborn'), { label: 'stubborn', state: 'canceled', sqlstate: '57P01' });
  const took = Date.now() - asked;
  assert.ok(took >= 400, `terminated after ${took} ms, before the 400 ms grace`);
  assert.equal(await marks('stubborn'), 0);
  await owner.kill();

  const orphaned = await spawnOwner([{ label: 'stubborn orphan', sql: stubborn('stubborn orphan') }]);
  await orphaned.kill();
  await until(async () => (await listening()) === 0, 'the killed owner to stop listening');
  const started = Date.now();
  assert.deepEqual(await db.query(`SELECT pg_background_cancel_worker(${orphaned.cookies[0]}, 300) AS r`), [{ r: true }]);
  const returned = Date.now() - started;
  assert.ok(returned >= 300, `the function returned after ${returned} ms, before the 300 ms grace`);
  await backendGone(orphaned.pids[0]!);
  assert.equal(await marks('stubborn orphan'), 0);
});

/** The pid of the only session that listens for control requests. */
async function listenerPid(): Promise<number> {
  const rows = await db.query<{ pid: number }>(
    `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 AND classid = $1 AND objid = $2
        AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
    [(CONTROL_LISTENER_KEY >> 32n).toString(), (CONTROL_LISTENER_KEY & 0xffffffffn).toString()],
  );
  assert.equal(rows.length, 1);
  return rows[0]!.pid;
}

/** A schema with the functions and a journal table of the columns they read (the journal's own migration is another's). */
async function journaled(schema: string): Promise<string> {
  const bg = db.background();
  await db.query(`CREATE SCHEMA ${schema}`);
  await bg.install({ schema });
  await bg.close();
  await db.query(`GRANT USAGE ON SCHEMA ${schema} TO PUBLIC`);
  await db.query(`CREATE TABLE ${schema}.pg_background_journal (cookie int8 PRIMARY KEY, pid int4, state text NOT NULL,
    owner_control_pid int4, owner_control_started int8, finished_at timestamptz)`);
  return schema;
}

test('with the journal: pause, resume and cancel of a pending worker go to the owner it names; with the owner gone they return false', async () => {
  const s = await journaled('journal_pending');
  const owner = await spawnOwner([{ label: 'beside', sql: sleeper('beside') }]);
  const control = await listenerPid();
  const cookie = 77n;
  await db.query(`INSERT INTO ${s}.pg_background_journal VALUES ($1, 0, 'pending', $2, 0)`, [cookie.toString(), control]);
  const request = (action: string) => ({ v: 1, id: '', schema: s, action, cookie: cookie.toString(), pid: 0, handler: control });
  const call = async (sql: string) => (await db.query<{ r: boolean }>(`SELECT ${s}.${sql} AS r`))[0]!.r;
  let heard = await requestsDuring(async () => {
    assert.equal(await call(`pg_background_resume_worker(${cookie})`), false); // pending: nothing to resume
    assert.equal(await call(`pg_background_pause_worker(${cookie})`), true);
    await db.query(`UPDATE ${s}.pg_background_journal SET state = 'paused'`);
    assert.equal(await call(`pg_background_pause_worker(${cookie})`), false); // already paused
    assert.equal(await call(`pg_background_resume_worker(${cookie})`), true);
    assert.equal(await call(`pg_background_cancel_worker(${cookie}, 250)`), true);
  });
  assert.deepEqual(
    heard.map((r) => ({ ...(r as object), id: '' })),
    [request('pause'), request('resume'), request('cancel')],
  );
  // A pending worker is judged by its owner's role; one who may not read the journal does not see it.
  const outsider = new pg.Client({ connectionString: urlAs(stranger, 'stranger') });
  await outsider.connect();
  assert.deepEqual((await outsider.query(`SELECT ${s}.pg_background_resume_worker(${cookie}) AS r`)).rows, [{ r: false }]);
  await db.query(`GRANT SELECT ON ${s}.pg_background_journal TO ${q(stranger)}`);
  await assert.rejects(outsider.query(`SELECT ${s}.pg_background_resume_worker(${cookie})`), {
    code: '42501',
    message: `pg_background_resume_worker: permission denied to signal worker ${cookie}`,
    detail: `Its backend belongs to role "${ownerRole}"; role "${stranger}" could not pg_cancel_backend() it.`,
  });
  await outsider.end();
  await owner.kill();
  await until(async () => (await listening()) === 0, 'the killed owner to stop listening');
  heard = await requestsDuring(async () => {
    for (const fn of ['pause', 'resume', 'cancel']) assert.equal(await call(`pg_background_${fn}_worker(${cookie})`), false, fn);
  });
  assert.deepEqual(heard, []);
});

test('with the journal: a running worker whose owner the journal names is dead is stopped by the function itself, though another instance listens', async () => {
  const s = await journaled('journal_running');
  const owner = await spawnOwner([{ label: 'orphan/j', sql: sleeper('orphan/j') }]);
  await db.query(`INSERT INTO ${s}.pg_background_journal VALUES ($1, $2, 'running', $3, 0)`, [
    owner.cookies[0]!.toString(),
    owner.pids[0],
    await listenerPid(),
  ]);
  const other = instance();
  await other.wait(await other.launch('SELECT 1'));
  await until(async () => (await listening()) === 2, 'the second instance to listen');
  await owner.kill();
  await until(async () => (await listening()) === 1, 'the killed owner to stop listening');
  const heard = await requestsDuring(async () => {
    assert.deepEqual(await db.query(`SELECT ${s}.pg_background_cancel_worker(${owner.cookies[0]}, 1000) AS r`), [{ r: true }]);
  });
  assert.deepEqual(heard, []);
  await backendGone(owner.pids[0]!);
  assert.equal(await marks('orphan/j'), 0);
  await other.close();
});

test('behind a transaction pooler an instance cannot LISTEN: it does not say it listens, and the function stops its worker directly (error 57014, nothing committed)', async () => {
  const pooler = await startPgBouncer(pgBouncerBinary(), db.url, { mode: 'transaction', poolSize: 4 });
  const bg = new PgBackground({ connectionString: pooler.url(db.url) });
  try {
    const h = await bg.launch(sleeper('pooled'), { label: 'pooled' });
    await until(
      async () =>
        (await db.query("SELECT 1 FROM pg_stat_activity WHERE application_name = $1 AND wait_event = 'PgSleep'", [workerTag(h.cookie, 'pooled')])).length === 1,
      'the pooled worker to run its main statement, tagged',
    );
    // Its control connection has served (the launch opened it), yet holds no listener lock.
    await until(
      async () => (await db.query("SELECT 1 FROM pg_stat_activity WHERE application_name = 'pgbg:control' AND datname = current_database()")).length > 0,
      'the control connection',
    );
    assert.equal(await listening(), 0);
    assert.deepEqual(await db.query(`SELECT pg_background_cancel_worker(${h.cookie}) AS r`), [{ r: true }]);
    await bg.wait(h);
    assert.deepEqual([(await bg.info(h)).state, (await bg.errorInfo(h))?.sqlstate], ['error', '57014']);
    assert.equal(await marks('pooled'), 0);
  } finally {
    await bg.close({ cancel: true });
    await pooler.stop();
  }
});

test('one-shot sessions (psql -c) that disconnect right after their cancel are heard: the owner ends all twelve canceled', async () => {
  const workers = Array.from({ length: 12 }, (_, i) => ({ label: `oneshot/${i}`, sql: sleeper(`oneshot/${i}`) }));
  const owner = await spawnOwner(workers);
  await Promise.all(
    owner.cookies.map(async (cookie) => {
      const psql = new pg.Client({ connectionString: db.url });
      await psql.connect();
      assert.deepEqual((await psql.query(`SELECT pg_background_cancel_worker(${cookie})`)).rows, [{ pg_background_cancel_worker: true }]);
      await psql.end();
    }),
  );
  assert.deepEqual(
    await Promise.all(workers.map((w) => owner.ends.get(w.label))),
    workers.map((w) => ({ label: w.label, state: 'canceled', sqlstate: '57014' })),
  );
  assert.equal(owner.stderr().includes('PGBG_CONTROL_REFUSED'), false);
  assert.equal(await marks('oneshot/0'), 0);
  await owner.kill();
});

test('install() keeps its requests table and repairs a dropped control function; a requests table not its own is refused', async () => {
  await db.query('CREATE SCHEMA repaired');
  const bg = instance();
  await bg.install({ schema: 'repaired' });
  const table = async () =>
    db.query(
      "SELECT oid::int, relrowsecurity, relforcerowsecurity, obj_description(oid, 'pg_class') AS comment FROM pg_class WHERE oid = 'repaired.pg_background_control_requests'::regclass",
    );
  const before = await table();
  assert.deepEqual(
    before.map(({ oid: _, ...rest }) => rest),
    [{ relrowsecurity: true, relforcerowsecurity: true, comment: 'pg-background control requests: one row per control request sent to an instance' }],
  );
  await db.query('DROP FUNCTION repaired.pg_background_pause_worker(int8)');
  await bg.install({ schema: 'repaired' });
  assert.deepEqual(await table(), before);
  assert.deepEqual(await db.query('SELECT repaired.pg_background_pause_worker(1) AS r'), [{ r: false }]);

  await db.query('CREATE SCHEMA squatted');
  await db.query(
    'CREATE TABLE squatted.pg_background_control_requests (id uuid, requester name, action text, cookie int8, grace_ms int4, requested_at timestamptz)',
  );
  await assert.rejects(bg.install({ schema: 'squatted' }), {
    code: 'PGBG_INSTALL_FAILED',
    sqlstate: '42P07',
    message:
      'install() failed: install(): table "squatted".pg_background_control_requests already exists and is not pg-background\'s own (the current user\'s, marked, with row level security); pg-background will not use it',
  });
  assert.deepEqual(await db.query("SELECT count(*)::int AS n FROM pg_proc WHERE pronamespace = 'squatted'::regnamespace"), [{ n: 0 }]);
  await bg.close();
});

test('end to end with the journal: pg_background_pause_worker holds a pending worker of an instance past a freed slot, pg_background_resume_worker lets it run', async (t) => {
  await db.query('CREATE SCHEMA e2e');
  // The instance finds its journal on its search_path; the functions of that schema read it.
  const bg = instance({ journal: true, maxWorkers: 1, whenFull: 'queue', options: '-c search_path=e2e' });
  await bg.install({ schema: 'e2e', journal: true });
  const holder = new pg.Client({ connectionString: db.url });
  await holder.connect();
  t.after(() => holder.end());
  await holder.query('SELECT pg_advisory_lock(4242)');
  const blocker = await bg.launch('SELECT pg_advisory_lock(4242)', { label: 'e2e/blocker' });
  const launching = bg.launch("INSERT INTO public.control_marks VALUES ('e2e held')", { label: 'e2e/held' });
  const held = (await bg.list()).find((w) => w.label === 'e2e/held')!;
  assert.equal(held.state, 'pending');
  const viewState = async () => (await db.query<{ state: string }>('SELECT state FROM e2e.pg_background_workers WHERE cookie = $1', [held.cookie]))[0]?.state;
  await until(async () => (await viewState()) === 'pending', 'the journal to show the pending worker');
  const call = async (fn: string) => (await db.query<{ r: boolean }>(`SELECT e2e.pg_background_${fn}_worker($1) AS r`, [held.cookie]))[0]!.r;
  assert.equal(await call('pause'), true);
  await until(async () => (await bg.info(held)).state === 'paused', 'the owner to pause it');
  await until(async () => (await viewState()) === 'paused', 'the journal to show it paused');
  // The slot frees: the paused worker keeps waiting, nothing of it runs.
  await holder.query('SELECT pg_advisory_unlock(4242)');
  await bg.wait(blocker);
  assert.equal((await bg.info(held)).state, 'paused');
  assert.deepEqual(await db.query("SELECT * FROM control_marks WHERE mark = 'e2e held'"), []);
  assert.equal(await call('resume'), true);
  await bg.wait(await launching);
  assert.equal((await bg.info(held)).state, 'stopped');
  assert.deepEqual(await db.query("SELECT mark FROM control_marks WHERE mark = 'e2e held'"), [{ mark: 'e2e held' }]);
  await until(async () => (await viewState()) === 'stopped', 'the journal to show it stopped');
  assert.equal(await call('resume'), false); // finished: nothing to resume
  await bg.close();
});
