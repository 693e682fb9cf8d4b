// The benchmark driver: `npm run bench [-- [--runs=N] [--dist] [scenario ...]]`.
//
// Scenarios: tiny, fire, stream, memory, scale, copy (all by default, in that order), e.g.
// `npm run bench -- tiny stream`. Each scenario runs in its own Node process (same flags:
// --conditions=pg-background-source --import tsx --expose-gc) so that one scenario's heap cannot hide or
// inflate another's RSS figures, and prints one line `BENCH {json}` on stdout; at the end the
// driver prints a table of every figure, its raw-pg baseline and ratio, and each target as met
// or missed. Progress goes to stderr.
//
//   --runs=N   repeat the cheap scenarios (tiny, fire, stream, copy) N times (default 3) and report
//              the median run (memory and scale run once)
//   --dist     load the library from its build (dist/: `npm run build` first) instead of the
//              TypeScript sources through tsx: the code an installed package runs
//   PGBG_BENCH_TINY_WARMUP=n, PGBG_BENCH_TINY_BLOCK=n, PGBG_BENCH_TINY_MULTI=1   tiny-task variants (see tiny-task.ts)
//
// Everything runs in a database of its own (created on DATABASE_URL's server and dropped at the
// end; DATABASE_URL's own database is used if it cannot be created).
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import pg from 'pg';
import { boundedMemory } from './bounded-memory.js';
import { copyExport, copySide, isCopySide } from './copy.js';
import { fireAndForget } from './fire-and-forget.js';
import { floor } from './floor.js';
import { fmt, MiB, type BenchContext, type ScenarioReport } from './measure.js';
import { scale } from './scale.js';
import { isStreamSide, streaming, streamingSide } from './streaming.js';
import { tinyTask } from './tiny-task.js';

interface Scenario {
  readonly name: string;
  readonly aliases: readonly string[];
  readonly title: string;
  readonly run: (ctx: BenchContext) => Promise<ScenarioReport>;
}

const scenarios: readonly Scenario[] = [
  { name: 'tiny', aliases: ['tiny-task', '1'], title: '1. tiny task (SELECT 1, sequential)', run: tinyTask },
  { name: 'fire', aliases: ['ff', 'fire-and-forget', 'submit', '2'], title: '2. fire-and-forget (2000 INSERTs, 16 workers)', run: fireAndForget },
  { name: 'stream', aliases: ['streaming', '3'], title: '3. streaming (1M rows)', run: streaming },
  { name: 'memory', aliases: ['bounded', 'bounded-memory', '4'], title: '4. bounded memory (10M rows, 64 KiB queue, paused consumer)', run: boundedMemory },
  { name: 'scale', aliases: ['5'], title: '5. scale (10,000 tasks, 16 workers)', run: scale },
  { name: 'copy', aliases: ['copy-export', '6'], title: '6. COPY export (1M rows, copyTo vs pg-copy-streams)', run: copyExport },
  { name: 'floor', aliases: ['7', 'compare'], title: '7. close to the floor (5 ways side by side, CPU per task, ≥5 interleaved runs)', run: floor },
];

const DEFAULT_RUNS = 3;

function findScenario(name: string): Scenario {
  const found = scenarios.find((s) => s.name === name || s.aliases.includes(name));
  if (!found) {
    throw new Error(`unknown scenario '${name}'; choose from: ${scenarios.map((s) => [s.name, ...s.aliases].join('|')).join(', ')}`);
  }
  return found;
}

interface Args {
  child: string | null;
  /** Internal: measure one side of a scenario in this process (`--side stream lib`). */
  side: string[] | null;
  runs: number;
  dist: boolean;
  names: string[];
}

function parseArgs(argv: readonly string[]): Args {
  let child: string | null = null;
  let side: string[] | null = null;
  let runs = DEFAULT_RUNS;
  let dist = false;
  const names: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--child') child = argv[++i] ?? null;
    else if (arg === '--side') {
      side = argv.slice(i + 1, i + 3);
      i += 2;
    } else if (arg.startsWith('--runs=')) runs = Number(arg.slice('--runs='.length));
    else if (arg === '--runs') runs = Number(argv[++i]);
    else if (arg === '--dist') dist = true;
    else if (arg === '--help' || arg === '-h') {
      console.log(`usage: npm run bench [-- [--runs=N] [--dist] [${scenarios.map((s) => s.name).join(' ')}]]`);
      process.exit(0);
    } else names.push(arg);
  }
  if (!Number.isInteger(runs) || runs < 1) throw new Error('--runs must be a positive integer');
  return { child, side, runs, dist, names };
}

