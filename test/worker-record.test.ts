// The worker record's one transition point (src/store/worker.ts) and admission
// (src/pool/worker-slots.ts), offline: every applied change reaches the store once with the facts
// before it, a change that changes nothing is not reported, a cancel aborts the worker's signal,
// and a paused admission holds starts in order. No server.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { instanceOptions, launchPlan } from '../src/api/options.js';
import { WORKER_STATES } from '../src/core/states.js';
import { WorkerSlots, type AbortListener } from '../src/pool/worker-slots.js';
import type { WorkerChange } from '../src/store/worker-change.js';
import type { WorkerState } from '../src/core/states.js';

/** What the store heard a worker was just before a change. */
interface PriorFacts {
  readonly state: WorkerState;
  readonly pid: number;
  readonly tracked: boolean;
}
import { Worker } from '../src/store/worker.js';

const instance = instanceOptions({ user: 'alice', maxWorkers: 2 });

function recorded(): {
  heard: [string, PriorFacts][];
  store: { changed(w: Worker, c: WorkerChange, state: WorkerState, pid: number, tracked: boolean): void };
} {
  const heard: [string, PriorFacts][] = [];
  return { heard, store: { changed: (_worker, change, state, pid, tracked) => void heard.push([change.kind, { state, pid, tracked }]) } };
}

test('the state vocabulary is one frozen constant, and the package exports it', async () => {
  assert.deepEqual(WORKER_STATES, ['pending', 'paused', 'running', 'cancelling', 'stopped', 'canceled', 'error']);
  assert.equal(Object.isFrozen(WORKER_STATES), true);
  const pkg = await import('pg-background');
  assert.equal(pkg.WORKER_STATES, WORKER_STATES);
  assert.deepEqual(pkg.CANCEL_REASONS, ['cancel', 'timeout', 'signal', 'close']);
});

test('apply reports each change once, with the facts before it; a repeat changes nothing', () => {
  const { heard, store } = recorded();
  const worker = new Worker(launchPlan('SELECT 1', undefined, instance, false), 'alice', store);
  assert.equal(worker.apply({ kind: 'started', pid: 41, backendStart: '2025-01-01 00:00:00+00', user: 'bob' }), true);
  assert.deepEqual([worker.state, worker.pid, worker.user, worker.backendStart, worker.attempts], ['running', 41, 'bob', '2025-01-01 00:00:00+00', 1]);
  assert.equal(worker.apply({ kind: 'cancel-requested', reason: 'timeout' }), true);
  assert.equal(worker.apply({ kind: 'cancel-requested', reason: 'cancel' }), false);
  assert.deepEqual([worker.state, worker.canceledBy, worker.discardReason, worker.signal.aborted], ['cancelling', 'timeout', 'cancel', true]);
  assert.equal((worker.signal.reason as { code: string }).code, 'PGBG_ABORTED');
  assert.equal(worker.apply({ kind: 'claimed' }), true);
  assert.equal(worker.apply({ kind: 'claimed' }), false);
  const end = { kind: 'finished', state: 'canceled', error: null, commandTag: null, rowCount: 0 } as const;
  assert.equal(worker.apply(end), true);
  assert.equal(worker.apply({ ...end, state: 'stopped' }), false);
  assert.equal(worker.apply({ kind: 'untracked', reason: 'prune' }), true);
  assert.deepEqual([worker.state, worker.tracked, worker.discardReason, worker.finishedAt !== null], ['canceled', false, 'cancel', true]);
  assert.deepEqual(heard, [
    ['started', { state: 'pending', pid: 0, tracked: true }],
    ['cancel-requested', { state: 'running', pid: 41, tracked: true }],
    ['claimed', { state: 'cancelling', pid: 41, tracked: true }],
    ['finished', { state: 'cancelling', pid: 41, tracked: true }],
    ['untracked', { state: 'canceled', pid: 41, tracked: true }],
  ]);
});

