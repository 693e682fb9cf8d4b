// Scenario 6, COPY export: 1,000,000 rows of (int, md5 text) exported with COPY ... TO STDOUT,
// read chunk by chunk by a consumer that only counts bytes, through bg.copyTo (its worker's
// byte-bounded 64 KiB queue, result(h) for await) against pg-copy-streams' to() on one open
// pg.Client (its Readable, for await), the same library underneath. Rows/s from the launch (or
// client.query(copy)) to the last chunk; each side in a fresh Node process, after an untimed
// 100,000-row warm-up on its own connection, alternating which side goes first across runs.
import pg from 'pg';
import copyStreams from 'pg-copy-streams';
import { PgBackground } from 'pg-background';
import { findMetric, medianRun, metric, now, runSide, sleep, target, type BenchContext, type RunReport, type ScenarioReport } from './measure.js';

const ROWS = 1_000_000;
const WARMUP_ROWS = 100_000;
const sql = (rows: number) => `COPY (SELECT g, md5(g::text) FROM generate_series(1, ${rows}) g) TO STDOUT`;

export type CopySide = 'lib' | 'pg-copy-streams';

export function isCopySide(side: string | undefined): side is CopySide {
  return side === 'lib' || side === 'pg-copy-streams';
}

export interface CopyFigures {
  totalMs: number;
  bytes: number;
  rows: number;
}

/** The exact size of the export's text (for the check that every byte arrived). */
function exportSize(rows: number): number {
  let bytes = 0;
  for (let g = 1; g <= rows; g++) bytes += String(g).length + 34;
  return bytes;
}

async function consume(rows: number, start: () => Promise<AsyncIterable<Buffer>>): Promise<CopyFigures> {
  const t0 = now();
  let bytes = 0;
  for await (const chunk of await start()) bytes += chunk.length;
  const totalMs = now() - t0;
  if (bytes !== exportSize(rows)) throw new Error(`copy: expected ${exportSize(rows)} bytes, got ${bytes}`);
  return { totalMs, bytes, rows };
}

/** One side, measured in this (fresh) process. */
export async function copySide(url: string, side: CopySide): Promise<CopyFigures> {
  if (side === 'lib') {
    const bg = new PgBackground({ connectionString: url });
    try {
      const read = (rows: number) => consume(rows, async () => bg.result<Buffer>(await bg.copyTo(sql(rows))));
      await read(WARMUP_ROWS);
      await sleep(100); // the warm-up connection's reset: the measured launch gets a warm one
      return await read(ROWS);
    } finally {
      await bg.close();
    }
  }
  const client = new pg.Client({ connectionString: url, application_name: 'pgbg-bench-baseline' });
  await client.connect();
  try {
    const read = (rows: number) => consume(rows, async () => client.query(copyStreams.to(sql(rows))) as unknown as AsyncIterable<Buffer>);
    await read(WARMUP_ROWS);
    await sleep(100);
    return await read(ROWS);
  } finally {
    await client.end();
  }
}

const rate = (figures: CopyFigures) => figures.rows / (figures.totalMs / 1000);

async function runOnce(libFirst: boolean): Promise<RunReport> {
  const sides: CopySide[] = libFirst ? ['lib', 'pg-copy-streams'] : ['pg-copy-streams', 'lib'];
  const figures = {} as Record<CopySide, CopyFigures>;
  for (const side of sides) figures[side] = await runSide<CopyFigures>(['copy', side]);
  const { lib } = figures;
  const base = figures['pg-copy-streams'];
  return {
    metrics: [
      metric('COPY export throughput', 'rows/s', rate(lib), rate(base)),
      metric('COPY export bytes/s', 'MiB/s', lib.bytes / 2 ** 20 / (lib.totalMs / 1000), base.bytes / 2 ** 20 / (base.totalMs / 1000)),
      metric('wall time', 'ms', lib.totalMs, base.totalMs),
    ],
    targets: [target('rows/s ratio (copyTo/pg-copy-streams)', rate(lib) / rate(base), '>=', 0.8)],
    extra: { rows: ROWS, warmupRows: WARMUP_ROWS, bytes: lib.bytes, order: sides.join(', '), queueSize: 65536 },
  };
}

export async function copyExport(ctx: BenchContext): Promise<ScenarioReport> {
  const runs: RunReport[] = [];
  for (let i = 0; i < ctx.runs; i++) {
    const run = await runOnce(i % 2 === 0);
    const t = findMetric(run, 'COPY export throughput');
    ctx.log(
      `copy run ${i + 1}: copyTo ${(t.lib / 1000).toFixed(0)}k rows/s, pg-copy-streams ${(t.baseline! / 1000).toFixed(0)}k rows/s (ratio ${t.ratio!.toFixed(2)})`,
    );
    runs.push(run);
  }
  return medianRun(runs, 'rows/s ratio (copyTo/pg-copy-streams)', (run) => findMetric(run, 'COPY export throughput').ratio!, 'copy');
}
