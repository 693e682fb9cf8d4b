// Scenario 6, close to the floor (issue 13): in one run, side by side, interleaved, what a task
// costs through every way a Node user could send it.
//   query   16 raw pg.Clients, `client.query(sql)`: no isolation between tasks at all
//   pool    pg.Pool({ max: 16 }), `pool.query(sql)`
//   floor   16 raw clients, each task followed by DISCARD ALL in the same write (pg's pipeline
//           mode, corked): the least an isolated task on a dedicated connection can cost
//   floor-prefix  16 raw clients, each task's write exactly the library's for an untagged task:
//           DISCARD ALL (Parse, Bind, Execute) ahead of the task under its one Sync
//   floor-tagged  the same with the library's tag too: DISCARD ALL, SET application_name TO
//           'pgbg:<cookie>:floor', the task, one Sync. The least any library doing what ours does
//           (isolation, and SPEC's per-task tag) can cost: lib against it is our own overhead,
//           floor-tagged against floor-prefix what the tag itself costs
//   lib     pg-background with its defaults (tagged connections on): every task submitted, then
//           all detached (detachAll), done at the last 'finished' event (also untagged, journal)
//   untagged  pg-background with `tagConnections: false`
//   journal   pg-background with its defaults and `journal: true` (fire-and-forget only)
//   lib-loops   pg-background with its defaults, driven as the pool is: 16 callers, each
//           `submit` then `wait` in a loop (no queue of pending workers)
//   journal-loops  the same with `journal: true`: no worker waits in a queue, so each is written
//           once (as it ended), where the `journal` side's deep queue keeps most of them pending
//           past the writer's hold, so they are written twice (pending, then ended)
//   pool-queue  pg.Pool({ max: 16 }) driven as the library is: every `pool.query` at once (the
//           pool queues them)
// The library and the pool are each measured both ways (fire-and-forget only): `lib` against
// `pool` is the issue's figure, `lib-loops` / `pool` and `lib` / `pool-queue` compare like with like.
// Fire-and-forget: FIRE_TASKS single-row INSERTs with a parameter, 16 at once, in rounds of
// ROUND_TASKS, the issue's 2,000 (the library: `submit` of every one of a round, then `detachAll`,
// as the issue words it; lib-loops waits instead). One round of all 20,000 at once would measure
// a queue ten times deeper than the issue's: its pending workers outlive more scavenges (~9% more
// Node CPU per task for the library, measured), which is another scenario.
// Per side: throughput, and CPU per task in Node (process.cpuUsage, with its user part: the
// JavaScript, where the system part is the socket calls) and on the server (utime +
// stime of the side's backends, /proc/<pid>/stat).
// Tiny task: sequential `SELECT 1` (the library: `launch` + read its one row) against
// `client.query('SELECT 1')`, median latency. Every run measures every side, in an order that
// rotates from run to run; the figures are the median of the runs, with their range.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { PgBackground, type PgBackgroundOptions } from 'pg-background';
import { encodeExtended, encodeStatement } from '../src/pg/wire-bytes.js';
import { RESET_SQL, tagSql } from '../src/catalog.js';
import { median, metric, now, sleep, target, withClient, type BenchContext, type ScenarioReport } from './measure.js';
import { submitDetached } from './fire-support.mjs';

const FIRE_TASKS = Number(process.env.PGBG_BENCH_FLOOR_TASKS ?? 20_000);
const ROUND_TASKS = Number(process.env.PGBG_BENCH_FLOOR_ROUND ?? 2000);
const WARMUP = 2000;
const CONCURRENCY = 16;
const TINY_ITERATIONS = 500;
const TINY_WARMUP = 100;
const INSERT = 'INSERT INTO bench_floor (id, payload) VALUES ($1, $2)';
const MIN_RUNS = 5;

