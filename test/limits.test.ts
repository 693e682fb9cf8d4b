import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PgBackground, PgBackgroundError } from 'pg-background';
import { until, useDatabase } from './support/database.js';
import { unhandledRejections } from './support/rejections.js';

const db = useDatabase(import.meta.filename);

test("maxWorkers with whenFull 'error': the next launch throws PGBG_MAX_WORKERS; finished workers do not count", async () => {
  const bg = db.background({ maxWorkers: 2 });
  const a = await bg.launch('SELECT pg_sleep(30)');
  const b = await bg.submit('SELECT pg_sleep(30)');
  await assert.rejects(bg.launch('SELECT 1'), (error: PgBackgroundError) => {
    assert.equal(error.code, 'PGBG_MAX_WORKERS');
    assert.match(error.message, /limit is 2/);
    return true;
  });
  await assert.rejects(bg.submit('SELECT 1'), { code: 'PGBG_MAX_WORKERS' });
  await bg.cancel(a);
  // 'a' is finished and still listed, but does not count: a new launch works.
  const c = await bg.launch('SELECT 3 AS c');
  assert.deepEqual(await bg.result(c).toArray(), [{ c: 3 }]);
  assert.equal((await bg.list()).length, 3);
  await bg.cancel(b);
  await bg.close();
});

test("whenFull 'queue': launches wait as pending (pid 0) and start in order as slots free", async () => {
  const bg = db.background({ maxWorkers: 1, whenFull: 'queue' });
  const first = await bg.launch('SELECT pg_sleep(30)');
  const second = bg.launch('SELECT 2 AS n', { label: 'second' });
  const third = bg.launch('SELECT 3 AS n', { label: 'third' });
  const pending = await until(async () => {
    const list = await bg.list();
    return list.filter((w) => w.state === 'pending').length === 2 && list;
  }, 'two pending workers');
  assert.deepEqual(
    pending.map((w) => [w.label, w.state, w.pid]),
    [
      ['third', 'pending', 0],
      ['second', 'pending', 0],
      [null, 'running', first.pid],
    ],
  );
  assert.equal((await bg.stats()).workersActive, 3);
  await bg.cancel(first);
  const h2 = await second;
  const h3 = await third;
  assert.deepEqual(await bg.result(h2).toArray(), [{ n: 2 }]);
  assert.deepEqual(await bg.result(h3).toArray(), [{ n: 3 }]);
  await bg.close();
});

test("whenFull 'queue' honours the launch's AbortSignal while pending", async () => {
  const bg = db.background({ maxWorkers: 1, whenFull: 'queue' });
  const first = await bg.launch('SELECT pg_sleep(30)');
  const controller = new AbortController();
  const waiting = bg.launch('SELECT 2', { signal: controller.signal, label: 'waiting' });
  await until(async () => (await bg.list()).some((w) => w.state === 'pending'), 'a pending worker');
  controller.abort();
  await assert.rejects(waiting, { code: 'PGBG_ABORTED' });
  const [aborted] = await bg.list();
  assert.deepEqual([aborted!.label, aborted!.state, aborted!.pid, aborted!.canceledBy], ['waiting', 'canceled', 0, 'signal']);
  // The aborted launch gave its turn back: the next one starts as soon as the slot frees.
  await bg.cancel(first);
  const next = await bg.launch('SELECT 3 AS n');
  assert.deepEqual(await bg.result(next).toArray(), [{ n: 3 }]);
  const stats = await bg.stats();
  assert.deepEqual([stats.workersLaunched, stats.workersCanceled, stats.workersCompleted, stats.workersActive], [3, 2, 1, 0]);
  await bg.close();
});

test('a worker cancelled while it waits for a slot, and read only afterwards, ends the read at once: PGBG_WORKER_CANCELED, no rows', async () => {
  const bg = db.background({ maxWorkers: 1, whenFull: 'queue' });
  const first = await bg.launch('SELECT pg_sleep(30)');
  const launching = bg.launch('SELECT 2 AS n', { label: 'waiting' });
  launching.catch(() => {}); // rejects PGBG_ABORTED once cancelled (limits.test's other tests pin that)
  await until(async () => (await bg.list()).some((w) => w.label === 'waiting'), 'the pending worker listed');
  const pending = (await bg.list()).find((w) => w.label === 'waiting')!;
  const h = { pid: pending.pid, cookie: pending.cookie };
  assert.deepEqual([pending.state, pending.queuedBytes], ['pending', 0]);
  await bg.cancel(h);
  const info = await bg.info(h);
  assert.deepEqual([info.state, info.queuedBytes], ['canceled', 0]);
  // It never started, so its row queue was never made before this read: the read ends at once.
  await assert.rejects(bg.result(h).toArray(), { code: 'PGBG_WORKER_CANCELED', message: 'worker was cancelled (cancel) before it started' });
  await bg.cancel(first, { graceMs: 0 });
  await bg.close();
});

