// Shared helpers of the benchmark suite: clocks, percentiles, an RSS sampler, the shape every
// scenario reports, and small pg utilities for setup and verification.
import { spawn } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import pg from 'pg';

export const MiB = 1024 * 1024;

/** Milliseconds from a monotonic clock. */
export function now(): number {
  return performance.now();
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Runs V8's full GC a few times (the bench runs with --expose-gc); a no-op without it. */
export async function collectGarbage(): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) return;
  for (let i = 0; i < 3; i++) {
    gc();
    // Let finalizers and freed external memory (Buffers) settle between passes.
    await sleep(10);
  }
}

export function rss(): number {
  return process.memoryUsage.rss();
}

/** The p-th percentile (0..100) by linear interpolation between closest ranks. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = (p / 100) * (sorted.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  const a = sorted[lo]!;
  const b = sorted[hi]!;
  return a + (b - a) * (rank - lo);
}

export function median(values: readonly number[]): number {
  return percentile(values, 50);
}

export interface Summary {
  n: number;
  median: number;
  p95: number;
  min: number;
  max: number;
  mean: number;
}

export function summarize(values: readonly number[]): Summary {
  return {
    n: values.length,
    median: percentile(values, 50),
    p95: percentile(values, 95),
    min: Math.min(...values),
    max: Math.max(...values),
    mean: values.reduce((s, v) => s + v, 0) / values.length,
  };
}

/**
 * Tracks the peak RSS from `start()` on: sampled by a timer (so it also sees what happens while
 * the consumer is paused) and whenever `sample()` is called from a hot loop.
 */
export class RssSampler {
  readonly start: number;
  readonly heapStart: number;
  #peak: number;
  #heapPeak: number;
  #timer: NodeJS.Timeout | null;

  constructor(intervalMs = 50) {
    this.start = rss();
    this.#peak = this.start;
    this.heapStart = process.memoryUsage().heapUsed;
    this.#heapPeak = this.heapStart;
    this.#timer = setInterval(() => {
      this.sample();
      const heap = process.memoryUsage().heapUsed;
      if (heap > this.#heapPeak) this.#heapPeak = heap;
    }, intervalMs);
  }

  /** Peak V8 heapUsed seen by the timer (diagnostic: how much of the RSS is live JS heap). */
  get heapPeak(): number {
    return this.#heapPeak;
  }

  sample(): void {
    const value = rss();
    if (value > this.#peak) this.#peak = value;
  }

  get peak(): number {
    return this.#peak;
  }

  /** Peak minus start, bytes. */
  get growth(): number {
    return this.#peak - this.start;
  }

  stop(): { start: number; peak: number; growth: number } {
    this.sample();
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    return { start: this.start, peak: this.#peak, growth: this.growth };
  }
}

// ---- what a scenario reports ----------------------------------------------------------------

/** One measured quantity, for the library and (when there is one) its raw-pg baseline. */
export interface Metric {
  name: string;
  unit: string;
  lib: number;
  baseline: number | null;
  /** lib / baseline (null without a baseline). */
  ratio: number | null;
}

export interface Target {
  /** What is compared, e.g. 'median latency ratio'. */
  name: string;
  value: number;
  op: '<=' | '>=' | '==';
  limit: number;
  met: boolean;
}

export interface RunReport {
  metrics: Metric[];
  targets: Target[];
  /** Anything else worth keeping (diagnostics, server-side counts). */
  extra: Record<string, unknown>;
}

export interface ScenarioReport extends RunReport {
  scenario: string;
  /** Runs taken; the figures are those of the median run (by `rankedBy`). */
  runs: number;
  rankedBy: string;
  /** The `rankedBy` value of every run, in run order. */
  allRuns: number[];
  chosenRun: number;
}

export function metric(name: string, unit: string, lib: number, baseline: number | null = null): Metric {
  return { name, unit, lib, baseline, ratio: baseline === null || baseline === 0 ? null : lib / baseline };
}

export function target(name: string, value: number, op: Target['op'], limit: number): Target {
  const met = op === '<=' ? value <= limit : op === '>=' ? value >= limit : value === limit;
  return { name, value, op, limit, met };
}

/** Picks the median run by `rank` (the lower middle one for an even count). */
export function medianRun(runs: readonly RunReport[], rankedBy: string, rank: (run: RunReport) => number, scenario: string): ScenarioReport {
  const values = runs.map(rank);
  const order = values.map((v, i) => [v, i] as const).sort((a, b) => a[0] - b[0]);
  const chosen = order[Math.floor((order.length - 1) / 2)]![1];
  return { scenario, runs: runs.length, rankedBy, allRuns: values, chosenRun: chosen + 1, ...runs[chosen]! };
}

export function findMetric(run: RunReport, name: string): Metric {
  const found = run.metrics.find((m) => m.name === name);
  if (!found) throw new Error(`no metric ${name}`);
  return found;
}

// ---- environment --------------------------------------------------------------------------

export interface BenchContext {
  /** Connection string of the bench's own database. */
  url: string;
  /** How many times to repeat the cheap scenarios. */
  runs: number;
  log(message: string): void;
}

export async function withClient<T>(url: string, work: (client: pg.Client) => Promise<T>, applicationName = 'pgbg-bench-admin'): Promise<T> {
  const client = new pg.Client({ connectionString: url, application_name: applicationName });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

/** Worker backends of pg-background (tagged 'pgbg:…', or untagged 'pg-background') on the bench database. */
export async function libraryBackends(client: pg.Client): Promise<number> {
  const { rows } = await client.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_stat_activity
      WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid()
        AND ((application_name LIKE 'pgbg:%' AND application_name <> 'pgbg:control') OR application_name = 'pg-background')`,
  );
  return rows[0]!.n;
}

export function fmt(value: number | null, digits = 2): string {
  if (value === null || Number.isNaN(value)) return '-';
  if (Math.abs(value) >= 1000) return Math.round(value).toLocaleString('en-US');
  return value.toFixed(digits);
}

/**
 * Runs `bench/run.ts --side <args>` in a fresh Node process with this process's flags and
 * environment and returns the JSON it prints on its `RESULT ` line. For measurements (RSS) that
 * a previous measurement in the same process would distort.
 */
export function runSide<T>(args: readonly string[]): Promise<T> {
  const script = process.argv[1];
  if (!script) throw new Error('cannot tell which script to run');
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...process.execArgv, script, '--side', ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    let result: T | undefined;
    createInterface({ input: child.stdout }).on('line', (line) => {
      if (line.startsWith('RESULT ')) result = JSON.parse(line.slice('RESULT '.length)) as T;
      else process.stderr.write(line + '\n');
    });
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0 && result !== undefined) resolve(result);
      else reject(new Error(`side process ${args.join(' ')} failed (exit ${code})`));
    });
  });
}
