// What `pg-background list` prints, offline, from rows shaped as the view gives them: jobs'
// subtasks indented under their root in launch order, roots newest first, the progress bar,
// durations frozen at the end, control characters of labels neutralised, --json's rows.
// (cli.test.ts runs the command itself against the server.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { MonitoredWorker } from 'pg-background';
import { formatElapsed, jsonRows, progressBar, renderTable, treeOrder } from '../src/cli/table.js';

const t0 = Date.parse('2026-03-04T10:00:00.000Z');

function worker(fields: Partial<MonitoredWorker> & { cookie: bigint; launchedAt: Date }): MonitoredWorker {
  return {
    pid: 0,
    label: null,
    scope: 'root',
    parent: null,
    state: 'running',
    phase: null,
    fractionCompleted: null,
    sqlPreview: null,
    user: 'app',
    owner: null,
    attempts: 1,
    startedAt: fields.launchedAt,
    updatedAt: null,
    finishedAt: null,
    elapsedMs: 0,
    waitEvent: null,
    blockedBy: [],
    sqlstate: null,
    errorMessage: null,
    commandTag: null,
    rowCount: null,
    ...fields,
  };
}

const at = (s: number) => new Date(t0 + s * 1000);
const job = worker({
  cookie: -7n,
  launchedAt: at(0),
  label: 'reshard prod',
  phase: 'copying data',
  fractionCompleted: 0.5,
  elapsedMs: 65_000,
  owner: 'web-1:4242',
});
const orders = worker({
  cookie: 11n,
  pid: 4711,
  scope: 'subtask',
  parent: -7n,
  launchedAt: at(5),
  label: 'orders',
  phase: 'COPY FROM',
  fractionCompleted: 0.7349,
  elapsedMs: 60_000,
  owner: 'web-1:4242',
  waitEvent: 'IO:DataFileRead',
});
const customers = worker({
  cookie: 12n,
  pid: 4712,
  scope: 'subtask',
  parent: -7n,
  launchedAt: at(4),
  label: 'customers',
  state: 'stopped',
  fractionCompleted: 1,
  elapsedMs: 29_000,
  finishedAt: at(33),
  owner: 'web-1:4242',
});
const reindex = worker({
  cookie: 98765n,
  pid: 4800,
  launchedAt: at(62),
  label: 'evil\x1b[2Jlabel\n',
  phase: 'building index: scanning table',
  fractionCompleted: 0.12,
  elapsedMs: 3_040,
  owner: 'web-2:77',
  waitEvent: 'Lock:relation',
  blockedBy: [4711],
});

test('roots newest first, each with its subtasks under it in launch order; an orphan subtask stands alone', () => {
  const orphan = worker({ cookie: 50n, pid: 9, scope: 'subtask', parent: 999n, launchedAt: at(1) });
  const order = treeOrder([orders, reindex, customers, job, orphan]).map(({ worker: w, depth }) => [w.cookie, depth]);
  assert.deepEqual(order, [
    [98765n, 0],
    [50n, 0],
    [-7n, 0],
    [12n, 1],
    [11n, 1],
  ]);
});

test('the table: pid:cookie ids, indentation, progress bars, local start times, frozen elapsed, no control characters', () => {
  process.env.TZ = 'UTC';
  const lines = renderTable([reindex, job, orders, customers], { now: at(65) });
  assert.deepEqual(lines, [
    'ID          SCOPE    LABEL           STATE    PHASE                           PROGRESS           STARTED   ELAPSED  OWNER       WAIT',
    '4800:98765  root     evil?[2Jlabel?  running  building index: scanning table  [#---------]  12%  10:01:02  3.0s     web-2:77    Lock:relation',
    '0:-7        root     reshard prod    running  copying data                    [#####-----]  50%  10:00:00  1m05s    web-1:4242',
    ' └ 4712:12  subtask  customers       stopped                                  [##########] 100%  10:00:04  29.0s    web-1:4242',
    ' └ 4711:11  subtask  orders          running  COPY FROM                       [#######---]  73%  10:00:05  1m00s    web-1:4242  IO:DataFileRead',
    '(4 workers: 3 running, 1 stopped)',
  ]);
  assert.deepEqual(renderTable([], { now: at(0) }), ['(no workers)']);
  // Another day: the date too.
  assert.match(renderTable([job], { now: at(86_400) })[1]!, /\] {2}50% {2}2026-03-04 10:00 {2}1m05s /);
});

test('progress bars and durations', () => {
  assert.deepEqual([null, 0, 0.005, 0.5, 0.999, 1, 1.5].map(progressBar), [
    '',
    '[----------]   0%',
    '[----------]   0%',
    '[#####-----]  50%',
    '[#########-]  99%',
    '[##########] 100%',
    '[##########] 100%',
  ]);
  assert.deepEqual([null, 0, 999, 59_999, 60_000, 245_000, 3_600_000, 7_380_000, 86_400_000 + 4 * 3_600_000].map(formatElapsed), [
    '',
    '0.0s',
    '0.9s',
    '59.9s',
    '1m00s',
    '4m05s',
    '1h00m',
    '2h03m',
    '1d04h',
  ]);
});

test('--json rows: the view’s column names in its order, bigints as strings, dates in ISO 8601', () => {
  const [row] = jsonRows([orders]);
  assert.deepEqual(row, {
    cookie: '11',
    pid: 4711,
    label: 'orders',
    scope: 'subtask',
    parent: '-7',
    state: 'running',
    phase: 'COPY FROM',
    fraction_completed: 0.7349,
    sql_preview: null,
    user_name: 'app',
    owner: 'web-1:4242',
    attempts: 1,
    launched_at: '2026-03-04T10:00:05.000Z',
    started_at: '2026-03-04T10:00:05.000Z',
    updated_at: null,
    finished_at: null,
    elapsed_ms: 60_000,
    wait_event: 'IO:DataFileRead',
    blocked_by: [],
    sqlstate: null,
    error_message: null,
    command_tag: null,
    row_count: null,
  });
  // No bigint is left for JSON.stringify to throw on.
  assert.doesNotThrow(() => JSON.stringify(jsonRows([job, orders, customers, reindex])));
});
