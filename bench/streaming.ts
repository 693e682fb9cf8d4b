// Scenario 3, streaming: 1,000,000 rows of (int, md5 text) read with `for await` from
// bg.result(h), against pg-query-stream on one open pg.Client. Time to first row runs from the
// launch (or client.query(stream)) call to the first row in the consumer's hands; RSS growth is
// the sampled peak over the RSS after a full GC just before the query.
//
// Each side of each run is measured in a fresh Node process: RSS hardly ever shrinks, so a side
// measured after the other in the same process would report the other's heap as its own. Inside
// that process, a 100,000-row warm-up query (untimed) comes first on both sides.
import pg from 'pg';
import QueryStream from 'pg-query-stream';
import { PgBackground } from 'pg-background';
import { collectGarbage, findMetric, medianRun, metric, MiB, now, RssSampler, runSide, sleep, target, type BenchContext, type RunReport, type ScenarioReport } from './measure.js';

const ROWS = 1_000_000;
const WARMUP_ROWS = 100_000;
const sql = (rows: number) => `SELECT g, md5(g::text) FROM generate_series(1,${rows}) g`;
const SAMPLE_EVERY_ROWS = 16_384;

export type StreamSide = 'lib' | 'pg';

export interface StreamFigures {
  totalMs: number;
  firstRowMs: number;
  rows: number;
  rssGrowth: number;
  heapPeakGrowth: number;
}

interface Row {
  g: number;
  md5: string;
}

function check(row: Row, index: number): void {
  if (row.g !== index + 1 || typeof row.md5 !== 'string' || row.md5.length !== 32) {
    throw new Error(`streaming: unexpected row #${index}: ${JSON.stringify(row)}`);
  }
}

/** Reads `rows` from what `start` returns; times the whole read and the first row. */
async function consume(rows: number, start: () => Promise<AsyncIterable<Row>>): Promise<StreamFigures> {
  await collectGarbage();
  const sampler = new RssSampler();
  let n = 0;
  let firstRowMs = NaN;
  const t0 = now();
  for await (const row of await start()) {
    if (n === 0) firstRowMs = now() - t0;
    if (n % 100_003 === 0) check(row, n);
    if (n % SAMPLE_EVERY_ROWS === 0) sampler.sample();
    n++;
  }
  const totalMs = now() - t0;
  const { growth } = sampler.stop();
  if (n !== rows) throw new Error(`streaming: expected ${rows} rows, got ${n}`);
  return { totalMs, firstRowMs, rows: n, rssGrowth: growth, heapPeakGrowth: sampler.heapPeak - sampler.heapStart };
}

/** One side, measured in this (fresh) process. */
export async function streamingSide(url: string, side: StreamSide): Promise<StreamFigures> {
  if (side === 'lib') {
    const bg = new PgBackground({ connectionString: url });
    try {
      const read = (rows: number) =>
        consume(rows, async () => {
          const h = await bg.launch(sql(rows));
          return bg.result<Row>(h);
        });
      await read(WARMUP_ROWS);
      // Let the warm-up connection's reset finish: the measured launch then gets a warm one.
      await sleep(100);
      return await read(ROWS);
    } finally {
      await bg.close();
    }
  }
  const client = new pg.Client({ connectionString: url, application_name: 'pgbg-bench-baseline' });
  await client.connect();
  try {
    const read = (rows: number) => consume(rows, async () => client.query(new QueryStream(sql(rows))) as AsyncIterable<Row>);
    await read(WARMUP_ROWS);
    await sleep(100);
    return await read(ROWS);
  } finally {
    await client.end();
  }
}

async function runOnce(libFirst: boolean): Promise<RunReport> {
  const measure = (side: StreamSide) => runSide<StreamFigures>(['stream', side]);
  let lib: StreamFigures;
  let base: StreamFigures;
  if (libFirst) {
    lib = await measure('lib');
    base = await measure('pg');
  } else {
    base = await measure('pg');
    lib = await measure('lib');
  }
  const libRate = lib.rows / (lib.totalMs / 1000);
  const baseRate = base.rows / (base.totalMs / 1000);
  return {
    metrics: [
      metric('throughput', 'rows/s', libRate, baseRate),
      metric('time to first row', 'ms', lib.firstRowMs, base.firstRowMs),
      metric('wall time', 'ms', lib.totalMs, base.totalMs),
      metric('RSS growth (peak)', 'MiB', lib.rssGrowth / MiB, base.rssGrowth / MiB),
      metric('JS heap growth (peak)', 'MiB', lib.heapPeakGrowth / MiB, base.heapPeakGrowth / MiB),
    ],
    targets: [
      target('rows/s ratio (lib/pg-query-stream)', libRate / baseRate, '>=', 0.9),
      target('first-row ratio (lib/pg-query-stream)', lib.firstRowMs / base.firstRowMs, '<=', 1.5),
    ],
    extra: { rows: ROWS, warmupRows: WARMUP_ROWS, order: libFirst ? 'lib first' : 'baseline first', queueSize: 65536, queryStreamBatchSize: 100 },
  };
}

export async function streaming(ctx: BenchContext): Promise<ScenarioReport> {
  const runs: RunReport[] = [];
  for (let i = 0; i < ctx.runs; i++) {
    const run = await runOnce(i % 2 === 0);
    const t = findMetric(run, 'throughput');
    const f = findMetric(run, 'time to first row');
    const r = findMetric(run, 'RSS growth (peak)');
    ctx.log(
      `streaming run ${i + 1}: lib ${t.lib.toFixed(0)} rows/s, pg-query-stream ${t.baseline!.toFixed(0)} rows/s (ratio ${t.ratio!.toFixed(2)}); ` +
        `first row ${f.lib.toFixed(1)} vs ${f.baseline!.toFixed(1)} ms; RSS +${r.lib.toFixed(1)} vs +${r.baseline!.toFixed(1)} MiB`,
    );
    runs.push(run);
  }
  return medianRun(runs, 'rows/s ratio', (run) => findMetric(run, 'throughput').ratio!, 'streaming');
}