const SIDES = ['query', 'pool', 'floor', 'floor-prefix', 'floor-tagged', 'lib', 'untagged', 'journal', 'lib-loops', 'journal-loops', 'pool-queue'] as const;
type Side = (typeof SIDES)[number];
const TINY_SIDES = ['query', 'floor', 'floor-prefix', 'floor-tagged', 'lib', 'untagged'] as const;
type TinySide = (typeof TINY_SIDES)[number];

const CLOCK_TICK_US = 1e6 / Number(execFileSync('getconf', ['CLK_TCK']).toString().trim());

interface FireSample {
  tasksPerSecond: number;
  /** Node CPU per task, user + system. */
  nodeUs: number;
  /** Its user part: the JavaScript (ours, pg's, Node's streams); the system part is the socket calls. */
  nodeUserUs: number;
  serverUs: number;
}

/** utime + stime of those processes, in µs (clock ticks: 10 ms at 100 Hz, hence many tasks). */
export function serverCpuUs(pids: readonly number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
      ticks += Number(fields[11]) + Number(fields[12]); // fields 14 and 15: utime, stime
    } catch {
      // A backend that exited: it ran nothing of the timed round.
    }
  }
  return ticks * CLOCK_TICK_US;
}

/** Every client backend on the bench database but the asking one: the side under test's. */
async function sideBackends(url: string): Promise<number[]> {
  return withClient(url, async (client) => {
    const { rows } = await client.query<{ pid: number }>(
      "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
    );
    return rows.map((row) => row.pid);
  });
}

/** A way of running `count` INSERTs 16 at once, set up (connected) and torn down around the rounds. */
interface FireDriver {
  round(count: number, firstId: number): Promise<void>;
  close(): Promise<void>;
}

export async function rawClients(url: string, pipeline: boolean, count = CONCURRENCY): Promise<pg.Client[]> {
  const clients = Array.from(
    { length: count },
    () => new pg.Client({ connectionString: url, application_name: 'pgbg-bench-raw', pipeline } as pg.ClientConfig),
  );
  await Promise.all(clients.map((c) => c.connect()));
  return clients;
}

/** A task and DISCARD ALL behind it in one write; resolves with the task's answer (the reset's comes after). */
function withReset(client: pg.Client, text: string, values: unknown[]): Promise<unknown> {
  const stream = (client as unknown as { connection: { stream: { cork(): void; uncork(): void } } }).connection.stream;
  stream.cork();
  const task = client.query(text, values);
  const reset = client.query('DISCARD ALL');
  stream.uncork();
  return Promise.all([task, reset]);
}

/**
 * A pipeline encoded beforehand (ending in Sync) as pg's active query: written at its turn,
 * settled at its ReadyForQuery with the count of its rows (pg drops it at an ErrorResponse).
 */
export class RawPipeline {
  readonly done: Promise<number>;
  #resolve!: (rows: number) => void;
  #reject!: (error: Error) => void;
  #rows = 0;
  constructor(readonly bytes: Buffer) {
    this.done = new Promise<number>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
  }
  submit(connection: { stream: { write(bytes: Buffer): void } }): void {
    connection.stream.write(this.bytes);
  }
  handleRowDescription(): void {}
  handleDataRow(): void {
    this.#rows++;
  }
  handleCommandComplete(): void {}
  handleEmptyQuery(): void {}
  handlePortalSuspended(): void {}
  handleError(error: Error): void {
    this.#reject(error);
  }
  handleReadyForQuery(): void {
    this.#resolve(this.#rows);
  }
}

const RESET_PREFIX = encodeStatement(RESET_SQL);
let floorCookie = 0x1000n;

/**
 * One task as the library writes it on a warm connection: the deferred DISCARD ALL ahead of it
 * under its Sync, and with `tagged` the worker's tag between them (floor-prefix, floor-tagged).
 */
function asLibrary(client: pg.Client, tagged: boolean, text: string, values: string[]): Promise<number> {
  let lead = RESET_PREFIX;
  if (tagged) lead = encodeStatement(tagSql(`pgbg:${(floorCookie++).toString(16).padStart(16, '0')}:floor`, false), lead);
  const pipeline = new RawPipeline(encodeExtended(lead, text, values));
  client.query(pipeline as unknown as pg.QueryConfig);
  return pipeline.done;
}

