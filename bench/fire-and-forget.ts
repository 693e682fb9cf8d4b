// Scenario 2, fire-and-forget: 2000 single-row INSERTs submitted at once with bg.submit()
// (maxWorkers 16, whenFull 'queue'), done when every handle has been waited for; against the same
// INSERTs through a pg.Pool of 16 connections driven at concurrency 16. Both sides first run a
// warm-up round of the same INSERTs the same way (connections open, JIT and the backends'
// caches warm); the warm-up rows are deleted, so the timed round must leave exactly 2000 rows.
// The library also runs with the journal on (journal: true, in the same run): its cost is the
// throughput lost against the library without it (each INSERT's transaction then ends with the
// journal's record of its end, and the rows go in batches on the control connection).
import pg from 'pg';
import { PgBackground, type WorkerHandle } from 'pg-background';
import { findMetric, medianRun, metric, now, sleep, target, withClient, type BenchContext, type RunReport, type ScenarioReport } from './measure.js';

const TASKS = 2000;
const CONCURRENCY = 16;
const WARMUP_TASKS = 2000;
const INSERT = 'INSERT INTO bench_ff (id, payload) VALUES ($1, $2)';

async function prepareTable(url: string): Promise<void> {
  await withClient(url, async (client) => {
    await client.query('CREATE TABLE IF NOT EXISTS bench_ff (id int NOT NULL, payload text NOT NULL)');
    await client.query('TRUNCATE bench_ff');
  });
}

async function countRows(url: string): Promise<number> {
  return withClient(url, async (client) => (await client.query<{ n: number }>('SELECT count(*)::int AS n FROM bench_ff')).rows[0]!.n);
}

/** Deletes the warm-up rows (DELETE, not TRUNCATE: the backends' relation caches stay valid). */
async function clearTable(url: string): Promise<void> {
  await withClient(url, (client) => client.query('DELETE FROM bench_ff'));
}

async function measureLibrary(url: string, journal = false): Promise<{ ms: number; failed: number }> {
  await prepareTable(url);
  const bg = new PgBackground({ connectionString: url, maxWorkers: CONCURRENCY, whenFull: 'queue', journal });
  if (journal) await bg.install({ journal: true });
  try {
    // Warm-up: the same INSERTs the same way; then let the last resets finish.
    const warm = await Promise.all(Array.from({ length: WARMUP_TASKS }, (_, i) => bg.submit({ text: INSERT, values: [-1 - i, 'warm-up'] })));
    await Promise.all(warm.map((h) => bg.wait(h)));
    await clearTable(url);
    // With the journal, its rows of the warm-up land first (a batch is at most a second late).
    await sleep(journal ? 1500 : 100);
    const before = await bg.stats();

    const t0 = now();
    const handles: WorkerHandle[] = await Promise.all(Array.from({ length: TASKS }, (_, i) => bg.submit({ text: INSERT, values: [i, `row ${i}`] })));
    await Promise.all(handles.map((h) => bg.wait(h)));
    const ms = now() - t0;

    const after = await bg.stats();
    const failed = after.workersFailed - before.workersFailed + (after.workersCanceled - before.workersCanceled);
    const n = await countRows(url);
    if (n !== TASKS) throw new Error(`fire-and-forget: expected ${TASKS} rows committed, found ${n}`);
    return { ms, failed };
  } finally {
    await bg.close();
  }
}

async function measureBaseline(url: string): Promise<number> {
  await prepareTable(url);
  const pool = new pg.Pool({ connectionString: url, max: CONCURRENCY, application_name: 'pgbg-bench-baseline' });
  try {
    const round = async (count: number, id: (i: number) => number) => {
      let next = 0;
      await Promise.all(
        Array.from({ length: CONCURRENCY }, async () => {
          for (let i = next++; i < count; i = next++) await pool.query(INSERT, [id(i), `row ${i}`]);
        }),
      );
    };
    await round(WARMUP_TASKS, (i) => -1 - i);
    await clearTable(url);
    await sleep(100);
    const t0 = now();
    await round(TASKS, (i) => i);
    const ms = now() - t0;
    const n = await countRows(url);
    if (n !== TASKS) throw new Error(`fire-and-forget baseline: expected ${TASKS} rows, found ${n}`);
    return ms;
  } finally {
    await pool.end();
  }
}

async function runOnce(url: string, libFirst: boolean): Promise<RunReport> {
  let lib: { ms: number; failed: number };
  let baseMs: number;
  let journaled = { ms: 0, failed: 0 };
  if (libFirst) {
    journaled = await measureLibrary(url, true);
    await sleep(200);
    lib = await measureLibrary(url);
    await sleep(200);
    baseMs = await measureBaseline(url);
  } else {
    baseMs = await measureBaseline(url);
    await sleep(200);
    lib = await measureLibrary(url);
  }
  // The journal's round goes first or last in turn (the order of the other two alternates too).
  if (!libFirst) {
    await sleep(200);
    journaled = await measureLibrary(url, true);
  }
  const libRate = TASKS / (lib.ms / 1000);
  const baseRate = TASKS / (baseMs / 1000);
  const journalRate = TASKS / (journaled.ms / 1000);
  return {
    metrics: [
      metric('throughput', 'tasks/s', libRate, baseRate),
      metric('wall time', 'ms', lib.ms, baseMs),
      metric('throughput with the journal', 'tasks/s', journalRate, libRate),
    ],
    targets: [
      target('throughput ratio (lib/pg)', libRate / baseRate, '>=', 0.9),
      target('journal cost (1 - journal/no journal)', 1 - journalRate / libRate, '<=', 0.25),
    ],
    extra: {
      tasks: TASKS,
      warmupTasks: WARMUP_TASKS,
      concurrency: CONCURRENCY,
      order: libFirst ? 'lib first' : 'baseline first',
      libFailedOrCanceled: lib.failed,
      journalFailedOrCanceled: journaled.failed,
    },
  };
}

export async function fireAndForget(ctx: BenchContext): Promise<ScenarioReport> {
  const runs: RunReport[] = [];
  for (let i = 0; i < ctx.runs; i++) {
    const run = await runOnce(ctx.url, i % 2 === 0);
    const m = findMetric(run, 'throughput');
    const j = findMetric(run, 'throughput with the journal');
    ctx.log(
      `fire-and-forget run ${i + 1}: lib ${m.lib.toFixed(0)} tasks/s, pg ${m.baseline!.toFixed(0)} tasks/s, ratio ${m.ratio!.toFixed(2)}; ` +
        `journal on ${j.lib.toFixed(0)} tasks/s (cost ${((1 - j.ratio!) * 100).toFixed(1)}%)`,
    );
    runs.push(run);
  }
  await withClient(ctx.url, (client) => client.query('DROP TABLE IF EXISTS bench_ff'));
  await withClient(ctx.url, (client) => client.query('TRUNCATE pg_background_journal').catch(() => {}));
  return medianRun(runs, 'throughput ratio', (run) => findMetric(run, 'throughput').ratio!, 'fire-and-forget');
}
