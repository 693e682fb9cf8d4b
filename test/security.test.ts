// Security: secrets never leak into anything the library produces; install() cannot be turned
// into a privilege escalation; `role` really runs the worker with that role's privileges.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, type Socket } from 'node:net';
import { inspect } from 'node:util';
import pg from 'pg';
import { PgBackground, PgBackgroundError, workerTag, type WorkerFinishedEvent, type WorkerNotice } from 'pg-background';
import { freePort } from '../scripts/local-postgres.js';
import { useDatabase } from './support/database.js';

const suffix = randomBytes(3).toString('hex');
const PASSWORD = 'S3cr3t-Pa55-xyzzy';
const WRONG_PASSWORD = 'Wr0ng-Pa55-plugh';
const secretRole = `pgbg_secret_${suffix}`;
const installer = `pgbg_installer_${suffix}`;
const INSTALLER_PASSWORD = `Inst4ller-${suffix}`;
const caller = `pgbg_caller_${suffix}`;
const reader = `pgbg_reader_${suffix}`;
const noLogin = `pgbg_nologin_${suffix}`;
const roles = [secretRole, installer, caller, reader, noLogin];
const q = pg.escapeIdentifier;

const db = useDatabase(import.meta.filename, {
  async setup(db) {
    await db.query(`CREATE ROLE ${q(secretRole)} LOGIN PASSWORD '${PASSWORD}'`);
    await db.query(`CREATE ROLE ${q(installer)} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD '${INSTALLER_PASSWORD}'`);
    await db.query(`CREATE ROLE ${q(caller)} NOLOGIN`);
    await db.query(`CREATE ROLE ${q(reader)} NOLOGIN`);
    await db.query(`CREATE ROLE ${q(noLogin)} NOLOGIN PASSWORD '${PASSWORD}'`);
  },
  async teardown(db) {
    // CASCADE: a schema a role owns may hold objects of others (a superuser's function).
    for (const role of roles) await db.query(`DROP OWNED BY ${q(role)} CASCADE`);
    for (const role of roles) await db.query(`DROP ROLE ${q(role)}`);
  },
});

/** The test database's URL with another user and password (and optionally port or database). */
function urlFor(user: string, password: string, change: { port?: number; database?: string } = {}): string {
  const url = new URL(db.url);
  url.username = encodeURIComponent(user);
  url.password = encodeURIComponent(password);
  if (change.port !== undefined) url.port = String(change.port);
  if (change.database !== undefined) url.pathname = `/${change.database}`;
  return url.toString();
}

/** Whether the server checks passwords: a trust server lets a wrong one in. */
async function serverChecksPasswords(): Promise<boolean> {
  const client = new pg.Client({ connectionString: urlFor(secretRole, WRONG_PASSWORD), application_name: 'pgbg-test-probe' });
  client.on('error', () => {});
  try {
    await client.connect();
    return false;
  } catch (error) {
    if ((error as { code?: unknown }).code === '28P01') return true;
    throw error;
  } finally {
    await client.end().catch(() => {});
  }
}

const withBigInts = (_key: string, value: unknown) => (typeof value === 'bigint' ? `${value}n` : value);

/** Every textual form a log line, an error report or a debugger could show of `value`. */
function renderings(value: unknown): string[] {
  const out = [
    inspect(value),
    inspect(value, { depth: 10 }),
    inspect(value, { showHidden: true, depth: 10 }),
    inspect(value, { showHidden: true, depth: 10, customInspect: false, getters: true }),
    JSON.stringify(value, withBigInts) ?? '',
  ];
  try {
    out.push(String(value));
  } catch {
    // a null-prototype object has no toString: nothing to render
  }
  if (value instanceof Error) {
    out.push(value.message, value.stack ?? '');
    for (let cause = value.cause, depth = 0; cause !== undefined && depth < 10; cause = (cause as Error).cause, depth++) {
      out.push(...renderings(cause));
    }
  }
  return out;
}

