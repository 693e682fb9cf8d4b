// Scenario 4, bounded memory: 10,000,000 rows through a 64 KiB queue with a consumer that stops
// for 2 s every 1,000,000 rows. While it is stopped the worker must stop reading from the
// server, so Node's RSS stays flat however large the result. RSS is sampled every 50 ms (paused
// or not) and every 16,384 rows, against the RSS after a full GC just before the launch.
import { PgBackground } from 'pg-background';
import { collectGarbage, metric, MiB, now, rss, RssSampler, sleep, target, type BenchContext, type ScenarioReport } from './measure.js';

const ROWS = 10_000_000;
const PAUSE_EVERY = 1_000_000;
const PAUSE_MS = 2000;
const QUEUE_SIZE = 65536;
const SQL = `SELECT g, md5(g::text) FROM generate_series(1,${ROWS}) g`;

export async function boundedMemory(ctx: BenchContext): Promise<ScenarioReport> {
  const bg = new PgBackground({ connectionString: ctx.url });
  try {
    const warm = await bg.launch('SELECT 1');
    await bg.result(warm).toArray();
    await sleep(100);
    await collectGarbage();
    const sampler = new RssSampler(50);
    let rows = 0;
    let pausedMs = 0;
    let firstRowMs = NaN;
    let maxQueuedBytes = 0;
    const t0 = now();
    const h = await bg.launch(SQL, { queueSize: QUEUE_SIZE });
    for await (const row of bg.result<{ g: number; md5: string }>(h)) {
      if (rows === 0) firstRowMs = now() - t0;
      rows++;
      if (row.g !== rows) throw new Error(`bounded memory: row ${rows} has g = ${row.g}`);
      if ((rows & 16383) === 0) sampler.sample();
      if (rows % PAUSE_EVERY === 0 && rows < ROWS) {
        const p0 = now();
        await sleep(PAUSE_MS / 2);
        // Half-way through the pause the queue has filled up: how much does it hold?
        const info = (await bg.list()).find((w) => w.pid === h.pid && w.cookie === h.cookie);
        if (info && info.queuedBytes > maxQueuedBytes) maxQueuedBytes = info.queuedBytes;
        await sleep(PAUSE_MS / 2);
        pausedMs += now() - p0;
        const mib = (rss() - sampler.start) / MiB;
        ctx.log(
          `bounded memory: ${rows.toLocaleString('en-US')} rows, RSS +${mib.toFixed(1)} MiB (peak +${(sampler.growth / MiB).toFixed(1)} MiB), queue ${info?.queuedBytes ?? '?'} bytes`,
        );
      }
    }
    const totalMs = now() - t0;
    const { growth, start, peak } = sampler.stop();
    if (rows !== ROWS) throw new Error(`bounded memory: expected ${ROWS} rows, got ${rows}`);
    const growthMiB = growth / MiB;
    return {
      scenario: 'bounded-memory',
      runs: 1,
      rankedBy: 'single run',
      allRuns: [growthMiB],
      chosenRun: 1,
      metrics: [
        metric('RSS growth (peak)', 'MiB', growthMiB),
        metric('throughput excl. pauses', 'rows/s', rows / ((totalMs - pausedMs) / 1000)),
        metric('time to first row', 'ms', firstRowMs),
        metric('wall time', 'ms', totalMs),
        metric('queued bytes mid-pause (max)', 'bytes', maxQueuedBytes),
      ],
      targets: [target('peak RSS growth (MiB)', growthMiB, '<=', 64)],
      extra: {
        rows: ROWS,
        queueSize: QUEUE_SIZE,
        pauses: Math.floor((ROWS - 1) / PAUSE_EVERY),
        pauseMs: PAUSE_MS,
        rssStartMiB: start / MiB,
        rssPeakMiB: peak / MiB,
        heapUsedPeakGrowthMiB: (sampler.heapPeak - sampler.heapStart) / MiB,
      },
    };
  } finally {
    await bg.close();
  }
}