async function fireDriver(url: string, side: Side): Promise<FireDriver> {
  if (side === 'lib-loops' || side === 'journal-loops') {
    const bg = new PgBackground({ connectionString: url, maxWorkers: CONCURRENCY, whenFull: 'queue', journal: side === 'journal-loops' });
    return {
      async round(count, firstId) {
        let next = 0;
        await Promise.all(
          Array.from({ length: CONCURRENCY }, async () => {
            for (let i = next++; i < count; i = next++) await bg.wait(await bg.submit({ text: INSERT, values: [firstId + i, 'row'] }));
          }),
        );
      },
      close: () => bg.close(),
    };
  }
  if (side === 'pool-queue') {
    const pool = new pg.Pool({ connectionString: url, max: CONCURRENCY, application_name: 'pgbg-bench-pool' });
    return {
      async round(count, firstId) {
        await Promise.all(Array.from({ length: count }, (_, i) => pool.query(INSERT, [firstId + i, 'row'])));
      },
      close: () => pool.end(),
    };
  }
  if (side === 'lib' || side === 'untagged' || side === 'journal') {
    const options: PgBackgroundOptions = { connectionString: url, maxWorkers: CONCURRENCY, whenFull: 'queue' };
    if (side === 'untagged') options.tagConnections = false;
    if (side === 'journal') options.journal = true;
    const bg = new PgBackground(options);
    return {
      // The issue's fire and forget: every task submitted, then detached (nobody waits for one or
      // reads it; a detached worker is not retained); the round ends at the last 'finished' event.
      round: (count, firstId) => submitDetached(bg, INSERT, count, firstId),
      close: () => bg.close(),
    };
  }
  if (side === 'pool') {
    const pool = new pg.Pool({ connectionString: url, max: CONCURRENCY, application_name: 'pgbg-bench-pool' });
    return {
      async round(count, firstId) {
        let next = 0;
        await Promise.all(
          Array.from({ length: CONCURRENCY }, async () => {
            for (let i = next++; i < count; i = next++) await pool.query(INSERT, [firstId + i, 'row']);
          }),
        );
      },
      close: () => pool.end(),
    };
  }
  const clients = await rawClients(url, side === 'floor');
  return {
    async round(count, firstId) {
      let next = 0;
      await Promise.all(
        clients.map(async (client) => {
          for (let i = next++; i < count; i = next++) {
            if (side === 'floor') await withReset(client, INSERT, [firstId + i, 'row']);
            else if (side === 'floor-prefix' || side === 'floor-tagged') await asLibrary(client, side === 'floor-tagged', INSERT, [String(firstId + i), 'row']);
            else await client.query(INSERT, [firstId + i, 'row']);
          }
        }),
      );
    },
    close: async () => {
      await Promise.all(clients.map((c) => c.end()));
    },
  };
}

async function fireOnce(url: string, side: Side): Promise<FireSample> {
  await withClient(url, (client) => client.query('TRUNCATE bench_floor'));
  const driver = await fireDriver(url, side);
  try {
    await driver.round(WARMUP, -WARMUP); // connections open, caches warm
    await sleep(100); // the last resets land
    const pids = await sideBackends(url);
    const cpu0 = process.cpuUsage();
    const server0 = serverCpuUs(pids);
    const t0 = now();
    for (let done = 0; done < FIRE_TASKS; done += ROUND_TASKS) await driver.round(Math.min(ROUND_TASKS, FIRE_TASKS - done), done);
    const ms = now() - t0;
    const cpu = process.cpuUsage(cpu0);
    await sleep(50); // the trailing resets are part of each task's cost
    const serverUs = serverCpuUs(pids) - server0;
    return {
      tasksPerSecond: FIRE_TASKS / (ms / 1000),
      nodeUs: (cpu.user + cpu.system) / FIRE_TASKS,
      nodeUserUs: cpu.user / FIRE_TASKS,
      serverUs: serverUs / FIRE_TASKS,
    };
  } finally {
    await driver.close();
  }
}

