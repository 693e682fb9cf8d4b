// The registry's list of active workers (src/store/active-workers.ts), offline: launch order,
// any worker taken out in O(1) from the head, the middle or the tail, a repeat add or delete
// doing nothing, and its size and both ways of reading it always agreeing. No server.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { instanceOptions, launchPlan } from '../src/api/options.js';
import { ActiveWorkers } from '../src/store/active-workers.js';
import { Worker } from '../src/store/worker.js';

const instance = instanceOptions({ user: 'alice' });
const store = { changed() {} };
const workers = (n: number) => Array.from({ length: n }, () => new Worker(launchPlan('SELECT 1', undefined, instance, true), 'alice', store));

function contents(list: ActiveWorkers): Worker[] {
  const visited: Worker[] = [];
  list.forEach((worker) => visited.push(worker));
  assert.deepEqual([...list], visited, 'iteration and forEach agree');
  assert.equal(list.size, visited.length, 'size counts what is listed');
  return visited;
}

test('workers are listed in the order they were added; a second add changes nothing', () => {
  const list = new ActiveWorkers();
  const [a, b, c] = workers(3) as [Worker, Worker, Worker];
  assert.deepEqual(contents(list), []);
  assert.equal(list.add(a), true);
  assert.equal(list.add(b), true);
  assert.equal(list.add(c), true);
  assert.equal(list.add(b), false);
  assert.equal(list.add(a), false);
  assert.deepEqual(contents(list), [a, b, c]);
  assert.equal(list.has(a) && list.has(b) && list.has(c), true);
});

test('a worker leaves from the head, the middle or the tail, and only once; the list stays whole', () => {
  const list = new ActiveWorkers();
  const all = workers(5);
  for (const worker of all) list.add(worker);
  const [a, b, c, d, e] = all as [Worker, Worker, Worker, Worker, Worker];
  assert.equal(list.delete(c), true); // the middle
  assert.deepEqual(contents(list), [a, b, d, e]);
  assert.equal(list.delete(a), true); // the head
  assert.deepEqual(contents(list), [b, d, e]);
  assert.equal(list.delete(e), true); // the tail
  assert.deepEqual(contents(list), [b, d]);
  assert.equal(list.delete(c), false);
  assert.equal(list.delete(a), false);
  assert.equal(list.has(c), false);
  assert.deepEqual(contents(list), [b, d]);
  // A worker that left can come back, last; the one left alone is both ends.
  assert.equal(list.add(a), true);
  assert.deepEqual(contents(list), [b, d, a]);
  list.delete(b);
  list.delete(a);
  assert.deepEqual(contents(list), [d]);
  assert.equal(list.delete(d), true);
  assert.deepEqual(contents(list), []);
  assert.equal(list.has(d), false);
  assert.equal(list.add(e), true);
  assert.deepEqual(contents(list), [e]);
});

test('a long run of adds and deletes agrees with a Set of the same workers', () => {
  const list = new ActiveWorkers();
  const model = new Set<Worker>();
  const pool = workers(40);
  let seed = 7;
  const next = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31);
  for (let step = 0; step < 2000; step++) {
    const worker = pool[next() % pool.length]!;
    if (next() % 2) assert.equal(list.add(worker), !model.has(worker) && Boolean(model.add(worker)));
    else assert.equal(list.delete(worker), model.delete(worker));
    if (step % 97 === 0) assert.deepEqual(contents(list), [...model]);
  }
  assert.deepEqual(contents(list), [...model]);
});

test('the worker being visited may leave the list: the walk goes on to the next one', () => {
  const list = new ActiveWorkers();
  const all = workers(4);
  for (const worker of all) list.add(worker);
  const seen: Worker[] = [];
  list.forEach((worker) => {
    seen.push(worker);
    list.delete(worker);
  });
  assert.deepEqual(seen, all);
  assert.deepEqual(contents(list), []);
  for (const worker of all) list.add(worker);
  const iterated: Worker[] = [];
  for (const worker of list) {
    iterated.push(worker);
    if (worker === all[1]) list.delete(worker);
  }
  assert.deepEqual(iterated, all);
  assert.deepEqual(contents(list), [all[0], all[2], all[3]]);
});
