// cancel() over TLS: the cancel request must travel with exactly the TLS settings of the worker's
// connection (verify-full against an IP host, a CA object, a client certificate), and when no
// path can reach the backend, cancel() rejects instead of claiming a stop. This file runs its own
// throwaway server, with ssl = on and certificates for 127.0.0.1 made here with openssl.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { PgBackground, PgBackgroundError, type PgBackgroundOptions, type WorkerHandle } from 'pg-background';
import { startLocalPostgres, type LocalPostgres } from '../scripts/local-postgres.js';
import { until } from './support/database.js';
import { TcpProxy } from './support/tcp-proxy.js';

/** The role that logs in with its client certificate only (pg_hba `cert`, no password). */
const CERT_USER = 'pgbg_cert_user';
const HBA = `local all all scram-sha-256
hostssl all ${CERT_USER} 127.0.0.1/32 cert
hostnossl all ${CERT_USER} 127.0.0.1/32 reject
host all all 127.0.0.1/32 scram-sha-256
`;

let server: LocalPostgres;
let admin: pg.Client;
let certDir: string;
const pem: Record<'ca' | 'clientKey' | 'clientCert', string> = { ca: '', clientKey: '', clientCert: '' };
const instances: PgBackground[] = [];

/** A CA, a server certificate for IP 127.0.0.1 and a client certificate for CERT_USER. */
function makeCertificates(dir: string): void {
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  const key = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl(
    'req',
    '-x509',
    ...key,
    '-keyout',
    'ca.key',
    '-out',
    'ca.crt',
    '-days',
    '2',
    '-subj',
    '/CN=pgbg-test-ca',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  );
  writeFileSync(join(dir, 'server.ext'), 'subjectAltName=IP:127.0.0.1\n');
  openssl('req', ...key, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=pgbg-test-server');
  openssl(
    'x509',
    '-req',
    '-in',
    'server.csr',
    '-CA',
    'ca.crt',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-out',
    'server.crt',
    '-days',
    '2',
    '-extfile',
    'server.ext',
  );
  openssl('req', ...key, '-keyout', 'client.key', '-out', 'client.csr', '-subj', `/CN=${CERT_USER}`);
  openssl('x509', '-req', '-in', 'client.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'client.crt', '-days', '2');
}

before(async () => {
  certDir = mkdtempSync(join(tmpdir(), 'pg-background-certs-'));
  makeCertificates(certDir);
  const read = (name: string) => readFileSync(join(certDir, name), 'utf8');
  pem.ca = read('ca.crt');
  pem.clientKey = read('client.key');
  pem.clientCert = read('client.crt');
  server = await startLocalPostgres({
    // Its own pg_hba asks for passwords, whatever PGBG_PG_AUTH says for the suite's server.
    auth: 'scram-sha-256',
    // Few connections, so that a test can use them all up (53300) for the certificate's role.
    settings: { ssl: 'on', ssl_cert_file: 'server.crt', ssl_key_file: 'server.key', ssl_ca_file: 'ca.crt', max_connections: 12 },
    files: { 'server.crt': read('server.crt'), 'server.key': read('server.key'), 'ca.crt': pem.ca, 'pg_hba.conf': HBA },
  });
  admin = new pg.Client({ connectionString: server.url, application_name: 'pgbg-test-admin' });
  await admin.connect();
  await admin.query(`CREATE ROLE ${CERT_USER} LOGIN`);
  await admin.query(`CREATE TABLE cancelled (n int)`);
  await admin.query(`GRANT ALL ON cancelled TO ${CERT_USER}`);
});

after(async () => {
  await Promise.all(instances.map((bg) => bg.close({ cancel: true }).catch(() => {})));
  await admin?.end().catch(() => {});
  await server?.destroy();
  if (certDir) rmSync(certDir, { recursive: true, force: true });
});

async function query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values?: unknown[]): Promise<R[]> {
  return (await admin.query<R>(text, values)).rows;
}

function background(options: PgBackgroundOptions): PgBackground {
  // No liveness probe during these tests: only the cancel may use the control connection.
  const bg = new PgBackground({ livenessTimeoutMs: 60_000, ...options });
  instances.push(bg);
  return bg;
}

const sleeping = (pid: number) =>
  until(async () => (await query("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event = 'PgSleep'", [pid])).length, `backend ${pid} to sleep`);

/** Statements other backends ran last that signal a backend (the control-connection fallback). */
const signalQueries = async () =>
  (await query<{ query: string }>("SELECT query FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND query ~ 'pg_(cancel|terminate)_backend'")).map(
    (row) => row.query,
  );

const encrypted = async (pid: number) => (await query<{ ssl: boolean }>('SELECT ssl FROM pg_stat_ssl WHERE pid = $1', [pid]))[0]?.ssl;

/** Launches a sleeper that inserts first, cancels it, and checks the server saw a protocol cancel. */
async function cancelsByProtocol(bg: PgBackground, value: number): Promise<void> {
  const h: WorkerHandle = await bg.launch(`INSERT INTO cancelled VALUES (${value}); SELECT pg_sleep(30)`);
  await sleeping(h.pid);
  assert.equal(await encrypted(h.pid), true);
  await bg.cancel(h, { graceMs: 20_000 });
  const info = await bg.info(h);
  assert.deepEqual([info.state, info.canceledBy], ['canceled', 'cancel']);
  const error = await bg.errorInfo(h);
  assert.deepEqual([error?.sqlstate, error?.message], ['57014', 'canceling statement due to user request']);
  assert.deepEqual(await query('SELECT n FROM cancelled WHERE n = $1', [value]), []);
  await until(async () => (await query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [h.pid])).length === 0, 'the backend to exit');
  // Neither pg_cancel_backend nor pg_terminate_backend ran: the CancelRequest stopped it.
  assert.deepEqual(await signalQueries(), []);
  await bg.close();
}

