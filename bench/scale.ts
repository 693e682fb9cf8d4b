// Scenario 5, scale: 10,000 small tasks launched at once through whenFull 'queue' (maxWorkers 16),
// every result read. Reports tasks/s (with a pg.Pool of 16 doing the same queries as a
// reference), the peak RSS, the RSS once retention (retentionMs 1000) has pruned every finished
// worker, and the server connections of the instance left after close().
import pg from 'pg';
import { PgBackground } from 'pg-background';
import {
  collectGarbage,
  libraryBackends,
  metric,
  MiB,
  now,
  rss,
  RssSampler,
  sleep,
  target,
  withClient,
  type BenchContext,
  type ScenarioReport,
} from './measure.js';

const TASKS = 10_000;
const MAX_WORKERS = 16;
const RETENTION_MS = 1000;
const SQL = 'SELECT $1::int AS n';
const SETTLE_SECONDS = 8;

/** process.memoryUsage() in MiB, one decimal. */
function memory(): Record<string, number> {
  const usage = process.memoryUsage();
  return Object.fromEntries(Object.entries(usage).map(([key, value]) => [key, Math.round((value / MiB) * 10) / 10]));
}

async function baselineRate(url: string): Promise<number> {
  const pool = new pg.Pool({ connectionString: url, max: MAX_WORKERS, application_name: 'pgbg-bench-baseline' });
  try {
    await Promise.all(Array.from({ length: MAX_WORKERS }, () => pool.query('SELECT 1')));
    const t0 = now();
    await Promise.all(
      Array.from({ length: TASKS }, async (_, i) => {
        const { rows } = await pool.query<{ n: number }>(SQL, [i]);
        if (rows[0]?.n !== i) throw new Error(`scale baseline: task ${i} returned ${JSON.stringify(rows)}`);
      }),
    );
    return TASKS / ((now() - t0) / 1000);
  } finally {
    await pool.end();
  }
}

export async function scale(ctx: BenchContext): Promise<ScenarioReport> {
  // The library goes first, in a fresh process: its RSS start is not inflated by the reference run.
  await collectGarbage();
  const rssStart = rss();
  const memStart = memory();
  const sampler = new RssSampler(50);
  const bg = new PgBackground({ connectionString: ctx.url, maxWorkers: MAX_WORKERS, whenFull: 'queue', retentionMs: RETENTION_MS });
  let closed = false;
  try {
    const t0 = now();
    await Promise.all(
      Array.from({ length: TASKS }, async (_, i) => {
        const h = await bg.launch({ text: SQL, values: [i] });
        const rows = await bg.result<{ n: number }>(h).toArray();
        if (rows[0]?.n !== i) throw new Error(`scale: task ${i} returned ${JSON.stringify(rows)}`);
      }),
    );
    const ms = now() - t0;
    const rate = TASKS / (ms / 1000);
    const stats = await bg.stats();
    const listedAfterRun = (await bg.list()).length;
    const rssAfterRun = rss();

    // Retention: every finished worker (and its rows) is forgotten RETENTION_MS after finishing.
    const p0 = now();
    let listed = listedAfterRun;
    while (listed > 0 && now() - p0 < 30_000) {
      await sleep(100);
      listed = (await bg.list()).length;
    }
    const pruneWaitMs = now() - p0;
    const { peak } = sampler.stop();
    const heapPeakGrowth = (sampler.heapPeak - sampler.heapStart) / MiB;
    await collectGarbage();
    const rssAfterPrune = rss();
    const memAfterPrune = memory();

    await bg.close();
    closed = true;
    const { immediately, settledAfterMs, settled } = await withClient(ctx.url, async (client) => {
      const immediately = await libraryBackends(client);
      const c0 = now();
      let left = immediately;
      while (left > 0 && now() - c0 < 5000) {
        await sleep(20);
        left = await libraryBackends(client);
      }
      return { immediately, settled: left, settledAfterMs: now() - c0 };
    });
    await collectGarbage();
    const rssAfterClose = rss();
    const memAfterClose = memory();

    // Live heap is back right after pruning; the RSS follows only once V8's memory reducer has
    // shrunk the heap it grew for the burst, which takes a few seconds of idleness.
    const s0 = now();
    let rssSettled = rss();
    for (let second = 1; second <= SETTLE_SECONDS; second++) {
      await sleep(1000);
      await collectGarbage();
      rssSettled = rss();
    }
    const settleMs = now() - s0;
    const memSettled = memory();

    await sleep(200);
    const reference = await baselineRate(ctx.url);

    const growthAfterPrune = (rssAfterPrune - rssStart) / MiB;
    ctx.log(
      `scale: ${rate.toFixed(0)} tasks/s (pg.Pool reference ${reference.toFixed(0)}), peak RSS +${((peak - rssStart) / MiB).toFixed(1)} MiB, after prune +${growthAfterPrune.toFixed(1)} MiB, connections after close ${immediately}`,
    );
    return {
      scenario: 'scale',
      runs: 1,
      rankedBy: 'single run',
      allRuns: [rate],
      chosenRun: 1,
      metrics: [
        metric('throughput', 'tasks/s', rate, reference),
        metric('wall time', 'ms', ms, (TASKS / reference) * 1000),
        metric('peak RSS growth', 'MiB', (peak - rssStart) / MiB),
        metric('RSS growth after prune+GC', 'MiB', growthAfterPrune),
        metric('RSS growth after close+GC', 'MiB', (rssAfterClose - rssStart) / MiB),
        metric(`RSS growth after ${SETTLE_SECONDS} s idle+GC`, 'MiB', (rssSettled - rssStart) / MiB),
        metric('live heap growth after prune+GC', 'MiB', memAfterPrune.heapUsed! - memStart.heapUsed!),
        metric('time until list() empty', 'ms', pruneWaitMs),
        metric('connections right after close()', 'count', immediately),
      ],
      targets: [
        target('server connections after close()', immediately, '==', 0),
        // "RSS back within 20 MiB of its start": once V8 has given back the heap it grew for the
        // burst (the live heap is back right after pruning; see the metrics above).
        target(`RSS growth after prune, close and ${SETTLE_SECONDS} s idle (MiB)`, (rssSettled - rssStart) / MiB, '<=', 20),
      ],
      extra: {
        tasks: TASKS,
        maxWorkers: MAX_WORKERS,
        retentionMs: RETENTION_MS,
        stats,
        listedAfterRun,
        listedAtEnd: listed,
        rssStartMiB: rssStart / MiB,
        rssAfterRunMiB: rssAfterRun / MiB,
        rssPeakMiB: peak / MiB,
        heapUsedPeakGrowthMiB: heapPeakGrowth,
        // Where the RSS is: live JS heap vs what V8 holds (heapTotal) vs the rest (malloc, code).
        memoryMiB: { start: memStart, afterPrune: memAfterPrune, afterClose: memAfterClose, settled: memSettled },
        settleMs,
        rssAfterPruneMiB: rssAfterPrune / MiB,
        rssAfterCloseMiB: rssAfterClose / MiB,
        connectionsSettled: settled,
        connectionsSettledAfterMs: settledAfterMs,
      },
    };
  } finally {
    sampler.stop();
    if (!closed) await bg.close({ cancel: true });
  }
}
