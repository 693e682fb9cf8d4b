// The hand-offs a microtask later (src/core/soon-batch.ts), offline: never inside the call that
// made an item due, every item in the order it became due across batches, an item made due while
// others are heard heard in the same drain right after them, and a hear that throws reported as
// an unhandled rejection while the rest still hear theirs. No server.
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { SoonBatch } from '../src/core/soon-batch.js';

test('items are heard a microtask later, in the order they became due across batches, never inside add()', async () => {
  const heard: string[] = [];
  const ends = new SoonBatch<string>((item) => heard.push(`end ${item}`));
  const grants = new SoonBatch<string>((item) => heard.push(`grant ${item}`));
  ends.add('a');
  grants.add('b');
  ends.add('c');
  assert.deepEqual(heard, [], 'nothing is heard inside add()');
  await Promise.resolve();
  assert.deepEqual(heard, ['end a', 'grant b', 'end c']);
});

test('an item made due while another is heard comes right after it, in the same drain', async () => {
  const heard: string[] = [];
  const grants = new SoonBatch<string>((item) => heard.push(`grant ${item}`));
  const ends = new SoonBatch<string>((item) => {
    heard.push(`end ${item} begins`);
    grants.add(item); // the end frees a slot: the next start's grant is due
    heard.push(`end ${item} returns`);
  });
  let reaction = false;
  ends.add('1');
  ends.add('2');
  // A reaction queued after the drain was scheduled runs after the whole drain.
  void Promise.resolve().then(() => {
    reaction = true;
    heard.push('reaction');
  });
  await new Promise<void>((resolve) => setImmediate(resolve));
  assert.equal(reaction, true);
  assert.deepEqual(heard, ['end 1 begins', 'end 1 returns', 'end 2 begins', 'end 2 returns', 'grant 1', 'grant 2', 'reaction']);
});

test('a hear that throws is reported as an unhandled rejection, and the items after it are still heard', () => {
  // In a process of its own: the test runner treats an unhandled rejection in its own as a failure.
  const module = pathToFileURL(fileURLToPath(new URL('../src/core/soon-batch.ts', import.meta.url))).href;
  const script = `
    const { SoonBatch } = await import(${JSON.stringify(module)});
    const batch = new SoonBatch((item) => {
      if (item === 2) throw new Error('listener failed');
      console.log('heard', item);
    });
    batch.add(1);
    batch.add(2);
    batch.add(3);`;
  const child = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8' });
  assert.equal(child.stdout, 'heard 1\nheard 3\n');
  assert.match(child.stderr, /Error: listener failed/);
  assert.equal(child.status, 1, 'the rejection is unhandled: the process fails');
});
