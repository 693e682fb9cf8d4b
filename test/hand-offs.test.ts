// The hand-offs on a task's common path (issue 13's cuts): a start waits for its slot as an
// object the slot queue calls back, and a task's end reaches the launcher through a batch of
// ends rather than a promise each. Both keep the timing of the promises they replaced: a freed
// slot reaches the next start only after the previous worker's 'finished' listeners ran, in
// launch order, and a 'finished' listener never runs inside pg's parser (where the answer that
// ends a task arrives), nor inside the submit() that launched the worker.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { useDatabase } from './support/database.js';

const db = useDatabase(import.meta.filename);

test('one slot: each queued start gets it after the previous worker finished, its listeners first, in launch order', async () => {
  const bg = db.background({ maxWorkers: 1, whenFull: 'queue' });
  const events: string[] = [];
  bg.on('started', ({ label }) => events.push(`started ${label}`));
  bg.on('finished', ({ label, state }) => events.push(`finished ${label} ${state}`));
  await db.query('CREATE TABLE hand_offs_order (n int NOT NULL)');
  const handles = await Promise.all(
    ['a', 'b', 'c', 'd'].map((label, n) => bg.submit({ text: 'INSERT INTO hand_offs_order VALUES ($1)', values: [n] }, { label })),
  );
  for (const handle of handles) await bg.wait(handle);
  assert.deepEqual(events, [
    'started a',
    'finished a stopped',
    'started b',
    'finished b stopped',
    'started c',
    'finished c stopped',
    'started d',
    'finished d stopped',
  ]);
  assert.deepEqual(await db.query('SELECT n FROM hand_offs_order ORDER BY n'), [{ n: 0 }, { n: 1 }, { n: 2 }, { n: 3 }]);
});

test("a 'finished' listener runs neither inside pg's parser nor inside submit(), for tasks that end together", async () => {
  const bg = db.background({ maxWorkers: 4, whenFull: 'queue' });
  await db.query('CREATE TABLE hand_offs_stack (n int NOT NULL)');
  const stacks: string[] = [];
  let submitting = false;
  const inSubmit: boolean[] = [];
  bg.on('finished', () => {
    inSubmit.push(submitting);
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = Infinity; // the parser would be far below: the relay, the store, the launcher
    stacks.push(new Error('where').stack ?? '');
    Error.stackTraceLimit = limit;
  });
  const handles = [];
  for (let n = 0; n < 12; n++) {
    submitting = true;
    handles.push(bg.submit({ text: 'INSERT INTO hand_offs_stack VALUES ($1)', values: [n] }));
    submitting = false;
  }
  for (const handle of await Promise.all(handles)) await bg.wait(handle);
  assert.equal(stacks.length, 12);
  assert.deepEqual(inSubmit, Array(12).fill(false));
  // pg-protocol's parser and pg's per-message dispatch (Connection, Client) are nowhere below it.
  assert.deepEqual(
    stacks.map((stack) => /pg-protocol|node_modules\/pg\/lib/.test(stack)),
    Array(12).fill(false),
  );
  assert.deepEqual(await db.query('SELECT count(*)::int AS n FROM hand_offs_stack'), [{ n: 12 }]);
});