function log(message: string): void {
  process.stderr.write(`[bench] ${message}\n`);
}

// ---- child: one scenario ----------------------------------------------------------------------

async function runChild(name: string, runs: number): Promise<void> {
  const url = process.env.PGBG_BENCH_URL;
  if (!url) throw new Error('PGBG_BENCH_URL is not set (the child is started by the driver)');
  const scenario = findScenario(name);
  const report = await scenario.run({ url, runs, log });
  process.stdout.write(`BENCH ${JSON.stringify(report)}\n`);
}

async function runSideProcess([scenario, side]: readonly string[]): Promise<void> {
  const url = process.env.PGBG_BENCH_URL;
  if (!url) throw new Error('PGBG_BENCH_URL is not set (side processes are started by a scenario)');
  if (scenario === 'stream' && isStreamSide(side)) {
    const figures = await streamingSide(url, side);
    process.stdout.write(`RESULT ${JSON.stringify(figures)}\n`);
    return;
  }
  if (scenario === 'copy' && isCopySide(side)) {
    process.stdout.write(`RESULT ${JSON.stringify(await copySide(url, side))}\n`);
    return;
  }
  throw new Error(`unknown side ${scenario} ${side}`);
}

// ---- driver -----------------------------------------------------------------------------------

/** Node flags for a scenario process: ours, minus our source export condition with --dist. */
const SOURCE_CONDITION = 'pg-background-source';

function childExecArgv(dist: boolean): string[] {
  const flags: string[] = [];
  const own = process.execArgv;
  for (let i = 0; i < own.length; i++) {
    const flag = own[i]!;
    if (dist && (flag === `--conditions=${SOURCE_CONDITION}` || flag === `-C=${SOURCE_CONDITION}`)) continue;
    if (dist && (flag === '--conditions' || flag === '-C') && own[i + 1] === SOURCE_CONDITION) {
      i++;
      continue;
    }
    flags.push(flag);
  }
  return flags;
}

function spawnScenario(scenario: Scenario, url: string, runs: number, dist: boolean): Promise<ScenarioReport | null> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [...childExecArgv(dist), import.meta.filename, '--child', scenario.name, `--runs=${runs}`], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, PGBG_BENCH_URL: url },
    });
    let report: ScenarioReport | null = null;
    const lines = createInterface({ input: child.stdout });
    lines.on('line', (line) => {
      process.stdout.write(line + '\n');
      if (line.startsWith('BENCH ')) report = JSON.parse(line.slice('BENCH '.length)) as ScenarioReport;
    });
    child.on('close', (code, signal) => {
      if (code !== 0) log(`scenario ${scenario.name} failed (exit ${code ?? signal})`);
      resolve(report);
    });
  });
}

