// Every example in examples/ runs as a user would run it (a child process importing
// 'pg-background') against this file's fresh database: it must exit 0 on its own, in time,
// and print what its README paragraph promises.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { useDatabase } from './support/database.js';

const db = useDatabase(import.meta.filename);
const root = join(import.meta.dirname, '..');
const EXIT_TIMEOUT_MS = 60_000;

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs examples/<name>.ts with DATABASE_URL set; kills it if it does not exit in time. */
function runExample(name: string): Promise<Run> {
  const child = spawn(process.execPath, ['--conditions=pg-background-source', '--import', 'tsx', join('examples', `${name}.ts`)], {
    cwd: root,
    env: { ...process.env, DATABASE_URL: db.url },
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  // An example that leaves a connection or timer behind never exits: that is a failure too.
  const timer = setTimeout(() => child.kill('SIGKILL'), EXIT_TIMEOUT_MS);
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Runs the example, asserts a clean exit and that its output matches every pattern. */
async function check(name: string, patterns: RegExp[]): Promise<void> {
  const run = await runExample(name);
  const output = `--- stdout\n${run.stdout}\n--- stderr\n${run.stderr}`;
  assert.equal(run.signal, null, `${name} did not exit within ${EXIT_TIMEOUT_MS} ms\n${output}`);
  assert.equal(run.code, 0, `${name} exited with ${run.code}\n${output}`);
  for (const pattern of patterns) assert.match(run.stdout, pattern, `${name}: expected ${pattern}\n${output}`);
}

test('demo: live list, rows, a cancel, an error, stats, clean exit', async () => {
  await check('demo', [
    /^ {2}report +\d+ +running /m, // seen while it ran
    /^ {2}report +\d+ +stopped +90% Aggregating /m, // its last progress stays listed
    /^ {2}north +5000 orders/m,
    /count: 20000 orders/,
    /audit: INSERT 1/,
    /sleeper after cancel\(\): canceled \(by cancel\)/,
    /^ {2}sleeper +\d+ +canceled /m,
    /sqlstate: '22012'/,
    /division by zero/,
    /workersLaunched: 5/,
    /workersCanceled: 1/,
    /workersActive: 0/,
  ]);
});

test('audit-log: the audit row commits although the caller rolls back', async () => {
  await check('audit-log', [/transaction rolled back: insufficient funds/, /balance of account 1: 300 \(unchanged\)/, /audit rows: 1/, /alice: withdraw 500/]);
});

test('parallel-counts: one worker per table, at most maxWorkers at a time', async () => {
  await check('parallel-counts', [
    /^customers +1,000$/m,
    /^orders +250,000$/m,
    /^order_lines +600,000$/m,
    /^invoices +40,000$/m,
    /^events +0$/m,
    /^5 workers \(at most 3 at a time\)/m,
  ]);
});

test('run-with-timeout: the quick statement returns rows, the slow one is cancelled', async () => {
  await check('run-with-timeout', [
    /quick: state stopped/,
    /answer: 42/,
    /slow: still running after 500 ms, cancelling/,
    /slow: state canceled/,
    /slow: canceling statement due to user request/,
    /rows: null/,
  ]);
});

test('background-vacuum: VACUUM (ANALYZE) runs as a single statement on a submitted worker', async () => {
  await check('background-vacuum', [/vacuum events: stopped \(VACUUM\)/, /reltuples: \S+ -> 100000,/]);
});

test('batch-helpers: run with a deadline, waitAny, drain in order, cancelByLabel, purge', async () => {
  await check('batch-helpers', [
    /run quick: stopped, answer 42/,
    /run slow: canceled, timedOut true, sqlstate 57014/,
    /first to finish: batch\/0/,
    /^batch\/2: stopped \(SELECT 1\)\nbatch\/0: stopped \(SELECT 1\)\nbatch\/1: stopped \(SELECT 1\)$/m,
    /cancelled by label 'etl\/%': 2/,
    /still running: report$/m,
    /purged: 6, left: 0/,
    /stats: timed out 1, canceled 4, completed 4/,
  ]);
});

test('reshard: a job with phases and parallel subtasks, live progress, the tree in list()', async () => {
  await check('reshard', [
    /^\[reshard\] syncing schema\n\[reshard\] copying data 0%\n\[reshard\] copying data 25%\n\[reshard\] copying data 50%\n\[reshard\] copying data 75%\n\[reshard\] copying data 100%\n\[reshard\] verifying 100%$/m,
    /^\[reshard\] done: 50000 \+ 50000 \+ 50000 \+ 50000 = 200000 rows 100%$/m,
    /^ {2}copy shard 3 +stopped +under root$/m,
    /^ {2}schema +stopped +under root$/m,
    /^root reshard orders \(pid 0\) +stopped$/m,
    /^workers: 10 launched, 10 completed, 0 failed$/m,
  ]);
});

test('the examples leave no schema behind (only the progress function install() created)', async () => {
  const left = await db.query(
    "SELECT nspname FROM pg_namespace WHERE nspname ~ '^(pgbg_demo|audit_example_|counts_example_|vacuum_example_|reshard_example_)'",
  );
  assert.deepEqual(left, []);
  assert.equal((await db.query("SELECT 1 FROM pg_proc WHERE proname = 'pg_background_progress'")).length, 1);
});
