// The warm pool's bookkeeping (src/pool/connection-pool.ts), offline, with stand-in connections:
// a connection is taken back once per checkout (a second release parks nothing), and only a
// connection the pool lent out can be released. No server.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConnectionPool } from '../src/pool/connection-pool.js';
import type { WorkerConnection } from '../src/pool/worker-connection.js';

/** What the pool touches of a connection: a clean, live one that needs no reset. */
function standIn(): WorkerConnection {
  const connection = {
    lent: false,
    onFailure: null,
    failure: null,
    ready: true,
    needsReset: false,
    lastReceivedAt: Date.now(),
    closed: 0,
    ref() {},
    unref() {},
    checkedOut() {},
    close() {
      connection.closed++;
      return Promise.resolve();
    },
  };
  return connection as unknown as WorkerConnection;
}

test('a connection is taken back once per checkout: a second release parks nothing, a foreign one is ignored', async () => {
  const made: WorkerConnection[] = [];
  const pool = new ConnectionPool({
    maxConnections: 2,
    maxIdle: 2,
    minIdle: 0,
    idleTimeoutMs: 0,
    connect: async () => {
      const connection = standIn();
      made.push(connection);
      return connection;
    },
  });
  const first = await pool.acquire();
  assert.equal(first.lent, true);
  pool.release(first, true);
  assert.deepEqual([first.lent, pool.idle], [false, 1]);
  pool.release(first, true); // again: not lent out any more
  assert.equal(pool.idle, 1, 'parked once');
  pool.release(standIn(), true); // never lent by this pool
  assert.equal(pool.idle, 1);

  const again = pool.take();
  assert.equal(again, first, 'the warm connection is lent out again');
  assert.equal(pool.idle, 0);
  pool.release(again!, false); // not reusable: closed
  pool.release(again!, false);
  await new Promise<void>((resolve) => setImmediate(resolve));
  assert.equal((first as unknown as { closed: number }).closed, 1, 'closed once');
  assert.deepEqual([pool.idle, pool.size, made.length], [0, 0, 1]);
  await pool.close();
});