test('a fire-and-forget launch aborted while it waits (its signal, cancelAll) rejects PGBG_ABORTED, never as an unhandled rejection', async () => {
  const bg = db.background({ maxWorkers: 1, whenFull: 'queue' });
  const first = await bg.launch('SELECT pg_sleep(30)');
  const controller = new AbortController();
  const rejections = await unhandledRejections(async () => {
    void bg.submit('SELECT 2', { signal: controller.signal, label: 'by signal' });
    void bg.submit('SELECT 3', { label: 'by cancelAll' });
    await until(async () => (await bg.list()).filter((w) => w.state === 'pending').length === 2, 'two pending workers');
    controller.abort();
    await bg.cancelAll({ graceMs: 0 });
  });
  assert.deepEqual(rejections, []);
  assert.deepEqual(
    (await bg.list()).map((w) => [w.label, w.state, w.canceledBy]),
    [
      ['by cancelAll', 'canceled', 'cancel'],
      ['by signal', 'canceled', 'signal'],
      [null, 'canceled', 'cancel'],
    ],
  );
  assert.equal((await bg.info(first)).state, 'canceled');
  await bg.close();
});

test('an already-aborted signal rejects the launch with PGBG_ABORTED and starts nothing', async () => {
  const bg = db.background();
  await assert.rejects(bg.launch('SELECT 1', { signal: AbortSignal.abort() }), { code: 'PGBG_ABORTED' });
  assert.deepEqual(await bg.list(), []);
  assert.equal((await bg.stats()).workersLaunched, 0);
  await bg.close();
});

