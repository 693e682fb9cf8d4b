// result(h).stream(): a Node Readable over the worker's bounded queue, used with stream.pipeline.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { until, useDatabase } from './support/database.js';
import { untimed } from './support/result-info.js';

const db = useDatabase(import.meta.filename);

// As in backpressure.test.ts: on top of the budget Node holds at most one socket read (64 KiB).
const SOCKET_CHUNK = 65536;

const md5 = (text: string) => createHash('md5').update(text).digest('hex');
const toCsv = () =>
  new Transform({
    writableObjectMode: true,
    transform(row: { g: number; m: string }, _encoding, callback) {
      callback(null, `${row.g},${row.m}\n`);
    },
  });

test('pipeline with a slow sink: the queue stays within its budget, rows arrive complete and in order', async () => {
  const bg = db.background();
  const queueSize = 16384;
  const rows = 60_000;
  const h = await bg.launch(`SELECT g, md5(g::text) AS m FROM generate_series(1, ${rows}) g`, { queueSize });
  const source = bg.result<{ g: number; m: string }>(h).stream();
  // Nobody reads yet: the stream takes nothing and the queue fills up to its budget.
  const filled = await until(async () => {
    const { queuedBytes } = await bg.info(h);
    return queuedBytes >= queueSize && queuedBytes;
  }, 'the queue to fill');
  assert.ok(filled <= queueSize + SOCKET_CHUNK, `queue filled within its budget: ${filled}`);
  assert.equal(source.readableLength, 0);

  let text = '';
  let writes = 0;
  let maxQueued = 0;
  let maxBuffered = 0;
  const slowSink = new Writable({
    highWaterMark: 64,
    write(chunk: Buffer, _encoding, callback) {
      text += chunk.toString();
      // Slow: every write waits a turn of the event loop, every 500th a round trip for info(h).
      if (++writes % 500 !== 0) return void setImmediate(callback);
      maxBuffered = Math.max(maxBuffered, source.readableLength);
      bg.info(h).then((info) => {
        maxQueued = Math.max(maxQueued, info.queuedBytes);
        callback();
      }, callback);
    },
  });
  await pipeline(source, toCsv(), slowSink);

  assert.equal(writes, rows);
  assert.ok(maxQueued <= queueSize + SOCKET_CHUNK, `max queued ${maxQueued}`);
  assert.ok(maxBuffered <= 1, `rows buffered in the stream: ${maxBuffered}`);
  const expected = Array.from({ length: rows }, (_, i) => `${i + 1},${md5(String(i + 1))}\n`).join('');
  assert.equal(text, expected);
  await bg.wait(h);
  const info = await bg.info(h);
  assert.deepEqual([info.state, info.consumed, info.queuedBytes], ['stopped', true, 0]);
  await bg.close();
});

test('the stream is read once, like the iterator', async () => {
  const bg = db.background();
  const h = await bg.launch('SELECT 1 AS one');
  const result = bg.result(h);
  const stream = result.stream();
  assert.throws(() => result.stream(), { code: 'PGBG_ALREADY_CONSUMED', pid: h.pid });
  assert.throws(() => result[Symbol.asyncIterator](), { code: 'PGBG_ALREADY_CONSUMED', pid: h.pid });
  assert.deepEqual(await stream.toArray(), [{ one: 1 }]);
  await bg.close();
});

test('destroying the stream early is a break: the rest is dropped, the worker commits', async () => {
  await db.query('CREATE TABLE stream_destroyed (n int)');
  const bg = db.background({ maxWorkers: 1 });
  const h = await bg.launch('INSERT INTO stream_destroyed SELECT g FROM generate_series(1, 50000) g RETURNING n', { queueSize: 4096 });
  const seen: number[] = [];
  const stream = bg.result<{ n: number }>(h).stream();
  const sink = new Writable({
    objectMode: true,
    write(row: { n: number }, _encoding, callback) {
      seen.push(row.n);
      callback(seen.length === 10 ? new Error('enough') : null);
    },
  });
  await assert.rejects(pipeline(stream, sink), { message: 'enough' });
  assert.equal(stream.destroyed, true);
  assert.deepEqual(seen, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  await bg.wait(h);
  const info = await bg.info(h);
  assert.deepEqual([info.state, info.consumed, info.queuedBytes], ['stopped', true, 0]);
  assert.deepEqual(await db.query('SELECT count(*)::int AS n FROM stream_destroyed'), [{ n: 50000 }]);
  assert.deepEqual(untimed(await bg.resultInfo(h)), { rowCount: 50000, commandTag: 'INSERT', completed: true, hasError: false });
  // Nothing was left half-read: the next task runs on the same connection.
  const next = await bg.launch('SELECT 2 AS two');
  assert.equal(next.pid, h.pid);
  assert.deepEqual(await bg.result(next).stream().toArray(), [{ two: 2 }]);
  // A plain destroy() before anything was read drops everything too.
  const h2 = await bg.launch('SELECT g FROM generate_series(1, 50000) g', { queueSize: 4096 });
  bg.result(h2).stream().destroy();
  await bg.wait(h2);
  assert.deepEqual([(await bg.info(h2)).state, (await bg.info(h2)).consumed], ['stopped', true]);
  await bg.close();
});

test("the worker's error becomes the stream's error, after every row sent before it", async () => {
  const bg = db.background();
  const h = await bg.launch('SELECT g, 10 / (5000 - g) AS q FROM generate_series(1, 10000) g');
  const seen: number[] = [];
  const sink = new Writable({
    objectMode: true,
    write(row: { g: number }, _encoding, callback) {
      seen.push(row.g);
      callback();
    },
  });
  await assert.rejects(pipeline(bg.result(h).stream(), sink), { name: 'WorkerError', code: 'PGBG_WORKER_FAILED', sqlstate: '22012', pid: h.pid });
  assert.equal(seen.length, 4999);
  assert.ok(seen.every((g, i) => g === i + 1));
  assert.equal((await bg.info(h)).state, 'error');
  await bg.close();
});