async function createBenchDatabase(serverUrl: string): Promise<{ url: string; drop: () => Promise<void>; serverVersion: string }> {
  const admin = new pg.Client({ connectionString: serverUrl, application_name: 'pgbg-bench-admin' });
  await admin.connect();
  try {
    const serverVersion = (await admin.query<{ server_version: string }>('SHOW server_version')).rows[0]!.server_version;
    const name = `pgbg_bench_${randomBytes(3).toString('hex')}`;
    try {
      await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`);
    } catch (error) {
      log(`could not create a database of its own (${(error as Error).message}); using DATABASE_URL's database`);
      return { url: serverUrl, drop: async () => {}, serverVersion };
    }
    const parsed = new URL(serverUrl);
    parsed.pathname = '/' + encodeURIComponent(name);
    const drop = async () => {
      const again = new pg.Client({ connectionString: serverUrl, application_name: 'pgbg-bench-admin' });
      await again.connect();
      try {
        await again.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`);
      } finally {
        await again.end();
      }
    };
    return { url: parsed.toString(), drop, serverVersion };
  } finally {
    await admin.end();
  }
}

function pad(text: string, width: number, right = false): string {
  return right ? text.padStart(width) : text.padEnd(width);
}

function printTable(reports: readonly ScenarioReport[]): void {
  const metricRows: string[][] = [['scenario', 'metric', 'unit', 'pg-background', 'baseline', 'ratio']];
  const targetRows: string[][] = [['scenario', 'target', 'value', 'limit', 'result']];
  for (const report of reports) {
    const title = `${report.scenario}${report.runs > 1 ? ` (run ${report.chosenRun}/${report.runs})` : ''}`;
    for (const m of report.metrics) {
      const digits = m.unit === 'ms' ? 3 : m.unit === 'count' || m.unit === 'bytes' ? 0 : 2;
      metricRows.push([title, m.name, m.unit, fmt(m.lib, digits), fmt(m.baseline, digits), m.ratio === null ? '-' : m.ratio.toFixed(2)]);
    }
    for (const t of report.targets) {
      targetRows.push([report.scenario, t.name, t.value.toFixed(2), `${t.op} ${t.limit}`, t.met ? 'MET' : 'MISSED']);
    }
  }
  const render = (rows: string[][], numeric: ReadonlySet<number>) => {
    const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
    const lines = rows.map((r) => r.map((cell, c) => pad(cell, widths[c]!, numeric.has(c))).join('  '));
    lines.splice(1, 0, widths.map((w) => '-'.repeat(w)).join('  '));
    return lines.join('\n');
  };
  console.log('\n' + render(metricRows, new Set([3, 4, 5])));
  console.log('\n' + render(targetRows, new Set([2])));
}

/** The commit measured, and whether the library's sources differ from it. */
function sourceState(): { commit: string; srcModified: boolean } | null {
  const root = fileURLToPath(new URL('..', import.meta.url));
  try {
    const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim();
    const status = execFileSync('git', ['status', '--porcelain', '--', 'src'], { cwd: root, encoding: 'utf8' }).trim();
    return { commit, srcModified: status.length > 0 };
  } catch {
    return null;
  }
}

async function runDriver(names: readonly string[], runs: number, dist: boolean): Promise<void> {
  const serverUrl = process.env.DATABASE_URL;
  if (!serverUrl) throw new Error('Set DATABASE_URL, or run the bench with `npm run bench`');
  if (dist && !existsSync(new URL('../dist/index.js', import.meta.url))) {
    throw new Error('--dist needs the build: run `npm run build` first');
  }
  const selected = names.length ? [...new Set(names.map(findScenario))] : scenarios;
  const ordered = scenarios.filter((s) => selected.includes(s));

  const { url, drop, serverVersion } = await createBenchDatabase(serverUrl);
  const environment = {
    date: new Date().toISOString(),
    node: process.version,
    cpus: availableParallelism(),
    cpuModel: cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round((totalmem() / MiB / 1024) * 10) / 10,
    loadavg: loadavg().map((l) => Math.round(l * 100) / 100),
    postgres: serverVersion,
    localServer: process.env.PGBG_LOCAL_SERVER === '1',
    library: dist ? 'dist (built JavaScript)' : 'src (TypeScript through tsx, --conditions=pg-background-source)',
    source: sourceState(),
    runs,
    scenarios: ordered.map((s) => s.name),
  };
  process.stdout.write(`BENCH-ENV ${JSON.stringify(environment)}\n`);
  log(
    `PostgreSQL ${serverVersion}, Node ${process.version}, ${environment.cpus} CPUs, load ${environment.loadavg.join(' ')}; library from ${environment.library}; scenarios: ${environment.scenarios.join(', ')}`,
  );

  const started = Date.now();
  const reports: ScenarioReport[] = [];
  let failed = 0;
  try {
    for (const scenario of ordered) {
      log(`--- ${scenario.title}`);
      const s0 = Date.now();
      const report = await spawnScenario(scenario, url, runs, dist);
      log(`--- ${scenario.name} took ${((Date.now() - s0) / 1000).toFixed(1)} s (load average now ${loadavg()[0]!.toFixed(2)})`);
      if (report) reports.push(report);
      else failed++;
    }
  } finally {
    await drop();
  }
  printTable(reports);
  console.log(
    `\nPostgreSQL ${serverVersion}, Node ${process.version}, ${environment.cpus} CPUs, library from ${environment.library}, ${((Date.now() - started) / 1000).toFixed(0)} s in all`,
  );
  if (failed) {
    log(`${failed} scenario(s) failed`);
    process.exitCode = 1;
  }
}

const args = parseArgs(process.argv.slice(2));
if (args.side) await runSideProcess(args.side);
else if (args.child) await runChild(args.child, args.runs);
else await runDriver(args.names, args.runs, args.dist);
