import { test } from 'node:test';
import assert from 'node:assert/strict';
import { until, useDatabase } from './support/database.js';
import { untimed } from './support/result-info.js';

const db = useDatabase(import.meta.filename);

// A DataRow of `SELECT g, md5(g::text)` is about 60 bytes on the wire; Node reads its socket in
// chunks of at most 64 KiB, and the row that fills the budget is still accepted.
const SOCKET_CHUNK = 65536;

test('a full queue stops reading: the backend blocks writing and queued bytes stay within the budget', async () => {
  const bg = db.background();
  const queueSize = 16384;
  const h = await bg.launch('SELECT g, md5(g::text) AS m FROM generate_series(1, 2000000) g', { queueSize });
  // Nobody reads: the server fills the socket buffers and then waits on the client.
  await until(
    async () => (await db.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event = 'ClientWrite'", [h.pid])).length,
    'the worker to block in ClientWrite',
  );
  const [blocked] = await bg.list();
  assert.equal(blocked!.state, 'running');
  assert.ok(blocked!.queuedBytes >= queueSize, `queue filled: ${blocked!.queuedBytes}`);
  assert.ok(blocked!.queuedBytes <= queueSize + SOCKET_CHUNK, `queue bounded: ${blocked!.queuedBytes}`);
  // Still blocked, still bounded, a while later: the queue does not creep.
  assert.equal(await bg.wait(h, { timeoutMs: 200 }), false);
  assert.ok((await bg.list())[0]!.queuedBytes <= queueSize + SOCKET_CHUNK);

  let count = 0;
  let sum = 0;
  for await (const { g } of bg.result<{ g: number }>(h)) {
    count++;
    sum += g;
  }
  assert.equal(count, 2_000_000);
  assert.equal(sum, 2_000_001_000_000);
  assert.equal((await bg.list())[0]!.queuedBytes, 0);
  await bg.close();
});

test('memory stays bounded while a slow consumer reads a large result', async () => {
  const bg = db.background();
  const h = await bg.launch('SELECT g, repeat(md5(g::text), 8) AS pad FROM generate_series(1, 300000) g', { queueSize: 65536 });
  let maxQueued = 0;
  let count = 0;
  for await (const _row of bg.result(h)) {
    if (++count % 20000 === 0) {
      // Let the producer run as far ahead as it can, then look at the queue.
      await new Promise((resolve) => setImmediate(resolve));
      maxQueued = Math.max(maxQueued, (await bg.list())[0]!.queuedBytes);
    }
  }
  assert.equal(count, 300000);
  assert.ok(maxQueued <= 65536 + SOCKET_CHUNK, `max queued ${maxQueued}`);
  await bg.close();
});

test('submit discards rows as they arrive, so a huge result never blocks', async () => {
  const bg = db.background();
  const h = await bg.submit('SELECT g, md5(g::text) FROM generate_series(1, 500000) g', { queueSize: 4096 });
  await bg.wait(h);
  const [info] = await bg.list();
  assert.equal(info!.state, 'stopped');
  assert.equal(info!.submitted, true);
  assert.equal(info!.queuedBytes, 0);
  assert.deepEqual(untimed(await bg.resultInfo(h)), { rowCount: 500000, commandTag: 'SELECT', completed: true, hasError: false });
  assert.throws(() => bg.result(h), { code: 'PGBG_RESULTS_DISABLED' });
  await bg.close();
});

test('detaching a worker blocked on its full queue lets it finish and commit', async () => {
  await db.query('CREATE TABLE detached_rows (n int)');
  const bg = db.background();
  // DML with RETURNING sends its rows after the insert: make them outgrow the socket buffers.
  const h = await bg.launch("INSERT INTO detached_rows SELECT generate_series(1, 200000) RETURNING n, repeat('x', 200) AS pad", { queueSize: 4096 });
  await until(
    async () => (await db.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event = 'ClientWrite'", [h.pid])).length,
    'the worker to block',
  );
  await bg.detach(h);
  assert.deepEqual(await bg.list(), []);
  await until(async () => (await db.query('SELECT count(*)::int AS n FROM detached_rows'))[0]!.n === 200000, 'the detached worker to commit');
  assert.equal((await bg.stats()).workersCompleted, 1);
  await bg.close();
});