/** Median latency (ms) of TINY_ITERATIONS sequential SELECT 1 tasks. */
async function tinyOnce(url: string, side: TinySide): Promise<number> {
  let once: () => Promise<void>;
  let close: () => Promise<void>;
  if (side === 'lib' || side === 'untagged') {
    const bg = new PgBackground({ connectionString: url, ...(side === 'untagged' ? { tagConnections: false } : {}) });
    once = async () => {
      const h = await bg.launch('SELECT 1');
      const rows = await bg.result(h).toArray();
      if (rows.length !== 1) throw new Error('tiny: expected one row');
    };
    close = () => bg.close();
  } else {
    const [client] = await rawClients(url, side === 'floor', 1);
    once = async () => {
      let rows: number;
      if (side === 'floor-prefix' || side === 'floor-tagged') rows = await asLibrary(client!, side === 'floor-tagged', 'SELECT 1', []);
      else rows = (side === 'floor' ? ((await withReset(client!, 'SELECT 1', [])) as [pg.QueryResult])[0] : await client!.query('SELECT 1')).rows.length;
      if (rows !== 1) throw new Error('tiny: expected one row');
    };
    close = () => client!.end();
  }
  try {
    for (let i = 0; i < TINY_WARMUP; i++) await once();
    const times: number[] = [];
    for (let i = 0; i < TINY_ITERATIONS; i++) {
      const t0 = now();
      await once();
      times.push(now() - t0);
    }
    return median(times);
  } finally {
    await close();
  }
}

interface Spread {
  median: number;
  min: number;
  max: number;
}

function spread(values: readonly number[]): Spread {
  return { median: median(values), min: Math.min(...values), max: Math.max(...values) };
}

const range = (s: Spread, digits: number) => `${s.median.toFixed(digits)} (${s.min.toFixed(digits)}–${s.max.toFixed(digits)})`;

