// A real PgBouncer in front of the test server, for the pooler tests: it writes a pgbouncer.ini
// and a userlist in a temp dir, listens on 127.0.0.1 on a free port, runs as the unprivileged
// user the embedded server uses when we are root (PgBouncer refuses to run as root), and is
// stopped by stop(). Where the `pgbouncer` binary is missing (the Debian package could not be
// installed), pgBouncerBinary() says why, and the pooler tests fail with that reason.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chown, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { ensureServerUser, freePort } from '../../scripts/local-postgres.js';

export type PoolMode = 'session' | 'transaction' | 'statement';

export interface PgBouncerOptions {
  readonly mode: PoolMode;
  /** Server connections per database and user (PgBouncer's default_pool_size). */
  readonly poolSize?: number;
  /** Extra [pgbouncer] settings. */
  readonly settings?: Record<string, string | number>;
}

export interface PgBouncer {
  readonly port: number;
  /** `serverUrl` (a postgres:// URL of the real server) with host and port of the pooler. */
  url(serverUrl: string): string;
  stop(): Promise<void>;
}

const CANDIDATES = ['/usr/sbin/pgbouncer', '/usr/bin/pgbouncer', '/usr/local/bin/pgbouncer'];

/**
 * The pgbouncer binary. Every pooler test runs: without one they fail, saying how to get it
 * (`npm test` installs it itself where it runs as root with apt, see scripts/system-deps.sh).
 */
export function pgBouncerBinary(): string {
  const onPath = spawnSync('sh', ['-c', 'command -v pgbouncer'], { encoding: 'utf8' }).stdout?.trim();
  const binary = onPath || CANDIDATES.find((candidate) => existsSync(candidate));
  if (!binary)
    throw new Error('pgbouncer is not installed: the pooler tests need it (Debian package `pgbouncer`; npm test installs it when it runs as root with apt)');
  return binary;
}

export async function startPgBouncer(binary: string, serverUrl: string, options: PgBouncerOptions): Promise<PgBouncer> {
  const server = new URL(serverUrl);
  const runAs = userInfo().uid === 0 ? ensureServerUser() : {};
  const dir = await mkdtemp(join(tmpdir(), 'pg-background-pgbouncer-'));
  const user = decodeURIComponent(server.username);
  const password = decodeURIComponent(server.password);
  const port = await freePort();
  const settings: Record<string, string | number> = {
    listen_addr: '127.0.0.1',
    listen_port: port,
    unix_socket_dir: '',
    pool_mode: options.mode,
    default_pool_size: options.poolSize ?? 4,
    max_client_conn: 500,
    // The client's password is checked against the userlist and used again for the server.
    auth_type: password ? 'scram-sha-256' : 'trust',
    auth_file: join(dir, 'userlist.txt'),
    logfile: join(dir, 'pgbouncer.log'),
    pidfile: join(dir, 'pgbouncer.pid'),
    server_login_retry: 1,
    ...options.settings,
  };
  const ini = [
    '[databases]',
    `* = host=${server.hostname} port=${server.port || 5432}`,
    '[pgbouncer]',
    ...Object.entries(settings).map(([key, value]) => `${key} = ${value}`),
    '',
  ].join('\n');
  await writeFile(join(dir, 'pgbouncer.ini'), ini);
  await writeFile(join(dir, 'userlist.txt'), `"${user}" "${password.replace(/"/g, '""')}"\n`, { mode: 0o600 });
  if (runAs.uid !== undefined) {
    for (const file of ['', 'pgbouncer.ini', 'userlist.txt']) await chown(join(dir, file), runAs.uid, runAs.gid!);
  }

  const child: ChildProcess = spawn(binary, [join(dir, 'pgbouncer.ini')], { ...runAs, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk));
  let exited = false;
  const exit = new Promise<void>((resolve) => child.once('exit', () => ((exited = true), resolve())));
  const deadline = Date.now() + 15_000;
  while (!(await accepts(port))) {
    if (exited || Date.now() > deadline) {
      child.kill('SIGKILL');
      const log = await readFile(join(dir, 'pgbouncer.log'), 'utf8').catch(() => '');
      await rm(dir, { recursive: true, force: true });
      throw new Error(`pgbouncer did not start:\n${output}\n${log}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return {
    port,
    url(serverUrl: string) {
      const url = new URL(serverUrl);
      url.hostname = '127.0.0.1';
      url.port = String(port);
      return url.toString();
    },
    async stop() {
      // SIGTERM: immediate shutdown, every client and server connection closed.
      if (!exited) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exit;
      clearTimeout(timer);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => (socket.destroy(), resolve(true)));
    socket.once('error', () => (socket.destroy(), resolve(false)));
  });
}
