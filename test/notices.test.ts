import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { WorkerNotice } from 'pg-background';
import { useDatabase } from './support/database.js';

const db = useDatabase(import.meta.filename);

test('notices from worker SQL reach the caller as events with the handle and label', async () => {
  const bg = db.background();
  const notices: WorkerNotice[] = [];
  bg.on('notice', (notice) => notices.push(notice));
  const h = await bg.launch(
    "DO $$ BEGIN RAISE NOTICE 'step %', 1; RAISE WARNING 'careful' USING DETAIL = 'the detail', HINT = 'a hint'; RAISE INFO 'fyi'; END $$; SELECT 1 AS x",
    { label: 'noisy' },
  );
  assert.deepEqual(await bg.result(h).toArray(), [{ x: 1 }]);
  assert.deepEqual(
    notices.map((n) => [n.severity, n.sqlstate, n.message, n.detail, n.hint, n.label, n.handle.pid, n.handle.cookie]),
    [
      ['NOTICE', '00000', 'step 1', null, null, 'noisy', h.pid, h.cookie],
      ['WARNING', '01000', 'careful', 'the detail', 'a hint', 'noisy', h.pid, h.cookie],
      ['INFO', '00000', 'fyi', null, null, 'noisy', h.pid, h.cookie],
    ],
  );
  assert.match(notices[0]!.context ?? '', /PL\/pgSQL function inline_code_block/);
  await bg.close();
});

test('many notices are delivered in order, none lost, also from submitted workers', async () => {
  const bg = db.background();
  const seen: string[] = [];
  bg.on('notice', (notice) => seen.push(notice.message));
  const h = await bg.submit("DO $$ BEGIN FOR i IN 1..2000 LOOP RAISE NOTICE '%', i; END LOOP; END $$");
  await bg.wait(h);
  assert.equal(seen.length, 2000);
  assert.deepEqual(seen.slice(0, 3), ['1', '2', '3']);
  assert.equal(seen.at(-1), '2000');
  await bg.close();
});

test("'finished' carries the worker's error info (null when it stopped)", async () => {
  const bg = db.background();
  const events: { state: string; sqlstate: string | null; message: string | null }[] = [];
  bg.on('finished', ({ state, error }) => events.push({ state, sqlstate: error?.sqlstate ?? null, message: error?.message ?? null }));
  await bg.wait(await bg.launch('SELECT 1'));
  await bg.wait(await bg.launch('SELECT 1/0'));
  assert.deepEqual(events, [
    { state: 'stopped', sqlstate: null, message: null },
    { state: 'error', sqlstate: '22012', message: 'division by zero' },
  ]);
  await bg.close();
});
