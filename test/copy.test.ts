// COPY in the background: bg.copyTo (COPY ... TO STDOUT, its data as Buffer chunks through the
// byte-bounded queue) and bg.copyFrom (COPY ... FROM STDIN fed from a Readable, all or nothing).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { until, useDatabase } from './support/database.js';
import { untimed } from './support/result-info.js';

const db = useDatabase(import.meta.filename, {
  async setup(db) {
    await db.query('CREATE TABLE loaded (n int PRIMARY KEY, s text NOT NULL)');
  },
});

/** The COPY text of (g, md5(g)) for g in 1..rows: its exact size in bytes. */
function exportSize(rows: number): number {
  let bytes = 0;
  for (let g = 1; g <= rows; g++) bytes += String(g).length + 1 + 32 + 1;
  return bytes;
}

/** Lines `n\tvalue n` for n in from..to, one per chunk; `bad` (if given) is not a number. */
function lines(from: number, to: number, bad?: number): Readable {
  return Readable.from(
    (function* () {
      for (let n = from; n <= to; n++) yield n === bad ? `oops\tbad\n` : `${n}\tvalue ${n}\n`;
    })(),
  );
}

const count = async () => (await db.query<{ n: number; sum: number }>('SELECT count(*)::int AS n, coalesce(sum(n), 0)::int AS sum FROM loaded'))[0]!;

