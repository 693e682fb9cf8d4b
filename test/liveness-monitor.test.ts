// The liveness monitor's bookkeeping (src/pool/liveness-monitor.ts), offline, with stand-in
// connections and probe: a connection's record serves all its tasks, is probed only while a task
// is watched, and is forgotten once the connection failed (and all of them at close()).
// The real-server paths (a full server, a slow link, a stalled check) are in liveness.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LivenessMonitor, type BackendState, type Watch } from '../src/pool/liveness-monitor.js';
import type { BackendIdentity, WorkerConnection } from '../src/pool/worker-connection.js';

const TIMEOUT_MS = 100;

interface StandIn {
  pid: number;
  started: string;
  failure: Error | null;
  lastReceivedAt: number;
  destroyed: Error | null;
  destroy(error: Error): void;
  poke(): void;
}

/** What the monitor touches of a connection: its identity, its failure, when a byte last came. */
function standIn(pid: number): StandIn & WorkerConnection {
  const connection: StandIn = {
    pid,
    started: `start-${pid}`,
    failure: null,
    lastReceivedAt: 0, // silent since long ago
    destroyed: null,
    destroy(error) {
      connection.destroyed = error;
      connection.failure = error;
    },
    poke() {},
  };
  return connection as StandIn & WorkerConnection;
}

const reading: Watch = { paused: false, unbound() {} };

async function until(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

test('only watched connections are probed; a failed one is forgotten once unwatched, and close() forgets them all', async () => {
  const probed: number[][] = [];
  // The server no longer runs any backend it is asked about.
  const probe = async (backends: readonly BackendIdentity[]): Promise<BackendState[]> => {
    probed.push(backends.map((b) => b.pid));
    return [];
  };
  const monitor = new LivenessMonitor(TIMEOUT_MS, probe);
  try {
    const idle = standIn(1);
    const busy = standIn(2);
    // idle ran a task and was unwatched; busy's task is still watched, and silent.
    monitor.watch(idle, reading);
    monitor.unwatch(idle);
    monitor.watch(busy, reading);
    assert.equal(monitor.size, 2);
    await until(() => busy.destroyed !== null, 'the silent watched connection to be dropped');
    assert.deepEqual(probed[0], [2]);
    assert.match(busy.destroyed!.message, /the server no longer runs backend 2; the worker's outcome is unknown/);
    assert.equal(idle.destroyed, null);
    // Both records stay while busy is watched and idle has not failed.
    assert.equal(monitor.size, 2);
    monitor.unwatch(busy); // its task ended (08006)
    idle.failure = new Error('Connection terminated');
    await until(() => monitor.size === 0, 'the failed connections to be forgotten');
    assert.ok(
      probed.every((pids) => !pids.includes(1)),
      `idle was never probed: ${JSON.stringify(probed)}`,
    );
    const again = standIn(3);
    monitor.watch(again, reading);
    monitor.close();
    assert.equal(monitor.size, 0);
  } finally {
    monitor.close();
  }
});

test("a connection's next task is judged from its own start, not the first task's", async () => {
  const probed: number[][] = [];
  const monitor = new LivenessMonitor(TIMEOUT_MS, async (backends) => {
    probed.push(backends.map((b) => b.pid));
    return backends.map((b) => ({ ...b, state: 'active', waitEvent: null, stateMs: 0 }));
  });
  try {
    const connection = standIn(7);
    connection.lastReceivedAt = Date.now();
    monitor.watch(connection, reading);
    monitor.unwatch(connection);
    // A long pause between tasks, then a new task: silence counts from its start.
    await new Promise((resolve) => setTimeout(resolve, 3 * TIMEOUT_MS));
    const since = Date.now(); // before the watch's own clock reading
    monitor.watch(connection, reading);
    await until(() => probed.length > 0, 'the new task to be checked once silent');
    assert.ok(Date.now() - since >= TIMEOUT_MS, 'checked only after a whole timeout of silence in the new task');
    assert.equal(connection.destroyed, null, 'an active backend is not dropped');
  } finally {
    monitor.close();
  }
});