test('a pending worker cancelled stays pending until its start ends; a second start keeps the first pid', () => {
  const { heard, store } = recorded();
  const worker = new Worker(launchPlan('SELECT 1', undefined, instance, false), 'alice', store);
  worker.apply({ kind: 'started', pid: 7, backendStart: 'a', user: 'alice' });
  worker.apply({ kind: 'started', pid: 8, backendStart: 'b', user: 'alice' });
  assert.deepEqual([worker.pid, worker.firstPid, worker.handle.pid], [8, 7, 8]);
  const pending = new Worker(launchPlan('SELECT 1', undefined, instance, true), 'alice', store);
  assert.equal(pending.discardReason, 'submit');
  pending.apply({ kind: 'cancel-requested', reason: 'close' });
  assert.deepEqual([pending.state, pending.discardReason], ['pending', 'submit']);
  assert.deepEqual(
    heard.map(([kind, prior]) => [kind, prior.state]),
    [
      ['started', 'pending'],
      ['started', 'running'],
      ['cancel-requested', 'pending'],
    ],
  );
});

/** What the launcher passes for a start: a worker's cancel state, heard through one callback. */
const start = (controller = new AbortController()) => {
  let listener: AbortListener | null = null;
  controller.signal.addEventListener('abort', () => listener?.aborted(controller.signal.reason));
  return {
    get aborted() {
      return controller.signal.aborted;
    },
    get abortReason() {
      return controller.signal.reason;
    },
    whenAborted(callback: AbortListener | null) {
      listener = callback;
    },
    get abortListener() {
      return listener;
    },
  };
};

test('admission: FIFO, an aborted wait gives its turn back, a pause holds starts until resume', async () => {
  const slots = new WorkerSlots(1);
  const order: string[] = [];
  const first = await slots.acquire(start());
  const aborted = new AbortController();
  const second = slots.acquire(start(aborted));
  const third = slots.acquire(start()).then((slot) => (order.push('third'), slot));
  aborted.abort(new Error('gone'));
  await assert.rejects(second, /gone/);
  slots.pause();
  const held = slots.acquire(start()).then((slot) => (order.push('held'), slot));
  first.release();
  (await third).release();
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual([order, slots.paused], [['third'], true]);
  slots.resume();
  (await held).release();
  assert.deepEqual(order, ['third', 'held']);
});

test('admission: a cancel while queued rejects the wait at once and gives the turn back in order', async () => {
  const slots = new WorkerSlots(1);
  const first = await slots.acquire(start());
  const controller = new AbortController();
  const queued = slots.acquire(start(controller));
  const next = slots.acquire(start());
  controller.abort(new Error('cancelled while queued'));
  await assert.rejects(queued, /cancelled while queued/);
  first.release();
  (await next).release(); // the cancelled wait's turn was given back
});

test('a worker makes its row queue at first use, discarding and closed as its facts already say', () => {
  const { store } = recorded();
  const end = { kind: 'finished', state: 'canceled', error: null, commandTag: null, rowCount: 0 } as const;
  // Submitted (born discarding), cancelled and ended while pending, read only afterwards.
  const submitted = new Worker(launchPlan('SELECT 1', undefined, instance, true), 'alice', store);
  submitted.apply({ kind: 'cancel-requested', reason: 'cancel' });
  submitted.apply(end);
  assert.equal(submitted.info(Date.now()).queuedBytes, 0);
  assert.deepEqual([submitted.queue.discarding, submitted.queue.closed, submitted.queue.length], [true, true, 0]);
  assert.equal(submitted.queue, submitted.queue, 'one queue, kept');
  // Launched (rows wanted), read while pending: neither discarding nor closed until its facts say so.
  const launched = new Worker(launchPlan('SELECT 1', undefined, instance, false), 'alice', store);
  const queue = launched.queue;
  assert.deepEqual([queue.discarding, queue.closed], [false, false]);
  queue.push(['1'], 10);
  assert.equal(launched.info(Date.now()).queuedBytes, 10);
  launched.apply({ kind: 'discarded', reason: 'detach' });
  assert.deepEqual([queue.discarding, queue.dropped, queue.closed], [true, 1, false]);
  launched.apply(end);
  assert.equal(queue.closed, true);
  // Ended before its first read, rows never wanted discarded: closed, not discarding.
  const ended = new Worker(launchPlan('SELECT 1', undefined, instance, false), 'alice', store);
  ended.apply({ ...end, state: 'error' });
  assert.deepEqual([ended.queue.discarding, ended.queue.closed], [false, true]);
});
