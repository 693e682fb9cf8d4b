// Scenario 3, streaming: 1,000,000 rows of (int, md5 text) read with `for await` from
// bg.result(h) (and from bg.result(h).stream(), the Readable), against pg-query-stream on one
// open pg.Client at three batch sizes: its default of 100 rows per round trip, 1000 and 10000
// (a larger batch means fewer round trips, but a later first row and more rows held at once).
// Time to first row runs from the launch (or client.query(stream)) call to the first row in the
// consumer's hands; RSS growth is the sampled peak over the RSS after a full GC just before the
// query.
//
// Cursor mode (launch(sql, { cursor: { batchRows } })) is measured at the same two larger batch
// sizes as pg-query-stream, which is built on the same pg-cursor; the raw floor is the wire
// alone: one simple query through a bare Submittable on a pg.Client that hands each DataRow's
// text fields to the consumer as they are parsed off the socket (pg-protocol's parsing, then
// Number() of the int; no queue, no type parsers, no backpressure, nothing kept).
//
// Each side of each run is measured in a fresh Node process: RSS hardly ever shrinks, so a side
// measured after the other in the same process would report the other's heap as its own. Inside
// that process, a 100,000-row warm-up query (untimed) comes first on both sides.
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import QueryStream from 'pg-query-stream';
import { PgBackground } from 'pg-background';
import {
  collectGarbage,
  findMetric,
  medianRun,
  metric,
  MiB,
  now,
  RssSampler,
  runSide,
  sleep,
  target,
  type BenchContext,
  type RunReport,
  type ScenarioReport,
} from './measure.js';

const ROWS = 1_000_000;
const WARMUP_ROWS = 100_000;
const sql = (rows: number) => `SELECT g, md5(g::text) FROM generate_series(1,${rows}) g`;
const SAMPLE_EVERY_ROWS = 16_384;

/** pg-query-stream's batch sizes compared: its default, and two larger ones. */
export const QUERY_STREAM_BATCHES = [100, 1000, 10000] as const;
export type QueryStreamBatch = (typeof QUERY_STREAM_BATCHES)[number];

/** Cursor mode's batch sizes (batchRows). */
export const CURSOR_BATCHES = [1000, 10000] as const;
export type CursorBatch = (typeof CURSOR_BATCHES)[number];

/**
 * `lib`: for await over result(h); `lib-stream`: result(h).stream() through stream.pipeline into
 * a Writable; `cursor-<batch>`: for await over result(h) of a cursor-mode launch; `pg-<batch>`:
 * for await over pg-query-stream; `raw`: the wire floor (a bare Submittable, see above).
 */
export type StreamSide = 'lib' | 'lib-stream' | `cursor-${CursorBatch}` | `pg-${QueryStreamBatch}` | 'raw';

export function isStreamSide(side: string | undefined): side is StreamSide {
  return (
    side === 'lib' ||
    side === 'lib-stream' ||
    side === 'raw' ||
    CURSOR_BATCHES.some((batch) => side === `cursor-${batch}`) ||
    QUERY_STREAM_BATCHES.some((batch) => side === `pg-${batch}`)
  );
}

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

/**
 * Reads `rows` from what `start` returns, with `for await`, or with stream.pipeline into a
 * Writable for a Readable (a stream's natural consumer); times the whole read and the first row.
 */
/** A source that pushes rows itself, resolving at the end (the raw floor). */
type Pusher = (take: (row: Row) => void) => Promise<void>;

async function consume(rows: number, start: () => Promise<AsyncIterable<Row> | Readable | Pusher>): Promise<StreamFigures> {
  await collectGarbage();
  const sampler = new RssSampler();
  let n = 0;
  let firstRowMs = NaN;
  const t0 = now();
  const take = (row: Row) => {
    if (n === 0) firstRowMs = now() - t0;
    if (n % 100_003 === 0) check(row, n);
    if (n % SAMPLE_EVERY_ROWS === 0) sampler.sample();
    n++;
  };
  const source = await start();
  if (typeof source === 'function') {
    await source(take);
  } else if (source instanceof Readable) {
    const sink = new Writable({
      objectMode: true,
      write(row: Row, _encoding, callback) {
        take(row);
        callback();
      },
    });
    await pipeline(source, sink);
  } else {
    for await (const row of source) take(row);
  }
  const totalMs = now() - t0;
  const { growth } = sampler.stop();
  if (n !== rows) throw new Error(`streaming: expected ${rows} rows, got ${n}`);
  return { totalMs, firstRowMs, rows: n, rssGrowth: growth, heapPeakGrowth: sampler.heapPeak - sampler.heapStart };
}