test('sslmode=verify-full to an IP host: cancel() stops the worker by protocol request', async () => {
  const rootCert = join(certDir, 'ca.crt');
  const url = `postgres://${server.user}:${server.password}@127.0.0.1:${server.port}/postgres?sslmode=verify-full&sslrootcert=${encodeURIComponent(rootCert)}`;
  await cancelsByProtocol(background({ connectionString: url }), 1);
});

test('ssl: { ca } to an IP host: cancel() stops the worker by protocol request', async () => {
  const bg = background({ host: '127.0.0.1', port: server.port, user: server.user, password: server.password, database: 'postgres', ssl: { ca: pem.ca } });
  await cancelsByProtocol(bg, 2);
});

test('a client certificate (ssl.key and ssl.cert): cancel() still stops the worker by protocol request', async () => {
  // pg_hba lets this role in by its certificate only: the worker connection proves ssl.key was used.
  const ssl = { ca: pem.ca, key: pem.clientKey, cert: pem.clientCert };
  const bg = background({ host: '127.0.0.1', port: server.port, user: CERT_USER, database: 'postgres', ssl });
  await cancelsByProtocol(bg, 3);
});

test('every connection slot taken (53300): the TLS cancel request still stops the worker', async () => {
  const ssl = { ca: pem.ca, key: pem.clientKey, cert: pem.clientCert };
  const config = { host: '127.0.0.1', port: server.port, user: CERT_USER, database: 'postgres', ssl };
  const bg = background(config);
  const h = await bg.launch('INSERT INTO cancelled VALUES (5); SELECT pg_sleep(30)');
  await sleeping(h.pid);
  // Other clients of the role take every slot left: no control connection can be opened now.
  const others: pg.Client[] = [];
  try {
    for (;;) {
      const client = new pg.Client(config);
      client.on('error', () => {});
      try {
        await client.connect();
      } catch (error) {
        assert.equal((error as { code?: string }).code, '53300');
        break;
      }
      others.push(client);
      assert.ok(others.length < 12, 'max_connections should have been reached');
    }
    await bg.cancel(h, { graceMs: 20_000 });
    assert.equal((await bg.info(h)).state, 'canceled');
    assert.equal((await bg.errorInfo(h))?.sqlstate, '57014');
    assert.deepEqual(await query('SELECT n FROM cancelled WHERE n = 5'), []);
    assert.deepEqual(await signalQueries(), []);
  } finally {
    await Promise.all(others.map((client) => client.end().catch(() => {})));
  }
  await bg.close();
});

test('a cancel that no path can deliver rejects with PGBG_CANCEL_FAILED; the worker says outcome unknown', async () => {
  const proxy = await TcpProxy.start({ host: '127.0.0.1', port: server.port });
  try {
    const bg = background({
      host: '127.0.0.1',
      port: proxy.port,
      user: server.user,
      password: server.password,
      database: 'postgres',
      ssl: { ca: pem.ca },
      livenessTimeoutMs: 1000,
    });
    const h = await bg.launch('INSERT INTO cancelled VALUES (4); SELECT pg_sleep(4)');
    await sleeping(h.pid);
    // Nothing gets through any more: not the cancel request, not the control connection.
    proxy.freeze();
    await assert.rejects(bg.cancel(h, { graceMs: 300 }), (error: unknown) => {
      assert.ok(error instanceof PgBackgroundError);
      assert.deepEqual([error.code, error.pid, error.cookie], ['PGBG_CANCEL_FAILED', h.pid, h.cookie]);
      assert.match(error.message, /outcome is unknown/);
      return true;
    });
    const info = await bg.info(h);
    assert.equal(info.state, 'error');
    assert.match(info.lastError ?? '', /outcome is unknown/);
    assert.equal((await bg.errorInfo(h))?.sqlstate, '08006');
    // And rightly so: the backend never got the cancel and commits when its sleep ends.
    await until(async () => (await query('SELECT 1 FROM cancelled WHERE n = 4')).length, 'the worker to commit', 15_000);
    await bg.close();
  } finally {
    await proxy.close();
  }
  await until(
    async () => (await query("SELECT 1 FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'")).length === 0,
    'every backend to exit',
  );
});
