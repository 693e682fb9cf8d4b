import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PgBackgroundError, type PgBackground, type WorkerHandle } from 'pg-background';
import { useDatabase } from './support/database.js';

const db = useDatabase(import.meta.filename);

/** Every method that takes a handle, called the way a user would. */
const methods: [string, (bg: PgBackground, h: WorkerHandle) => Promise<unknown>][] = [
  ['result', async (bg, h) => bg.result(h)],
  ['resultInfo', (bg, h) => bg.resultInfo(h)],
  ['errorInfo', (bg, h) => bg.errorInfo(h)],
  ['wait', (bg, h) => bg.wait(h)],
  ['wait with timeout', (bg, h) => bg.wait(h, { timeoutMs: 10 })],
  ['cancel', (bg, h) => bg.cancel(h)],
  ['cancel with grace', (bg, h) => bg.cancel(h, { graceMs: 10 })],
  ['detach', (bg, h) => bg.detach(h)],
  ['getProgress', (bg, h) => bg.getProgress(h)],
];

test('an unknown pid is PGBG_UNKNOWN_WORKER and a wrong cookie PGBG_COOKIE_MISMATCH, from every method', async () => {
  const bg = db.background();
  const h = await bg.launch('SELECT 1 AS x');
  await bg.wait(h);
  for (const [name, call] of methods) {
    await assert.rejects(call(bg, { pid: 1, cookie: h.cookie }), (error: PgBackgroundError) => {
      assert.ok(error instanceof PgBackgroundError, name);
      assert.equal(error.code, 'PGBG_UNKNOWN_WORKER', name);
      assert.equal(error.pid, 1);
      assert.match(error.message, /pid 1\b/);
      return true;
    });
    await assert.rejects(call(bg, { pid: h.pid, cookie: h.cookie ^ 1n }), (error: PgBackgroundError) => {
      assert.equal(error.code, 'PGBG_COOKIE_MISMATCH', name);
      assert.equal(error.pid, h.pid);
      assert.match(error.message, new RegExp(`pid ${h.pid}\\b`));
      return true;
    });
  }
  // The right handle still works after all of that.
  assert.deepEqual(await bg.result(h).toArray(), [{ x: 1 }]);
  await bg.close();
});

test('malformed handles are PGBG_INVALID_ARGUMENT from every method', async () => {
  const bg = db.background();
  const h = await bg.launch('SELECT 1');
  const bad: unknown[] = [
    undefined,
    null,
    42,
    'pid',
    {},
    { pid: h.pid },
    { cookie: h.cookie },
    { pid: String(h.pid), cookie: h.cookie },
    { pid: h.pid, cookie: Number(h.cookie) },
    { pid: -1, cookie: 1n },
    { pid: 1.5, cookie: 1n },
  ];
  for (const [name, call] of methods) {
    for (const handle of bad) {
      await assert.rejects(call(bg, handle as WorkerHandle), { code: 'PGBG_INVALID_ARGUMENT' }, `${name}(${String(handle)})`);
    }
  }
  await bg.wait(h);
  assert.equal((await bg.list()).length, 1);
  await bg.close();
});

test("a handle whose getters throw is PGBG_INVALID_ARGUMENT from every method, never the getter's error", async () => {
  const bg = db.background();
  const h = await bg.launch('SELECT 1 AS x');
  const boom = () => {
    throw new Error('getter boom');
  };
  const bad: [string, unknown][] = [
    [
      'pid getter',
      {
        get pid() {
          return boom();
        },
        cookie: h.cookie,
      },
    ],
    [
      'cookie getter',
      {
        pid: h.pid,
        get cookie() {
          return boom();
        },
      },
    ],
    ['proxy', new Proxy({}, { get: boom, getOwnPropertyDescriptor: boom, has: boom })],
  ];
  for (const [name, call] of methods) {
    for (const [what, handle] of bad) {
      await assert.rejects(call(bg, handle as WorkerHandle), (error: PgBackgroundError) => {
        assert.ok(error instanceof PgBackgroundError, `${name}(${what}): ${String(error)}`);
        assert.equal(error.code, 'PGBG_INVALID_ARGUMENT', `${name}(${what})`);
        assert.match(error.message, /handle.*getter boom/, `${name}(${what})`);
        return true;
      });
    }
  }
  assert.deepEqual(await bg.result(h).toArray(), [{ x: 1 }]);
  await bg.close();
});

test('a WorkerInfo from list() works as a handle', async () => {
  const bg = db.background();
  await bg.launch('SELECT 2 AS two');
  const [info] = await bg.list();
  await bg.wait(info!);
  assert.deepEqual(await bg.result(info!).toArray(), [{ two: 2 }]);
  await bg.close();
});