test('bad arguments throw PGBG_INVALID_ARGUMENT before any connection is opened, naming the option', async () => {
  const constructorCases: [unknown, RegExp][] = [
    [{ maxWorkers: 0 }, /`maxWorkers` to be an integer from 1 to 1000, got 0/],
    [{ maxWorkers: 1001 }, /`maxWorkers`/],
    [{ maxWorkers: 2.5 }, /`maxWorkers`/],
    [{ maxWorkers: '4' }, /`maxWorkers`.*got "4"/],
    [{ defaultQueueSize: 100 }, /`defaultQueueSize` to be an integer from 4096 to 268435456, got 100/],
    [{ defaultQueueSize: 268435457 }, /`defaultQueueSize`/],
    [{ workerTimeoutMs: -1 }, /`workerTimeoutMs`/],
    [{ whenFull: 'wait' }, /`whenFull` to be 'error' or 'queue'/],
    [{ retentionMs: -5 }, /`retentionMs`/],
    [{ rowMode: 'rows' }, /`rowMode`/],
    [{ types: {} }, /`types`/],
    [{ settings: { 'bad name': 1 } }, /`settings`/],
    [{ settings: { work_mem: {} } }, /`settings.work_mem`/],
    [{ role: '' }, /`role`/],
    [{ maxWorkers: 4, maxIdle: 5 }, /`maxIdle` to be an integer from 0 to 4/],
    [{ cancelGraceMs: 3600001 }, /`cancelGraceMs`/],
    // Also every connect's and control request's deadline: 1 ms would fail them all.
    [{ livenessTimeoutMs: 1 }, /`livenessTimeoutMs` to be 0 \(no checks\) or an integer from 100 to 2147483647, got 1$/],
    [{ livenessTimeoutMs: 99 }, /`livenessTimeoutMs`.*got 99$/],
    ['postgres://x', /`options` to be an object/],
    [{ maxworkers: 4 }, /Unknown option `maxworkers`; did you mean `maxWorkers`\?/],
    [{ query_timeout: 1000 }, /Option `query_timeout` is not supported: use `workerTimeoutMs`/],
    [{ maxRetained: -1 }, /`maxRetained` to be an integer from 0/],
    [{ maxRetained: 1.5 }, /`maxRetained`/],
    [{ queueSize: 1024 }, /Option `queueSize` does not belong to the constructor: it is a launch option .*`defaultQueueSize`/],
    [{ max: 10 }, /Option `max` does not belong to the constructor: it is a pg.Pool option; the most workers at once is `maxWorkers`/],
    [{ idleTimeoutMillis: 1000 }, /Option `idleTimeoutMillis` does not belong to the constructor: .*`idleTimeoutMs`/],
    [{ connection: {} }, /Option `connection` is not supported: pg-background opens each worker's protocol connection itself/],
    [{ client_encoding: 'LATIN1' }, /Option `client_encoding` cannot be "LATIN1": node-postgres always sends and reads UTF-8/],
    [{ settings: { transaction_read_only: 'on' } }, /Setting `transaction_read_only` cannot go in `settings`: .*default_transaction_read_only/],
    [{ settings: { role: 'x' } }, /Setting `role` cannot go in `settings`: use the `role` option/],
    [{ settings: JSON.parse('{"__proto__": "x"}') }, /keys of `settings` to be setting names, got "__proto__"/],
  ];
  for (const [options, message] of constructorCases) {
    assert.throws(
      () => new PgBackground(options as never),
      (error: PgBackgroundError) => {
        assert.equal(error.code, 'PGBG_INVALID_ARGUMENT');
        assert.match(error.message, message);
        return true;
      },
    );
  }

  const bg = db.background();
  const launchCases: [unknown, unknown, RegExp][] = [
    [42, undefined, /`sql` to be a string or \{ text, values \}, got 42/],
    [null, undefined, /`sql`/],
    ['', undefined, /at least one statement, got an empty string/],
    ['  -- nothing\n /* here */ ;', undefined, /only comments or whitespace/],
    [{ text: 'SELECT $1', values: 'x' }, undefined, /`sql.values` to be an array/],
    [{ text: 'SELECT $1', valeus: [1] }, undefined, /Unknown key `valeus` in `sql`/],
    ['SELECT 1\0; DROP TABLE t', undefined, /no NUL characters/],
    ["SELECT '\ud800'", undefined, /`sql` to be well-formed Unicode/],
    [{ text: 'SELECT $1', values: ['\udc00'] }, undefined, /`sql.values\[0\]` to be well-formed Unicode/],
    ['SELECT 1', { queueSize: 100 }, /`queueSize` to be an integer from 4096 to 268435456, got 100/],
    ['SELECT 1', { queueSize: 268435457 }, /`queueSize`/],
    ['SELECT 1', { label: 'x'.repeat(65) }, /`label` to be at most 64 bytes of UTF-8, got 65 bytes/],
    ['SELECT 1', { label: 'ż'.repeat(33) }, /`label` to be at most 64 bytes of UTF-8, got 66 bytes/],
    ['SELECT 1', { label: '\ud800' }, /`label` to be well-formed/],
    ['SELECT 1', { label: 7 }, /`label` to be a string/],
    ['SELECT 1', { signal: { aborted: false } }, /`signal` to be an AbortSignal/],
    ['SELECT 1', { timeoutMs: -1 }, /`timeoutMs`/],
    ['SELECT 1', { queuesize: 65536 }, /Unknown option `queuesize`/],
    ['SELECT 1', 'fast', /`options` to be an object/],
  ];
  for (const [sql, options, message] of launchCases) {
    for (const method of ['launch', 'submit'] as const) {
      await assert.rejects(bg[method](sql as never, options as never), (error: PgBackgroundError) => {
        assert.equal(error.code, 'PGBG_INVALID_ARGUMENT', `${method} ${String(sql)}`);
        assert.match(error.message, message);
        return true;
      });
    }
  }
  const h = await bg.launch('SELECT 1');
  await assert.rejects(bg.cancel(h, { graceMs: 3600001 }), { code: 'PGBG_INVALID_ARGUMENT', message: /`graceMs` to be an integer from 0 to 3600000/ });
  await assert.rejects(bg.cancel(h, { graceMs: -1 }), { code: 'PGBG_INVALID_ARGUMENT' });
  await assert.rejects(bg.wait(h, { timeoutMs: -1 }), { code: 'PGBG_INVALID_ARGUMENT', message: /`timeoutMs`/ });
  await bg.wait(h);
  // Nothing was started by the rejected calls: one worker, one launch counted.
  assert.equal((await bg.list()).length, 1);
  assert.equal((await bg.stats()).workersLaunched, 1);
  await bg.close();
});

test('arguments whose getters or proxies throw are PGBG_INVALID_ARGUMENT naming what could not be read, never the raw error', async () => {
  const boom = (): never => {
    throw new Error('getter boom');
  };
  const throwing = (key: string, rest: Record<string, unknown> = {}) => Object.defineProperty({ ...rest }, key, { get: boom, enumerable: true });
  const proxy = () => new Proxy({}, { ownKeys: boom, get: boom });
  const check = async (what: string, call: () => unknown, names: RegExp) => {
    await assert.rejects(
      async () => call(),
      (error: PgBackgroundError) => {
        assert.ok(error instanceof PgBackgroundError, `${what}: ${String(error)}`);
        assert.equal(error.code, 'PGBG_INVALID_ARGUMENT', what);
        assert.match(error.message, names, what);
        assert.match(error.message, /getter boom/, what);
        return true;
      },
    );
  };
  await check('constructor getter', () => new PgBackground(throwing('maxWorkers') as never), /`maxWorkers`/);
  await check('constructor proxy', () => new PgBackground(proxy() as never), /`options`/);
  await check('settings getter', () => new PgBackground({ settings: throwing('work_mem') } as never), /`settings.work_mem`/);
  await check('types getter', () => new PgBackground({ types: throwing('getTypeParser') } as never), /`types.getTypeParser`/);
  const bg = db.background();
  for (const method of ['launch', 'submit'] as const) {
    await check(`${method} options getter`, () => bg[method]('SELECT 1', throwing('label') as never), /`label`/);
    await check(`${method} options proxy`, () => bg[method]('SELECT 1', proxy() as never), /`options`/);
    await check(`${method} sql.text getter`, () => bg[method](throwing('text') as never), /`sql.text`/);
    await check(`${method} sql.values getter`, () => bg[method](throwing('values', { text: 'SELECT $1' }) as never), /`sql.values`/);
    await check(`${method} settings getter`, () => bg[method]('SELECT 1', { settings: throwing('work_mem') } as never), /`settings.work_mem`/);
  }
  const h = await bg.launch('SELECT 1');
  await check('wait options getter', () => bg.wait(h, throwing('timeoutMs') as never), /`timeoutMs`/);
  await check('cancel options getter', () => bg.cancel(h, throwing('graceMs') as never), /`graceMs`/);
  await check('install options getter', () => bg.install(throwing('schema') as never), /`schema`/);
  await check('close options getter', () => bg.close(throwing('cancel') as never), /`cancel`/);
  await bg.wait(h);
  assert.equal((await bg.stats()).workersLaunched, 1);
  await bg.close();
});

test("a launch reads each part of the caller's sql once: text, values, and every value; a later change of them changes nothing", async () => {
  const reads: string[] = [];
  const values = new Proxy([41, 'x'], {
    get(target, key, receiver) {
      if (typeof key === 'string') reads.push(`values.${key}`);
      return Reflect.get(target, key, receiver) as unknown;
    },
  });
  const sql = {
    get text() {
      reads.push('text');
      return 'SELECT $1::int + 1 AS n, $2::text AS s';
    },
    get values() {
      reads.push('values');
      return values;
    },
  };
  const bg = db.background();
  const h = await bg.launch(sql);
  values[0] = 99; // after the launch: the worker sends what it read
  assert.deepEqual(await bg.result(h).toArray(), [{ n: 42, s: 'x' }]);
  assert.deepEqual(reads, ['text', 'values', 'values.length', 'values.0', 'values.1']);
  await bg.close();
});

test('a proxy of an array that lies about its length is PGBG_INVALID_ARGUMENT naming sql.values, never a raw RangeError', async () => {
  const bg = db.background();
  for (const length of [-1, 2.5, Number.NaN, undefined, '2', { valueOf: () => 2 }]) {
    const values = new Proxy([1, 2], { get: (target, key, receiver) => (key === 'length' ? length : (Reflect.get(target, key, receiver) as unknown)) });
    await assert.rejects(bg.launch({ text: 'SELECT $1::int, $2::int', values }), {
      code: 'PGBG_INVALID_ARGUMENT',
      message: /^Expected `sql.values` to have an integer length from 0, got /,
    });
  }
  assert.equal((await bg.stats()).workersLaunched, 0);
  await bg.close();
});

test('a rejected call opens no connection', async () => {
  const before = (await db.backends()).length;
  const bg = db.background();
  await assert.rejects(bg.launch('SELECT 1', { queueSize: 1 }), { code: 'PGBG_INVALID_ARGUMENT' });
  assert.equal((await db.backends()).length, before);
  await bg.close();
});

test("a 'finished' listener can launch again at once, even at maxWorkers with whenFull 'error'", async () => {
  const bg = db.background({ maxWorkers: 1 });
  const next = new Promise<unknown>((resolve) => {
    bg.once('finished', () => resolve(bg.launch('SELECT 2 AS n').then((h) => bg.result(h).toArray())));
  });
  await bg.launch('SELECT 1');
  assert.deepEqual(await next, [{ n: 2 }]);
  await bg.close();
});
