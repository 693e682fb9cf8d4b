import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { useDatabase } from './support/database.js';

const reader = `pgbg_reader_${randomBytes(3).toString('hex')}`;
const db = useDatabase(import.meta.filename, {
  async setup(db) {
    await db.query(`CREATE ROLE ${reader} NOLOGIN`);
    await db.query('CREATE TABLE secret (v text)');
    await db.query('CREATE TABLE open_to_all (v text)');
    await db.query(`GRANT SELECT ON open_to_all TO ${reader}`);
  },
  async teardown(db) {
    await db.query(`DROP OWNED BY ${reader}`);
    await db.query(`DROP ROLE ${reader}`);
  },
});

test("role runs the worker SQL with that role's privileges (instance and per launch)", async () => {
  const bg = db.background({ role: reader });
  const denied = await bg.launch('SELECT * FROM secret');
  await bg.wait(denied);
  assert.equal((await bg.errorInfo(denied))?.sqlstate, '42501');
  const allowed = await bg.launch('SELECT current_user AS u, count(*)::int AS n FROM open_to_all');
  assert.deepEqual(await bg.result(allowed).toArray(), [{ u: reader, n: 0 }]);
  assert.deepEqual(
    (await bg.list()).map((w) => w.user),
    [reader, reader],
  );

  const plain = db.background();
  const perLaunch = await plain.launch('SELECT current_user AS u', { role: reader });
  assert.deepEqual(await plain.result(perLaunch).toArray(), [{ u: reader }]);
  const bad = await plain.launch('SELECT 1', { role: 'no_such_role_here' });
  await plain.wait(bad);
  assert.equal((await plain.errorInfo(bad))?.sqlstate, '22023');
  await Promise.all([bg.close(), plain.close()]);
});

test("an unknown setting fails the worker with the server's error, not the launch", async () => {
  const bg = db.background();
  const h = await bg.launch('SELECT 1', { settings: { no_such_setting: 'x' } });
  await bg.wait(h);
  assert.equal((await bg.errorInfo(h))?.sqlstate, '42704');
  const custom = await bg.launch("SELECT current_setting('app.tenant') AS t", {
    settings: { 'app.tenant': 'acme', statement_timeout: 5000, enable_seqscan: false },
  });
  assert.deepEqual(await bg.result(custom).toArray(), [{ t: 'acme' }]);
  await bg.close();
});

test('a connect that times out names its deadline and the option behind it', async () => {
  const { createServer } = await import('node:net');
  const { PgBackground } = await import('pg-background');
  const sockets = new Set<import('node:net').Socket>();
  const silent = createServer((socket) => sockets.add(socket)); // accepts, never answers
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  const { port } = silent.address() as import('node:net').AddressInfo;
  const bg = new PgBackground({ host: '127.0.0.1', port, user: 'nobody', password: 'secret-pw', livenessTimeoutMs: 300 });
  try {
    await assert.rejects(bg.launch('SELECT 1'), (error: Error & { code?: string }) => {
      assert.equal(error.code, 'PGBG_CONNECTION_FAILED');
      assert.match(error.message, /\(within connectionTimeoutMillis, 300 ms; it defaults to livenessTimeoutMs\)$/);
      assert.ok(!error.message.includes('secret-pw'));
      return true;
    });
  } finally {
    await bg.close();
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => silent.close(resolve));
  }
});