/** Secrets that must appear in no rendering: passwords, and whole connection strings. */
function secretsOf(...urls: string[]): string[] {
  const secrets = new Set<string>([PASSWORD, WRONG_PASSWORD, INSTALLER_PASSWORD]);
  for (const url of urls) {
    secrets.add(url);
    // user:password@ — also in a URL that does not parse
    const password = /^[a-z]+:\/\/[^:/@]*:([^@]*)@/i.exec(url)?.[1];
    if (password) {
      secrets.add(password);
      secrets.add(decodeURIComponent(password));
    }
  }
  return [...secrets];
}

function assertNoSecrets(what: string, value: unknown, secrets: readonly string[]): void {
  for (const text of renderings(value)) {
    for (const secret of secrets) {
      assert.ok(!text.includes(secret), `${what} reveals a secret (${secret.length > 30 ? 'a connection string' : 'a password'}):\n${text}`);
    }
  }
}

// ---- a) secrets ------------------------------------------------------------------------------------

test('a) failed connections: no password or connection string in errors, list(), events or the instance', async () => {
  const port = await freePort();
  // A wrong password fails with 28P01 where passwords are checked. A trust server asks for none,
  // so there the same secret goes with a role that may not log in, which every server refuses.
  const [wrongUser, wrongState] = (await serverChecksPasswords()) ? [secretRole, '28P01'] : [noLogin, '28000'];
  const scenarios: [string, Record<string, unknown>, string | undefined][] = [
    ['wrong port (URL)', { connectionString: urlFor(secretRole, PASSWORD, { port }) }, undefined],
    ['wrong port (fields)', { host: '127.0.0.1', port, user: secretRole, password: PASSWORD, database: db.name }, undefined],
    ['wrong password (URL)', { connectionString: urlFor(wrongUser, WRONG_PASSWORD) }, wrongState],
    [
      'wrong password (fields)',
      { host: new URL(db.url).hostname, port: Number(new URL(db.url).port), user: wrongUser, password: WRONG_PASSWORD, database: db.name },
      wrongState,
    ],
    ['no such database', { connectionString: urlFor(secretRole, PASSWORD, { database: `${db.name}_missing` }) }, '3D000'],
    ['malformed URL', { connectionString: urlFor(secretRole, PASSWORD).replace(/:\d+\//, ':99999/') }, undefined],
  ];
  for (const [name, options, sqlstate] of scenarios) {
    const secrets = secretsOf(...(typeof options.connectionString === 'string' ? [options.connectionString] : []), urlFor(secretRole, PASSWORD));
    const outcome = await (async () => {
      const bg = new PgBackground(options as never);
      const finished: WorkerFinishedEvent[] = [];
      bg.on('finished', (event) => finished.push(event));
      try {
        const error = await bg.launch('SELECT 1', { label: `secrets/${name}` }).then(
          () => assert.fail(`${name}: the launch succeeded`),
          (e: unknown) => e,
        );
        return {
          error,
          list: await bg.list(),
          stats: await bg.stats(),
          finished,
          bg: [String(bg), inspect(bg), inspect(bg, { showHidden: true, depth: 10 }), inspect(bg, { showHidden: true, depth: 10, customInspect: false })],
        };
      } finally {
        await bg.close();
      }
    })();
    const error = outcome.error as PgBackgroundError;
    assert.ok(error instanceof PgBackgroundError, `${name}: ${inspect(error)}`);
    assert.equal(error.code, 'PGBG_CONNECTION_FAILED', `${name}: ${error.message}`);
    if (sqlstate) assert.equal(error.sqlstate, sqlstate, name);
    // The failure is recorded where an operator looks: list() with lastError, and a finished event.
    assert.equal(outcome.list.length, 1, name);
    assert.equal(outcome.list[0]!.state, 'error', name);
    assert.ok(outcome.list[0]!.lastError, name);
    assert.deepEqual(
      outcome.finished.map((e) => e.state),
      ['error'],
      name,
    );
    for (const [what, value] of Object.entries(outcome)) assertNoSecrets(`${name}: ${what}`, value, secrets);
  }
});

test('a) install() that cannot connect or finish rejects with the library codes, never a raw error, and no secret', async () => {
  const port = await freePort();
  // A server that accepts connections and never says a word.
  const accepted: Socket[] = [];
  const silent = createServer((socket) => void accepted.push(socket));
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  const silentPort = (silent.address() as { port: number }).port;
  const scenarios: [string, Record<string, unknown>, string, string | undefined][] = [
    ['wrong port (URL)', { connectionString: urlFor(secretRole, PASSWORD, { port }) }, 'PGBG_CONNECTION_FAILED', undefined],
    ['wrong port (fields)', { host: '127.0.0.1', port, user: secretRole, password: PASSWORD, database: db.name }, 'PGBG_CONNECTION_FAILED', undefined],
    ['no such database', { connectionString: urlFor(secretRole, PASSWORD, { database: `${db.name}_missing` }) }, 'PGBG_CONNECTION_FAILED', '3D000'],
    ['malformed URL', { connectionString: urlFor(secretRole, PASSWORD).replace(/:\d+\//, ':99999/') }, 'PGBG_CONNECTION_FAILED', undefined],
    ['silent server', { connectionString: urlFor(secretRole, PASSWORD, { port: silentPort }), livenessTimeoutMs: 300 }, 'PGBG_CONNECTION_FAILED', undefined],
  ];
  if (await serverChecksPasswords()) {
    scenarios.push(['wrong password (URL)', { connectionString: urlFor(secretRole, WRONG_PASSWORD) }, 'PGBG_CONNECTION_FAILED', '28P01']);
  }
  try {
    for (const [name, options, code, sqlstate] of scenarios) {
      const secrets = secretsOf(...(typeof options.connectionString === 'string' ? [options.connectionString] : []), urlFor(secretRole, PASSWORD));
      const bg = new PgBackground(options as never);
      try {
        const error = (await bg.install().then(
          () => assert.fail(`${name}: install() succeeded`),
          (e: unknown) => e,
        )) as PgBackgroundError;
        assert.ok(error instanceof PgBackgroundError, `${name}: ${inspect(error)}`);
        assert.equal(error.code, code, `${name}: ${error.message}`);
        assert.equal(error.sqlstate, sqlstate, `${name}: ${error.message}`);
        assert.match(error.message, /^install\(\) could not connect: ./, name);
        assertNoSecrets(`${name}: install error`, error, secrets);
      } finally {
        await bg.close();
      }
    }
  } finally {
    for (const socket of accepted) socket.destroy();
    await new Promise((resolve) => silent.close(resolve));
  }

  // Connected, but the server does not answer in time (another session holds install()'s lock).
  await db.query(`GRANT CONNECT ON DATABASE ${q(db.name)} TO ${q(secretRole)}`);
  const locker = await db.client();
  await locker.query('SELECT pg_advisory_lock(7302948117394112)');
  // The connect gets longer than the 300 ms request deadline under test: a loaded machine may need it.
  const bg = new PgBackground({ connectionString: urlFor(secretRole, PASSWORD), livenessTimeoutMs: 300, connectionTimeoutMillis: 10_000 });
  try {
    const error = (await bg.install({ schema: 'pg_temp' }).catch((e: unknown) => e)) as PgBackgroundError;
    assert.ok(error instanceof PgBackgroundError, inspect(error));
    assert.equal(error.code, 'PGBG_INSTALL_FAILED', error.message);
    assert.equal(error.sqlstate, undefined);
    assert.match(error.message, /^install\(\) failed: the server did not answer within 300 ms; nothing was installed$/);
    assertNoSecrets('lock timeout: install error', error, secretsOf(urlFor(secretRole, PASSWORD)));
  } finally {
    await locker.query('SELECT pg_advisory_unlock(7302948117394112)');
    await bg.close();
  }
});

test('a) a working instance: no password or connection string in list(), events, results, worker errors, install errors or the instance', async () => {
  await db.query(`GRANT CONNECT ON DATABASE ${q(db.name)} TO ${q(secretRole)}`);
  await db.query('CREATE SCHEMA sealed');
  const url = urlFor(secretRole, PASSWORD);
  const secrets = secretsOf(url, db.url);
  // The detector itself works: a config object carrying the URL is caught.
  assert.throws(() => assertNoSecrets('control', { config: { connectionString: url } }, secrets), /reveals a secret/);
  const forms: [string, Record<string, unknown>][] = [
    ['URL', { connectionString: url }],
    ['fields', { host: new URL(db.url).hostname, port: Number(new URL(db.url).port), user: secretRole, password: PASSWORD, database: db.name }],
  ];
  for (const [name, options] of forms) {
    const bg = new PgBackground(options as never);
    const produced: Record<string, unknown> = {};
    const notices: WorkerNotice[] = [];
    const finished: WorkerFinishedEvent[] = [];
    bg.on('notice', (notice) => notices.push(notice));
    bg.on('finished', (event) => finished.push(event));
    try {
      const ok = await bg.launch(
        "DO $$ BEGIN RAISE NOTICE 'hello from %', current_user; RAISE WARNING 'careful'; END $$; SELECT current_user AS u, current_setting('application_name') AS app",
        { label: 'ok' },
      );
      produced.rows = await bg.result(ok).toArray();
      assert.deepEqual(produced.rows, [{ u: secretRole, app: workerTag(ok.cookie, 'ok') }]);
      const failing = await bg.launch('SELECT * FROM no_such_table', { label: 'failing' });
      produced.workerError = await bg
        .result(failing)
        .toArray()
        .catch((e: unknown) => e);
      assert.equal((produced.workerError as PgBackgroundError).code, 'PGBG_WORKER_FAILED');
      produced.errorInfo = await bg.errorInfo(failing);
      const sleeping = await bg.launch('SELECT pg_sleep(30)', { label: 'sleeping' });
      await bg.cancel(sleeping, { graceMs: 0 });
      produced.canceledError = await bg
        .result(sleeping)
        .toArray()
        .catch((e: unknown) => e);
      // install() in a schema the role may not create in: PGBG_INSTALL_FAILED with the server's error as cause.
      // (Not public: before PostgreSQL 15 every role may create in it.)
      produced.installError = await bg.install({ schema: 'sealed' }).catch((e: unknown) => e);
      assert.equal((produced.installError as PgBackgroundError).code, 'PGBG_INSTALL_FAILED');
      produced.unknownWorker = await bg.info({ pid: 1, cookie: 1n }).catch((e: unknown) => e);
      produced.invalid = await bg.launch('SELECT 1', { queueSize: 1 }).catch((e: unknown) => e);
      produced.list = await bg.list();
      produced.stats = await bg.stats();
      produced.info = await bg.info(ok);
      produced.notices = notices;
      produced.finished = finished;
      assert.equal(notices.length, 2);
      assert.equal(finished.length, 3);
      produced.instance = bg;
      for (const [what, value] of Object.entries(produced)) assertNoSecrets(`${name}: ${what}`, value, secrets);
    } finally {
      await bg.close();
    }
    produced.closedError = await bg.list().catch((e: unknown) => e);
    assertNoSecrets(`${name}: closed instance`, bg, secrets);
    assertNoSecrets(`${name}: PGBG_CLOSED`, produced.closedError, secrets);
  }
});

// ---- b) install() --------------------------------------------------------------------------------

/** The pg_background_progress functions of a schema, as the catalog has them. */
async function progressFunction(schema: string) {
  return db.query<{ oid: number; owner: string; prosecdef: boolean; proconfig: string[] | null; prosrc: string }>(
    `SELECT p.oid::int AS oid, pg_get_userbyid(p.proowner) AS owner, p.prosecdef, p.proconfig, p.prosrc
       FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
      WHERE n.nspname = $1 AND p.proname = 'pg_background_progress'`,
    [schema],
  );
}

test('b) install() by an unprivileged role: SECURITY INVOKER, search_path pinned, immune to a hostile search_path of its caller', async () => {
  await db.query(`CREATE SCHEMA tools AUTHORIZATION ${q(installer)}`);
  await db.query(`GRANT USAGE ON SCHEMA tools TO ${q(caller)}`);
  // A hostile schema: a fake json_build_object and fake < and > operators for integers, each
  // logging its use (a real attacker's would do something worse, with the caller's privileges).
  await db.query('CREATE SCHEMA evil');
  await db.query('CREATE TABLE evil.calls (what text)');
  await db.query(`GRANT USAGE ON SCHEMA evil TO PUBLIC; GRANT INSERT, SELECT ON evil.calls TO PUBLIC`);
  await db.query(`CREATE FUNCTION evil.json_build_object(text, integer, text, text) RETURNS json LANGUAGE plpgsql AS $$
    BEGIN INSERT INTO evil.calls VALUES ('json_build_object'); RETURN '{"pct": 13, "message": "pwned"}'::json; END $$`);
  for (const [op, name, real] of [
    ['<', 'lt', 'int4lt'],
    ['>', 'gt', 'int4gt'],
  ] as const) {
    await db.query(`CREATE FUNCTION evil.int_${name}(a integer, b integer) RETURNS boolean LANGUAGE plpgsql AS $$
      BEGIN INSERT INTO evil.calls VALUES ('${op}'); RETURN pg_catalog.${real}(a, b); END $$`);
    await db.query(`CREATE OPERATOR evil.${op} (LEFTARG = integer, RIGHTARG = integer, FUNCTION = evil.int_${name})`);
  }
  // Control: the same body without a pinned search_path falls for it.
  await db.query(`CREATE FUNCTION public.unpinned_progress(pct integer, msg text) RETURNS text LANGUAGE plpgsql AS $$
    BEGIN
      IF pct IS NULL OR pct < 0 OR pct > 100 THEN RAISE EXCEPTION 'bad pct' USING ERRCODE = '22023'; END IF;
      RETURN json_build_object('pct', pct, 'message', coalesce(msg, ''))::text;
    END $$`);

  const asInstaller = new PgBackground({ connectionString: urlFor(installer, INSTALLER_PASSWORD) });
  const superuser = db.background();
  try {
    await asInstaller.install({ schema: 'tools' });
    await asInstaller.install({ schema: 'tools' }); // idempotent, also for its owner
    const [fn] = await progressFunction('tools');
    assert.equal(fn!.owner, installer);
    assert.equal(fn!.prosecdef, false, 'SECURITY INVOKER');
    assert.deepEqual(fn!.proconfig, ['search_path=pg_catalog, pg_temp']);

    const hostile = { role: caller, settings: { search_path: 'evil, pg_catalog, public' }, fresh: true };
    const control = await superuser.launch("SELECT current_user AS u, public.unpinned_progress(42, 'hello') AS p", hostile);
    assert.deepEqual(
      (await superuser.result(control).toArray()).map((r) => r.u),
      [caller],
    );
    const fooled = (await db.query<{ what: string }>('SELECT DISTINCT what FROM evil.calls ORDER BY what')).map((r) => r.what);
    assert.ok(fooled.includes('<') && fooled.includes('>'), `the control must fall for the hostile search_path (it used: ${fooled.join(', ')})`);
    await db.query('TRUNCATE evil.calls');

    const h = await superuser.launch("SELECT tools.pg_background_progress(42, 'hello'); SELECT current_user AS u", hostile);
    assert.deepEqual(await superuser.result(h).toArray(), [{ u: caller }]);
    assert.deepEqual(await superuser.getProgress(h), { pct: 42, message: 'hello' });
    const out = await superuser.launch("SELECT tools.pg_background_progress(101, 'too far')", hostile);
    await superuser.wait(out);
    assert.equal((await superuser.errorInfo(out))?.sqlstate, '22023');
    assert.deepEqual(await db.query('SELECT what FROM evil.calls'), [], 'the installed function used an object of the hostile schema');
  } finally {
    await asInstaller.close();
  }
});

test("b) an unprivileged role's install() never replaces a function owned by someone else", async () => {
  // A schema the unprivileged role may create in, where the superuser already installed the function.
  await db.query('CREATE SCHEMA shared');
  await db.query(`GRANT USAGE, CREATE ON SCHEMA shared TO ${q(installer)}`);
  // And its own schema, in which a superuser put a pg_background_progress of its own.
  await db.query(`CREATE SCHEMA installer_own AUTHORIZATION ${q(installer)}`);
  await db.query("CREATE FUNCTION installer_own.pg_background_progress(pct integer, msg text) RETURNS void LANGUAGE sql AS 'SELECT NULL'");
  const superuser = db.background();
  await superuser.install({ schema: 'shared' });
  const sharedBefore = await progressFunction('shared');
  const ownBefore = await progressFunction('installer_own');
  assert.equal(sharedBefore[0]!.owner, new URL(db.url).username);

  const asInstaller = new PgBackground({ connectionString: urlFor(installer, INSTALLER_PASSWORD) });
  try {
    await assert.rejects(asInstaller.install({ schema: 'shared' }), (error: PgBackgroundError) => {
      assert.ok(error instanceof PgBackgroundError);
      assert.ok(error.code === 'PGBG_INSTALL_CONFLICT' || error.code === 'PGBG_INSTALL_FAILED', error.code);
      assert.match(error.message, /shared\.pg_background_progress\(integer,text\)/);
      assert.match(error.message, /owned by role "postgres"|not created by pg-background|permission denied|must be owner/);
      return true;
    });
    await assert.rejects(asInstaller.install({ schema: 'installer_own' }), (error: PgBackgroundError) => {
      assert.equal(error.code, 'PGBG_INSTALL_CONFLICT');
      assert.match(error.message, /installer_own\.pg_background_progress\(integer,text\) already exists and was not created by pg-background/);
      return true;
    });
  } finally {
    await asInstaller.close();
  }
  assert.deepEqual(await progressFunction('shared'), sharedBefore);
  assert.deepEqual(await progressFunction('installer_own'), ownBefore);
});

test("b) a superuser's install() does not adopt a function that an unprivileged role controls", async () => {
  // The unprivileged role installs first in a schema both may create in; its function carries
  // pg-background's marker but it is the role's to rewrite at will.
  await db.query('CREATE SCHEMA common');
  await db.query(`GRANT USAGE, CREATE ON SCHEMA common TO ${q(installer)}`);
  const asInstaller = new PgBackground({ connectionString: urlFor(installer, INSTALLER_PASSWORD) });
  try {
    await asInstaller.install({ schema: 'common' });
  } finally {
    await asInstaller.close();
  }
  assert.equal((await progressFunction('common'))[0]!.owner, installer);
  // A superuser now installs "its" progress function there. Whatever install() does, it must
  // not report success while the function stays under the unprivileged role's control: the
  // role could rewrite it, and as SECURITY INVOKER it would run with the privileges of every
  // superuser worker that reports progress.
  const superuser = db.background();
  const outcome = await superuser.install({ schema: 'common' }).then(
    () => 'installed',
    (error: PgBackgroundError) => error.code,
  );
  const [fn] = await progressFunction('common');
  assert.ok(
    outcome === 'PGBG_INSTALL_CONFLICT' || (outcome === 'installed' && fn!.owner === new URL(db.url).username),
    `install() as superuser answered ${outcome}, and the function is owned by ${fn!.owner}`,
  );
});

test("b) an unprivileged role's install() does not use a migrations table it does not own, nor trust its rows", async () => {
  // In the role's own schema, a superuser left a migrations table that claims migration 1 ran:
  // install() must neither skip the function on its word nor write to a table another role
  // (here a superuser) controls.
  await db.query(`CREATE SCHEMA own_tables AUTHORIZATION ${q(installer)}`);
  await db.query('CREATE TABLE own_tables.pg_background_migrations (id integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL)');
  await db.query("COMMENT ON TABLE own_tables.pg_background_migrations IS 'pg-background migrations: one row per schema migration install() applied'");
  await db.query("INSERT INTO own_tables.pg_background_migrations VALUES (1, 'progress function', '2020-01-01')");
  await db.query(`GRANT SELECT, INSERT ON own_tables.pg_background_migrations TO ${q(installer)}`);
  const asInstaller = new PgBackground({ connectionString: urlFor(installer, INSTALLER_PASSWORD) });
  try {
    await assert.rejects(asInstaller.install({ schema: 'own_tables' }), (error: PgBackgroundError) => {
      assert.equal(error.code, 'PGBG_INSTALL_CONFLICT');
      const superuser = new URL(db.url).username;
      assert.equal(
        error.message,
        `install(): table own_tables.pg_background_migrations already exists and is owned by role "${superuser}", not by the current user; pg-background will not use it. Install into another schema ({ schema }) or drop that table first.`,
      );
      return true;
    });
  } finally {
    await asInstaller.close();
  }
  assert.deepEqual(await progressFunction('own_tables'), []);
  assert.deepEqual(await db.query('SELECT id, name FROM own_tables.pg_background_migrations'), [{ id: 1, name: 'progress function' }]);
});

// ---- c) role --------------------------------------------------------------------------------------

test('c) role: a worker without SELECT on a table fails with 42501 (instance-level and per launch); list() shows the role as user', async () => {
  await db.query('CREATE TABLE classified (v text)');
  await db.query("INSERT INTO classified VALUES ('top secret')");
  await db.query('CREATE TABLE published (v text)');
  await db.query(`GRANT SELECT ON published TO ${q(reader)}`);
  const login = new URL(db.url).username;

  const instanceRole = db.background({ role: reader });
  const denied = await instanceRole.launch('SELECT v FROM classified', { label: 'denied' });
  await assert.rejects(instanceRole.result(denied).toArray(), {
    name: 'WorkerError',
    code: 'PGBG_WORKER_FAILED',
    sqlstate: '42501',
    message: /permission denied for table classified/,
  });
  const allowed = await instanceRole.launch('SELECT current_user AS u, count(*)::int AS n FROM published', { label: 'allowed' });
  assert.deepEqual(await instanceRole.result(allowed).toArray(), [{ u: reader, n: 0 }]);
  const writes = await instanceRole.launch("INSERT INTO published VALUES ('x')", { label: 'writes' });
  await instanceRole.wait(writes);
  assert.equal((await instanceRole.errorInfo(writes))?.sqlstate, '42501');
  assert.deepEqual(
    (await instanceRole.list()).map((w) => [w.label, w.user, w.state]),
    [
      ['writes', reader, 'error'],
      ['allowed', reader, 'stopped'],
      ['denied', reader, 'error'],
    ],
  );

  const perLaunch = db.background();
  const deniedHere = await perLaunch.launch('SELECT v FROM classified', { role: reader, label: 'denied per launch' });
  await perLaunch.wait(deniedHere);
  assert.equal((await perLaunch.errorInfo(deniedHere))?.sqlstate, '42501');
  // The same connection without a role: the login's privileges again (the role was undone).
  const asLogin = await perLaunch.launch('SELECT current_user AS u, v FROM classified', { label: 'as login' });
  assert.deepEqual(await perLaunch.result(asLogin).toArray(), [{ u: login, v: 'top secret' }]);
  // A per-launch role overrides the instance's.
  const overridden = await instanceRole.launch('SELECT current_user AS u', { role: login, label: 'overridden' });
  assert.deepEqual(await instanceRole.result(overridden).toArray(), [{ u: login }]);
  assert.deepEqual(
    (await perLaunch.list()).map((w) => [w.label, w.user, w.state]),
    [
      ['as login', login, 'stopped'],
      ['denied per launch', reader, 'error'],
    ],
  );
  assert.equal((await instanceRole.info(overridden)).user, login);
  await Promise.all([instanceRole.close(), perLaunch.close()]);
});

test('c) list().user is the role the SQL started as, and stays so when the SQL switches roles itself (documented)', async () => {
  const login = new URL(db.url).username;
  // One connection at most: the next task waits for this one's reset and runs on it.
  const bg = db.background({ role: reader, maxWorkers: 1 });
  const h = await bg.launch('RESET ROLE; SELECT current_user AS u', { label: 'resets' });
  // The SQL really ran as the login after its RESET ROLE ...
  assert.deepEqual(await bg.result(h).toArray(), [{ u: login }]);
  // ... and list() says what it can know: the role the worker started as (README, WorkerInfo.user).
  assert.equal((await bg.info(h)).user, reader);
  // The next task on the same connection starts as the role again (the reset undid the switch).
  const next = await bg.launch('SELECT current_user AS u');
  assert.equal(next.pid, h.pid);
  assert.deepEqual(await bg.result(next).toArray(), [{ u: reader }]);
  assert.equal((await bg.info(next)).user, reader);
  await bg.close();
});