test('copyTo: 1M rows with a paused reader stay within the byte budget, then arrive whole', async (t) => {
  const bg = db.background();
  const queueSize = 65536;
  const rows = 1_000_000;
  const rssBefore = process.memoryUsage().rss;
  const h = await bg.copyTo(`COPY (SELECT g, md5(g::text) FROM generate_series(1, ${rows}) g) TO STDOUT`, { queueSize });
  // Nobody reads: the worker stops reading and the backend blocks writing.
  await until(
    async () => (await db.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event = 'ClientWrite'", [h.pid])).length,
    'the export to block in ClientWrite',
    30_000,
  );
  const rssBlocked = process.memoryUsage().rss;
  const blocked = await bg.info(h);
  assert.equal(blocked.state, 'running');
  // The budget, plus at most one socket read (64 KiB) and pg-copy-streams' own buffer (16 KiB).
  assert.ok(blocked.queuedBytes >= queueSize && blocked.queuedBytes <= queueSize + 65536 + 16384, `queued ${blocked.queuedBytes}`);
  assert.equal(await bg.wait(h, { timeoutMs: 200 }), false);
  assert.ok((await bg.info(h)).queuedBytes <= queueSize + 65536 + 16384);

  let bytes = 0;
  let maxQueued = 0;
  let chunks = 0;
  let first: Buffer | null = null;
  for await (const chunk of bg.result<Buffer>(h)) {
    assert.ok(Buffer.isBuffer(chunk));
    first ??= chunk;
    bytes += chunk.length;
    if (++chunks % 16 === 0) {
      // Let the worker run as far ahead as it can, then look at the queue.
      await new Promise((resolve) => setImmediate(resolve));
      maxQueued = Math.max(maxQueued, (await bg.info(h)).queuedBytes);
    }
  }
  const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(1);
  t.diagnostic(
    `RSS before ${mib(rssBefore)} MiB, blocked ${mib(rssBlocked)} MiB, after the read ${mib(process.memoryUsage().rss)} MiB; max queued ${maxQueued} B`,
  );
  assert.equal(first!.toString('utf8', 0, 35), '1\tc4ca4238a0b923820dcc509a6f75849b\n');
  assert.equal(bytes, exportSize(rows));
  assert.ok(maxQueued <= queueSize + 65536 + 16384, `max queued ${maxQueued}`);
  assert.deepEqual(untimed(await bg.resultInfo(h)), { rowCount: rows, commandTag: 'COPY', completed: true, hasError: false });
  assert.equal((await bg.info(h)).state, 'stopped');

  // result(h).stream() yields the same Buffers, for pipeline into a file or a socket.
  const s = await bg.copyTo('COPY (SELECT 1 AS a, 2 AS b) TO STDOUT (FORMAT csv, HEADER)');
  const parts: Buffer[] = [];
  for await (const chunk of bg.result<Buffer>(s).stream()) parts.push(chunk as Buffer);
  assert.equal(Buffer.concat(parts).toString(), 'a,b\n1,2\n');
  await bg.close();
});

test('copyFrom: a load that succeeds commits every row, one that fails midway commits nothing', async () => {
  const bg = db.background();
  const ok = await bg.copyFrom('COPY loaded FROM STDIN', lines(1, 5000));
  await bg.wait(ok);
  assert.deepEqual(untimed(await bg.resultInfo(ok)), { rowCount: 5000, commandTag: 'COPY', completed: true, hasError: false });
  assert.equal((await bg.info(ok)).state, 'stopped');
  assert.deepEqual(await count(), { n: 5000, sum: 12502500 });

  // A bad row at 7500: the 2499 rows before it were sent, and roll back with it.
  const bad = await bg.copyFrom('COPY loaded FROM STDIN', lines(5001, 10000, 7500));
  await bg.wait(bad);
  assert.equal((await bg.info(bad)).state, 'error');
  const error = (await bg.errorInfo(bad))!;
  assert.equal(error.sqlstate, '22P02');
  assert.equal(error.message, 'invalid input syntax for type integer: "oops"');
  assert.match(error.context!, /^COPY loaded, line 2500/);
  assert.deepEqual(await count(), { n: 5000, sum: 12502500 });
  // result(h) of a failed load throws its WorkerError.
  await assert.rejects(bg.result(bad).toArray(), { name: 'WorkerError', sqlstate: '22P02' });

  // A duplicate key (checked as rows go in) is the same: nothing of the load stays.
  const dup = await bg.copyFrom('COPY loaded FROM STDIN', lines(4990, 6000));
  await bg.wait(dup);
  assert.equal((await bg.errorInfo(dup))!.sqlstate, '23505');
  assert.deepEqual(await count(), { n: 5000, sum: 12502500 });

  // The source's own error fails the COPY (CopyFail): nothing committed, its message kept.
  const failing = new Readable({ read() {} });
  failing.push('20001\tfirst\n');
  const broken = await bg.copyFrom('COPY loaded FROM STDIN', failing);
  await until(
    async () => (await db.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event = 'ClientRead'", [broken.pid])).length,
    'the load to wait for data',
  );
  failing.destroy(new Error('the upstream file was truncated'));
  await bg.wait(broken);
  assert.equal((await bg.info(broken)).state, 'error');
  assert.equal((await bg.errorInfo(broken))!.message, 'COPY from stdin failed: the upstream file was truncated');
  assert.deepEqual(await count(), { n: 5000, sum: 12502500 });
  await bg.close();
});

test('cancel of a load waiting for data and of a blocked export: canceled, nothing committed', async () => {
  const bg = db.background();
  const source = new Readable({ read() {} });
  source.push('30001\ta\n30002\tb\n');
  const load = await bg.copyFrom('COPY loaded FROM STDIN', source);
  await until(
    async () => (await db.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event = 'ClientRead'", [load.pid])).length,
    'the load to wait for data',
  );
  // The server ignores a cancel request while it waits for COPY data: the worker's CopyFail stops
  // it (no terminate: the grace is an hour, and the cancel resolves).
  await bg.cancel(load, { graceMs: 3_600_000 });
  assert.equal((await bg.info(load)).state, 'canceled');
  const error = (await bg.errorInfo(load))!;
  assert.equal(error.sqlstate, '57014');
  assert.equal(error.message, 'COPY from stdin failed: canceling statement due to user request');
  assert.equal(source.destroyed, true);
  assert.deepEqual(await count(), { n: 5000, sum: 12502500 });

  const h = await bg.copyTo('COPY (SELECT g, md5(g::text) FROM generate_series(1, 1000000) g) TO STDOUT', { queueSize: 4096 });
  await until(
    async () => (await db.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event = 'ClientWrite'", [h.pid])).length,
    'the export to block',
    30_000,
  );
  await bg.cancel(h);
  assert.equal((await bg.info(h)).state, 'canceled');
  assert.equal((await bg.errorInfo(h))!.sqlstate, '57014');
  await assert.rejects(bg.result(h).toArray(), { name: 'WorkerError', sqlstate: '57014' });

  // A timeout cancels a load as it does any worker.
  const stalled = new Readable({ read() {} });
  const timed = await bg.copyFrom('COPY loaded FROM STDIN', stalled, { timeoutMs: 200 });
  await bg.wait(timed);
  assert.equal((await bg.info(timed)).state, 'canceled');
  await bg.close();
});

test('COPY with the client stays refused in launch() and in several statements; bad copy arguments are refused', async () => {
  const bg = db.background();
  for (const sql of ['COPY loaded TO STDOUT', 'COPY loaded FROM STDIN', 'SELECT 1; COPY loaded TO STDOUT']) {
    const h = await bg.launch(sql);
    await assert.rejects(bg.result(h).toArray(), { name: 'WorkerError', sqlstate: '0A000' });
  }
  const refused = (promise: Promise<unknown>, message: RegExp) => assert.rejects(promise, { code: 'PGBG_INVALID_ARGUMENT', message });
  await refused(bg.copyTo('COPY loaded TO STDOUT; SELECT 1'), /^Expected `sql` of copyTo\(\) to be one COPY \.\.\. TO STDOUT statement$/);
  await refused(bg.copyTo('SELECT 1; COPY loaded TO STDOUT'), /one COPY \.\.\. TO STDOUT statement/);
  await refused(bg.copyTo('COPY loaded FROM STDIN'), /one COPY \.\.\. TO STDOUT statement/);
  await refused(bg.copyTo("COPY loaded TO '/tmp/x'"), /one COPY \.\.\. TO STDOUT statement/);
  await refused(bg.copyFrom('COPY loaded TO STDOUT', lines(1, 1)), /^Expected `sql` of copyFrom\(\) to be one COPY \.\.\. FROM STDIN statement$/);
  await refused(bg.copyFrom('COPY loaded FROM STDIN', 'data' as never), /^Expected `source` of copyFrom\(\) to be a Node Readable, got/);
  await refused(bg.copyTo({ text: 'COPY loaded TO STDOUT', values: [] } as never), /to be a string \(COPY takes no parameters\)/);
  await refused(bg.copyTo('COPY loaded TO STDOUT', { rowMode: 'array' } as never), /Unknown option `rowMode`/);
  await refused(bg.copyFrom('COPY loaded FROM STDIN', lines(1, 1), { queueSize: 4096 } as never), /Unknown option `queueSize`/);
  assert.equal((await bg.stats()).workersLaunched, 3);
  assert.deepEqual(await count(), { n: 5000, sum: 12502500 });
  await bg.close();
});