/** One side, measured in this (fresh) process. */
export async function streamingSide(url: string, side: StreamSide): Promise<StreamFigures> {
  if (side === 'lib' || side === 'lib-stream' || side.startsWith('cursor-')) {
    const bg = new PgBackground({ connectionString: url });
    const cursor = side.startsWith('cursor-') ? { cursor: { batchRows: Number(side.slice('cursor-'.length)) } } : {};
    try {
      const read = (rows: number) =>
        consume(rows, async () => {
          const h = await bg.launch(sql(rows), cursor);
          const result = bg.result<Row>(h);
          return side === 'lib' ? result : result.stream();
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
    const batchSize = Number(side.slice('pg-'.length));
    const read = (rows: number) =>
      consume(rows, async () =>
        side === 'raw' ? wire(client, sql(rows)) : (client.query(new QueryStream(sql(rows), [], { batchSize })) as AsyncIterable<Row>),
      );
    await read(WARMUP_ROWS);
    await sleep(100);
    return await read(ROWS);
  } finally {
    await client.end();
  }
}

/** The raw floor: `text` as one simple Query, each DataRow handed on as it is parsed. */
function wire(client: pg.Client, text: string): Pusher {
  return (take) =>
    new Promise((resolve, reject) => {
      let failure: Error | null = null;
      const submittable = {
        submit: (connection: { query(text: string): void }) => connection.query(text),
        handleRowDescription() {},
        handleDataRow: ({ fields }: { fields: string[] }) => take({ g: Number(fields[0]), md5: fields[1]! }),
        handleCommandComplete() {},
        handleEmptyQuery() {},
        handlePortalSuspended() {},
        handleCopyInResponse() {},
        handleCopyData() {},
        handleError: (error: Error) => void (failure = error),
        handleReadyForQuery: () => (failure ? reject(failure) : resolve()),
      };
      (client as unknown as { query(submittable: object): void }).query(submittable);
    });
}

const rate = (figures: StreamFigures) => figures.rows / (figures.totalMs / 1000);

async function runOnce(libFirst: boolean): Promise<RunReport> {
  const sides: StreamSide[] = [
    'lib',
    'lib-stream',
    ...CURSOR_BATCHES.map((batch) => `cursor-${batch}` as const),
    ...QUERY_STREAM_BATCHES.map((batch) => `pg-${batch}` as const),
    'raw',
  ];
  if (!libFirst) sides.reverse();
  const figures = {} as Record<StreamSide, StreamFigures>;
  for (const side of sides) figures[side] = await runSide<StreamFigures>(['stream', side]);
  const lib = figures.lib;
  const base = figures['pg-100'];
  const metrics = [
    metric('throughput', 'rows/s', rate(lib), rate(base)),
    ...QUERY_STREAM_BATCHES.filter((batch) => batch !== 100).map((batch) =>
      metric(`throughput vs batch ${batch}`, 'rows/s', rate(lib), rate(figures[`pg-${batch}`])),
    ),
    metric('throughput of stream() via pipeline', 'rows/s', rate(figures['lib-stream']), rate(base)),
    ...CURSOR_BATCHES.map((batch) =>
      metric(`cursor ${batch} vs pg-query-stream ${batch}`, 'rows/s', rate(figures[`cursor-${batch}`]), rate(figures[`pg-${batch}`])),
    ),
    ...CURSOR_BATCHES.map((batch) => metric(`cursor ${batch} vs default path`, 'rows/s', rate(figures[`cursor-${batch}`]), rate(lib))),
    metric('default path vs raw floor (wire)', 'rows/s', rate(lib), rate(figures.raw)),
    metric('cursor 1000 vs raw floor (wire)', 'rows/s', rate(figures['cursor-1000']), rate(figures.raw)),
    metric('cursor 1000 first row vs default', 'ms', figures['cursor-1000'].firstRowMs, lib.firstRowMs),
    metric('raw floor RSS growth', 'MiB', lib.rssGrowth / MiB, figures.raw.rssGrowth / MiB),
    metric('time to first row', 'ms', lib.firstRowMs, base.firstRowMs),
    metric('first row vs raw floor (wire)', 'ms', lib.firstRowMs, figures.raw.firstRowMs),
    ...QUERY_STREAM_BATCHES.filter((batch) => batch !== 100).map((batch) =>
      metric(`first row vs batch ${batch}`, 'ms', lib.firstRowMs, figures[`pg-${batch}`].firstRowMs),
    ),
    metric('wall time', 'ms', lib.totalMs, base.totalMs),
    metric('RSS growth (peak)', 'MiB', lib.rssGrowth / MiB, base.rssGrowth / MiB),
    metric('RSS growth vs batch 10000', 'MiB', lib.rssGrowth / MiB, figures['pg-10000'].rssGrowth / MiB),
    metric('JS heap growth (peak)', 'MiB', lib.heapPeakGrowth / MiB, base.heapPeakGrowth / MiB),
  ];
  return {
    metrics,
    targets: [
      ...QUERY_STREAM_BATCHES.map((batch) => target(`rows/s ratio (lib/pg-query-stream batch ${batch})`, rate(lib) / rate(figures[`pg-${batch}`]), '>=', 0.9)),
      target('first-row ratio (lib/pg-query-stream batch 100)', lib.firstRowMs / base.firstRowMs, '<=', 1.5),
    ],
    extra: { rows: ROWS, warmupRows: WARMUP_ROWS, order: sides.join(', '), queueSize: 65536, queryStreamBatchSizes: [...QUERY_STREAM_BATCHES] },
  };
}

export async function streaming(ctx: BenchContext): Promise<ScenarioReport> {
  const runs: RunReport[] = [];
  for (let i = 0; i < ctx.runs; i++) {
    const run = await runOnce(i % 2 === 0);
    const t = findMetric(run, 'throughput');
    const t1000 = findMetric(run, 'throughput vs batch 1000');
    const t10000 = findMetric(run, 'throughput vs batch 10000');
    const s = findMetric(run, 'throughput of stream() via pipeline');
    const f = findMetric(run, 'time to first row');
    const r = findMetric(run, 'RSS growth (peak)');
    const c1000 = findMetric(run, 'cursor 1000 vs pg-query-stream 1000');
    const c10000 = findMetric(run, 'cursor 10000 vs pg-query-stream 10000');
    const raw = findMetric(run, 'default path vs raw floor (wire)');
    const rawFirst = findMetric(run, 'first row vs raw floor (wire)');
    const k = (n: number) => `${(n / 1000).toFixed(0)}k`;
    ctx.log(
      `streaming run ${i + 1}: lib ${k(t.lib)} rows/s (stream() via pipeline ${k(s.lib)}), pg-query-stream batch 100/1000/10000 ` +
        `${k(t.baseline!)}/${k(t1000.baseline!)}/${k(t10000.baseline!)} rows/s (ratios ${t.ratio!.toFixed(2)}/${t1000.ratio!.toFixed(2)}/${t10000.ratio!.toFixed(2)}); ` +
        `first row ${f.lib.toFixed(1)} vs ${f.baseline!.toFixed(1)} ms; RSS +${r.lib.toFixed(1)} vs +${r.baseline!.toFixed(1)} MiB; ` +
        `cursor 1000/10000 ${k(c1000.lib)}/${k(c10000.lib)} rows/s (vs pg-query-stream ${c1000.ratio!.toFixed(2)}/${c10000.ratio!.toFixed(2)}); ` +
        `raw floor ${k(raw.baseline!)} rows/s (default path at ${raw.ratio!.toFixed(2)}), its first row ${rawFirst.baseline!.toFixed(1)} ms (lib at ${rawFirst.ratio!.toFixed(2)})`,
    );
    runs.push(run);
  }
  // The median run by the fair comparison: pg-query-stream at batch 1000.
  return medianRun(runs, 'rows/s ratio vs batch 1000', (run) => findMetric(run, 'throughput vs batch 1000').ratio!, 'streaming');
}