export async function floor(ctx: BenchContext): Promise<ScenarioReport> {
  const runs = Math.max(ctx.runs, MIN_RUNS);
  await withClient(ctx.url, (client) => client.query('CREATE TABLE IF NOT EXISTS bench_floor (id int NOT NULL, payload text NOT NULL)'));
  const installer = new PgBackground({ connectionString: ctx.url });
  await installer.install({ journal: true }); // for the journal side
  await installer.close();
  const fire = new Map<Side, FireSample[]>(SIDES.map((s) => [s, []]));
  const tiny = new Map<TinySide, number[]>(TINY_SIDES.map((s) => [s, []]));
  // Per run, ratios within the run (the machine's speed drifts between runs).
  const fireRatio = new Map<Side, number[]>(SIDES.map((s) => [s, []]));
  const tinyRatio = new Map<TinySide, number[]>(TINY_SIDES.map((s) => [s, []]));
  for (let run = 0; run < runs; run++) {
    // Rotated, and reversed every other run: no side always follows the same one.
    const order = SIDES.map((_, i) => SIDES[(i + run) % SIDES.length]!);
    if (run % 2 === 1) order.reverse();
    const samples = new Map<Side, FireSample>();
    for (const side of order) {
      const sample = await fireOnce(ctx.url, side);
      samples.set(side, sample);
      fire.get(side)!.push(sample);
    }
    for (const side of SIDES) fireRatio.get(side)!.push(samples.get(side)!.tasksPerSecond / samples.get('pool')!.tasksPerSecond);
    const tinyOrder = TINY_SIDES.map((_, i) => TINY_SIDES[(i + run) % TINY_SIDES.length]!);
    if (run % 2 === 1) tinyOrder.reverse();
    const latencies = new Map<TinySide, number>();
    for (const side of tinyOrder) {
      const ms = await tinyOnce(ctx.url, side);
      latencies.set(side, ms);
      tiny.get(side)!.push(ms);
    }
    for (const side of TINY_SIDES) tinyRatio.get(side)!.push(latencies.get(side)! / latencies.get('query')!);
    const f = (s: Side) => `${s} ${samples.get(s)!.tasksPerSecond.toFixed(0)}/s ${samples.get(s)!.nodeUs.toFixed(1)}+${samples.get(s)!.serverUs.toFixed(1)} µs`;
    ctx.log(`floor run ${run + 1}/${runs}: ${SIDES.map(f).join(', ')}; tiny ${TINY_SIDES.map((s) => `${s} ${latencies.get(s)!.toFixed(3)} ms`).join(', ')}`);
  }
  await withClient(ctx.url, (client) => client.query('DROP TABLE IF EXISTS bench_floor'));

  // The side-by-side table (stderr), every figure the median of the runs with its range.
  const lines = [`fire-and-forget, ${FIRE_TASKS} INSERTs, 16 at once, ${runs} interleaved runs: median (min–max)`];
  lines.push('side       tasks/s                    ×pool              Node µs/task       of it user         server µs/task     total µs/task');
  for (const side of SIDES) {
    const samples = fire.get(side)!;
    const total = spread(samples.map((s) => s.nodeUs + s.serverUs));
    lines.push(
      [
        side.padEnd(10),
        range(spread(samples.map((s) => s.tasksPerSecond)), 0).padEnd(26),
        range(spread(fireRatio.get(side)!), 2).padEnd(18),
        range(spread(samples.map((s) => s.nodeUs)), 1).padEnd(18),
        range(spread(samples.map((s) => s.nodeUserUs)), 1).padEnd(18),
        range(spread(samples.map((s) => s.serverUs)), 1).padEnd(18),
        range(total, 1),
      ].join(' '),
    );
  }
  lines.push(`tiny task, SELECT 1 sequential, ${TINY_ITERATIONS} per side per run: median latency (min–max)`);
  for (const side of TINY_SIDES)
    lines.push(`${side.padEnd(10)} ${range(spread(tiny.get(side)!), 3)} ms   ×client.query ${range(spread(tinyRatio.get(side)!), 2)}`);
  for (const line of lines) ctx.log(line);

  const med = (side: Side, pick: (s: FireSample) => number) => median(fire.get(side)!.map(pick));
  const tagFire = median(fire.get('lib')!.map((s, i) => s.tasksPerSecond / fire.get('untagged')![i]!.tasksPerSecond));
  const tagCpu = median(fire.get('lib')!.map((s, i) => (s.nodeUs + s.serverUs) / (fire.get('untagged')![i]!.nodeUs + fire.get('untagged')![i]!.serverUs)));
  const journalFire = median(fire.get('journal')!.map((s, i) => s.tasksPerSecond / fire.get('lib')![i]!.tasksPerSecond));
  const journalCpu = median(fire.get('journal')!.map((s, i) => (s.nodeUs + s.serverUs) / (fire.get('lib')![i]!.nodeUs + fire.get('lib')![i]!.serverUs)));
  const journalLoopsFire = median(fire.get('journal-loops')!.map((s, i) => s.tasksPerSecond / fire.get('lib-loops')![i]!.tasksPerSecond));
  const journalLoopsCpu = median(
    fire.get('journal-loops')!.map((s, i) => (s.nodeUs + s.serverUs) / (fire.get('lib-loops')![i]!.nodeUs + fire.get('lib-loops')![i]!.serverUs)),
  );
  const tagTiny = median(tiny.get('lib')!.map((ms, i) => ms / tiny.get('untagged')![i]!));
  // The tag on raw clients, the library's exact bytes with and without it: its least cost.
  const perRun = <T>(a: T[], b: T[], f: (x: T, y: T) => number) => median(a.map((x, i) => f(x, b[i]!)));
  const cpu = (s: FireSample) => s.nodeUs + s.serverUs;
  const floorTagFire = perRun(fire.get('floor-tagged')!, fire.get('floor-prefix')!, (x, y) => x.tasksPerSecond / y.tasksPerSecond);
  const floorTagCpu = perRun(fire.get('floor-tagged')!, fire.get('floor-prefix')!, (x, y) => cpu(x) / cpu(y));
  const floorTagTiny = perRun(tiny.get('floor-tagged')!, tiny.get('floor-prefix')!, (x, y) => x / y);
  const libOverFloor = perRun(fire.get('lib')!, fire.get('floor-tagged')!, (x, y) => x.tasksPerSecond / y.tasksPerSecond);
  const metrics = [
    ...SIDES.filter((s) => s !== 'pool').map((s) =>
      metric(
        `fire ${s}: tasks/s vs pool`,
        'tasks/s',
        med(s, (x) => x.tasksPerSecond),
        med('pool', (x) => x.tasksPerSecond),
      ),
    ),
    ...SIDES.filter((s) => s !== 'pool').map((s) =>
      metric(
        `fire ${s}: CPU/task vs pool`,
        'µs',
        med(s, (x) => x.nodeUs + x.serverUs),
        med('pool', (x) => x.nodeUs + x.serverUs),
      ),
    ),
    ...TINY_SIDES.filter((s) => s !== 'query').map((s) => metric(`tiny ${s}: median vs client.query`, 'ms', median(tiny.get(s)!), median(tiny.get('query')!))),
  ];
  const tinyLib = median(tinyRatio.get('lib')!);
  const fireLib = median(fireRatio.get('lib')!);
  const fireLoops = median(fireRatio.get('lib-loops')!);
  const fireQueued = median(fire.get('lib')!.map((s, i) => s.tasksPerSecond / fire.get('pool-queue')![i]!.tasksPerSecond));
  return {
    scenario: 'floor',
    runs,
    rankedBy: 'medians of interleaved runs',
    allRuns: fireRatio.get('lib')!,
    chosenRun: 0,
    metrics,
    targets: [
      target('tiny: lib / client.query (median of run ratios)', tinyLib, '<=', 2),
      target('fire: lib / pg.Pool (median of run ratios)', fireLib, '>=', 0.9),
      target('fire, like with like: lib-loops / pg.Pool (16 callers, no queue)', fireLoops, '>=', 0.9),
      target('fire, like with like: lib / pool-queue (every task queued at once)', fireQueued, '>=', 0.9),
      target('fire: tags on / off throughput', tagFire, '>=', 0.97),
      target('fire: tags on / off CPU per task', tagCpu, '<=', 1.03),
      target('tiny: tags on / off latency', tagTiny, '<=', 1.03),
      target('fire, raw clients: floor-tagged / floor-prefix throughput (the tag alone)', floorTagFire, '>=', 0.97),
      target('fire, raw clients: floor-tagged / floor-prefix CPU per task (the tag alone)', floorTagCpu, '<=', 1.03),
      target('tiny, raw clients: floor-tagged / floor-prefix latency (the tag alone)', floorTagTiny, '<=', 1.03),
      target('fire: lib / floor-tagged throughput (our own overhead)', libOverFloor, '>=', 0.9),
      target('fire: floor-tagged / pg.Pool (median of run ratios)', median(fireRatio.get('floor-tagged')!), '>=', 0.9),
      target('fire: journal on / off throughput', journalFire, '>=', 0.75),
      target('fire: journal on / off CPU per task', journalCpu, '<=', 1.25),
      target('fire, 16 callers: journal-loops / lib-loops throughput', journalLoopsFire, '>=', 0.75),
      target('fire, 16 callers: journal-loops / lib-loops CPU per task', journalLoopsCpu, '<=', 1.25),
    ],
    extra: {
      fireTasks: FIRE_TASKS,
      table: lines,
      fire: Object.fromEntries(fire),
      tiny: Object.fromEntries(tiny),
      fireRatio: Object.fromEntries(fireRatio),
      tinyRatio: Object.fromEntries(tinyRatio),
    },
  };
}
