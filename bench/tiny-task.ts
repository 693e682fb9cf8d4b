// Scenario 1, tiny task: the fixed cost of one background task. Sequentially, `await
// bg.launch('SELECT 1')` and read its one row, against `client.query('SELECT 1')` on an open
// pg.Client. Both sides get the same warm-up (50) and the same number of timed iterations (300),
// timed back to back on each side (the side that goes first alternates between runs).
//
// Note: on this kind of machine the ratio is sensitive to how the two loops are arranged. When
// the iterations are interleaved in small blocks, the library's figure is worse (its
// connections' background resets then fall between tasks rather than overlapping the next
// task); PGBG_BENCH_TINY_BLOCK=25 switches to that arrangement for comparison.
import pg from 'pg';
import { PgBackground } from 'pg-background';
import {
  findMetric,
  libraryBackends,
  medianRun,
  metric,
  now,
  sleep,
  summarize,
  target,
  withClient,
  type BenchContext,
  type RunReport,
  type ScenarioReport,
} from './measure.js';

/** Untimed iterations per side first; PGBG_BENCH_TINY_WARMUP overrides (steady-state JIT needs more). */
const WARMUP = Number(process.env.PGBG_BENCH_TINY_WARMUP ?? 50);
const ITERATIONS = 300;
/** Timed iterations per block when interleaving; ITERATIONS = one block per side (no interleaving). */
const BLOCK = Number(process.env.PGBG_BENCH_TINY_BLOCK ?? ITERATIONS);
if (!Number.isInteger(WARMUP) || WARMUP < 0) throw new Error('PGBG_BENCH_TINY_WARMUP must be a non-negative integer');
if (!Number.isInteger(BLOCK) || BLOCK < 1 || ITERATIONS % BLOCK !== 0) throw new Error(`PGBG_BENCH_TINY_BLOCK must divide ${ITERATIONS}`);
/**
 * PGBG_BENCH_TINY_MULTI=1: a two-statement task, which the library sends one Parse per statement
 * inside its own BEGIN/COMMIT, against pg's multi-statement simple query of the same text.
 */
const MULTI = process.env.PGBG_BENCH_TINY_MULTI === '1';
const SQL = MULTI ? 'SELECT 2; SELECT 1' : 'SELECT 1';

function checkRows(rows: readonly Record<string, unknown>[]): void {
  if (rows.length !== 1 || rows[0]!['?column?'] !== 1) throw new Error(`tiny task: unexpected result ${JSON.stringify(rows)}`);
}

async function runOnce(url: string, libFirst: boolean): Promise<RunReport> {
  const bg = new PgBackground({ connectionString: url });
  const client = new pg.Client({ connectionString: url, application_name: 'pgbg-bench-baseline' });
  await client.connect();
  try {
    const pids = new Set<number>();
    const libTimes: number[] = [];
    const launchTimes: number[] = [];
    const baseTimes: number[] = [];

    const libOnce = async (timed: boolean) => {
      const t0 = now();
      const h = await bg.launch(SQL);
      const t1 = now();
      checkRows(await bg.result(h).toArray());
      if (!timed) return;
      libTimes.push(now() - t0);
      launchTimes.push(t1 - t0);
      pids.add(h.pid);
    };
    const baseOnce = async (timed: boolean) => {
      const t0 = now();
      const result = (await client.query(SQL)) as pg.QueryResult | pg.QueryResult[];
      if (timed) baseTimes.push(now() - t0);
      checkRows((Array.isArray(result) ? result.at(-1)! : result).rows);
    };

    for (let i = 0; i < WARMUP; i++) await libOnce(false);
    for (let i = 0; i < WARMUP; i++) await baseOnce(false);
    await sleep(20);

    for (let block = 0; block < (2 * ITERATIONS) / BLOCK; block++) {
      const lib = (block % 2 === 0) === libFirst;
      for (let i = 0; i < BLOCK; i++) await (lib ? libOnce(true) : baseOnce(true));
      // Untimed: let the library's last background reset finish before the other side runs.
      await sleep(5);
    }

    // How many worker connections the sequential loop ended up with (diagnostic): a launch that
    // finds no reset connection opens a new one rather than wait for the reset in flight.
    const connections = await withClient(url, libraryBackends);
    const l = summarize(libTimes);
    const b = summarize(baseTimes);
    return {
      metrics: [metric('median latency', 'ms', l.median, b.median), metric('p95 latency', 'ms', l.p95, b.p95), metric('mean latency', 'ms', l.mean, b.mean)],
      targets: [target('median latency ratio (lib/pg)', l.median / b.median, '<=', 2)],
      extra: {
        iterations: ITERATIONS,
        warmup: WARMUP,
        block: BLOCK,
        startsWith: libFirst ? 'library' : 'pg',
        lib: l,
        baseline: b,
        libLaunchMedianMs: summarize(launchTimes).median,
        libOver2ms: libTimes.filter((t) => t > 2).length,
        baselineOver2ms: baseTimes.filter((t) => t > 2).length,
        libWorkerConnectionsAtEnd: connections,
        libDistinctPidsInTimedLoop: pids.size,
      },
    };
  } finally {
    await client.end();
    await bg.close();
  }
}

export async function tinyTask(ctx: BenchContext): Promise<ScenarioReport> {
  const runs: RunReport[] = [];
  for (let i = 0; i < ctx.runs; i++) {
    const run = await runOnce(ctx.url, i % 2 === 0);
    const m = findMetric(run, 'median latency');
    ctx.log(`tiny run ${i + 1}: lib ${m.lib.toFixed(3)} ms, pg ${m.baseline!.toFixed(3)} ms, ratio ${m.ratio!.toFixed(2)}`);
    runs.push(run);
  }
  return medianRun(runs, 'median latency ratio', (run) => findMetric(run, 'median latency').ratio!, 'tiny-task');
}
