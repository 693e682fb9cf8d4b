// The cluster-wide cap (clusterMaxWorkers, clusterKey) across real processes: spawned Node
// processes share one cap through the server's advisory locks. What runs is sampled from
// pg_stat_activity by the workers' SQL text (each test's own marker comment).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { TURNSTILE_LOCK_SQL } from '../src/catalog.js';
import { until, useDatabase } from './support/database.js';

const db = useDatabase(import.meta.filename);
const CHILD = fileURLToPath(new URL('./support/cluster-child.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('..', import.meta.url));

interface Child {
  readonly process: ChildProcess;
  /** Lines printed so far. */
  readonly lines: string[];
  /** Resolves with the first line starting with `prefix`. */
  line(prefix: string): Promise<string>;
  send(line: string): void;
}

function child(env: Record<string, string>): Child {
  const proc = spawn(process.execPath, ['--conditions=pg-background-source', '--import', 'tsx', CHILD], {
    cwd: ROOT,
    env: { ...process.env, PGBG_CHILD_URL: db.url, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  let stderr = '';
  let partial = '';
  const waits: { prefix: string; resolve: (line: string) => void }[] = [];
  proc.stderr!.on('data', (chunk: Buffer) => (stderr += chunk));
  proc.stdout!.on('data', (chunk: Buffer) => {
    const parts = (partial + chunk).split('\n');
    partial = parts.pop()!;
    for (const line of parts) {
      lines.push(line);
      for (const wait of waits.filter((w) => line.startsWith(w.prefix))) {
        waits.splice(waits.indexOf(wait), 1);
        wait.resolve(line);
      }
    }
  });
  const exited = once(proc, 'exit').then(([code]) => {
    throw new Error(`the child exited (${code}): ${stderr}`);
  });
  exited.catch(() => {});
  return {
    process: proc,
    lines,
    line(prefix) {
      const seen = lines.find((line) => line.startsWith(prefix));
      if (seen) return Promise.resolve(seen);
      return Promise.race([new Promise<string>((resolve) => waits.push({ prefix, resolve })), exited]);
    },
    send: (line) => proc.stdin!.write(`${line}\n`),
  };
}

/** How many statements with `marker` in their text are active on the server now. */
async function active(marker: string): Promise<number> {
  const rows = await db.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid()",
    [marker],
  );
  return rows[0]!.n;
}

/** Samples `active(marker)` until `done` settles; resolves with every sample. */
async function sample(marker: string, done: Promise<unknown>): Promise<number[]> {
  let finished = false;
  void done.finally(() => (finished = true)).catch(() => {});
  const samples: number[] = [];
  while (!finished) samples.push(await active(marker));
  return samples;
}

/** An advisory lock the test holds while workers must stay running (released when they may end). */
const GATE = 7_600_001;

const exitOf = (c: Child) => (c.process.exitCode !== null || c.process.signalCode !== null ? Promise.resolve() : once(c.process, 'exit').then(() => {}));

test('4 processes, clusterMaxWorkers 3: never more than 3 run at once, all 20 complete, and another clusterKey is not limited', async () => {
  const marker = 'pgbg-cap-a';
  // Every worker (of key A and of key B) waits for a lock the test holds: key A is at its cap,
  // and key B's three run at once, however slowly the processes start and connect.
  const sql = `SELECT pg_advisory_xact_lock_shared(${GATE}), pg_sleep(0.05) /* ${marker} */`;
  const children = Array.from({ length: 4 }, () => child({ PGBG_CHILD_SQL: sql, PGBG_CHILD_COUNT: '5', PGBG_CLUSTER_MAX: '3', PGBG_CLUSTER_KEY: 'cap-a' }));
  await db.query('SELECT pg_advisory_lock($1)', [GATE]);
  try {
    await Promise.all(children.map((c) => c.line('ready')));
    for (const c of children) c.send('go');
    const done = Promise.all(children.map((c) => c.line('done')));
    const samples = sample(marker, done);

    // While key A is at its cap, key B (same database, same cap) starts 3 workers at once.
    await until(async () => (await active(marker)) === 3, 'key A to reach its cap of 3', 60_000);
    const other = db.background({ clusterMaxWorkers: 3, clusterKey: 'cap-b' });
    try {
      // whenFull 'error': none of them waits for key A's slots.
      const b = await Promise.all([1, 2, 3].map(() => other.launch(`SELECT pg_advisory_xact_lock_shared(${GATE}) /* pgbg-cap-b */`)));
      await until(async () => (await active('pgbg-cap-b')) === 3, 'key B to run 3 at once');
      await db.query('SELECT pg_advisory_unlock($1)', [GATE]);
      await Promise.all(b.map((h) => other.wait(h)));
    } finally {
      await other.close({ cancel: true });
    }

    const results = await done;
    const seen = await samples;
    const max = Math.max(...seen);
    console.log(
      `[cluster-cap] ${seen.length} samples of key A; at once: ${[0, 1, 2, 3, 4].map((n) => `${n}: ${seen.filter((s) => s === n).length}`).join(', ')}`,
    );
    assert.ok(max <= 3, `at most 3 at once, saw ${max}`);
    assert.ok(max >= 2, `the cap was used, saw at most ${max} at once`);
    assert.deepEqual(results, ['done 5', 'done 5', 'done 5', 'done 5']);
    assert.equal(children.flatMap((c) => c.lines.filter((l) => l.startsWith('launched'))).length, 20);
  } finally {
    await db.query('SELECT pg_advisory_unlock_all()');
    for (const c of children) c.process.kill('SIGKILL');
    await Promise.all(children.map(exitOf));
  }
});

test('a process killed (SIGKILL) frees its slots at once: a launch waiting in another process starts', async () => {
  const marker = 'pgbg-cap-kill';
  // 'rollback': the server also aborts the killed process's own workers (within 1 s).
  const holder = child({
    PGBG_CHILD_SQL: `SELECT pg_sleep(600) /* ${marker} */`,
    PGBG_CHILD_COUNT: '2',
    PGBG_CLUSTER_MAX: '2',
    PGBG_CLUSTER_KEY: 'cap-kill',
    PGBG_CHILD_ON_CALLER_EXIT: 'rollback',
  });
  const bg = db.background({ clusterMaxWorkers: 2, clusterKey: 'cap-kill', whenFull: 'queue' });
  try {
    await holder.line('ready');
    holder.send('go');
    await until(async () => holder.lines.filter((l) => l.startsWith('launched')).length === 2, 'the holder to take both slots');
    const launching = bg.launch('SELECT 1 AS one');
    await until(async () => (await bg.list()).length === 1, 'the waiting launch to be listed');
    const [waiting] = await bg.list();
    assert.equal(waiting!.state, 'pending');
    // Still waiting after several re-checks: the cap holds.
    await assert.rejects(until(async () => (await bg.list())[0]!.state !== 'pending', 'never', 1500));
    holder.process.kill('SIGKILL');
    const killedAt = Date.now();
    await exitOf(holder);
    const h = await launching;
    console.log(`[cluster-cap] kill: the waiting launch started ${Date.now() - killedAt} ms after the SIGKILL`);
    assert.deepEqual(await bg.result(h).toArray(), [{ one: 1 }]);
    await until(async () => (await active(marker)) === 0, "the killed process's workers to be aborted", 15_000);
  } finally {
    holder.process.kill('SIGKILL');
    await exitOf(holder);
    await bg.close();
  }
});

test('fairness: a process launching in a tight loop does not starve another', async () => {
  const marker = 'pgbg-cap-fair';
  const looper = child({ PGBG_CHILD_SQL: `SELECT pg_sleep(0.05) /* ${marker} */`, PGBG_CHILD_COUNT: '0', PGBG_CLUSTER_MAX: '2', PGBG_CLUSTER_KEY: 'cap-fair' });
  const bg = db.background({ clusterMaxWorkers: 2, clusterKey: 'cap-fair', whenFull: 'queue' });
  try {
    await looper.line('ready');
    looper.send('go');
    await until(async () => looper.lines.length >= 10, 'the loop to be launching');
    const waits: number[] = [];
    const before = looper.lines.length;
    for (let i = 0; i < 10; i++) {
      const start = Date.now();
      const h = await bg.launch(`SELECT pg_sleep(0.05) /* ${marker} */`);
      waits.push(Date.now() - start);
      await bg.wait(h);
    }
    const loopLaunches = looper.lines.length - before;
    looper.send('stop');
    await looper.line('done');
    waits.sort((a, b) => a - b);
    console.log(`[cluster-cap] fairness: 10 launches waited (ms, sorted) ${waits.join(' ')}; the loop launched ${loopLaunches} meanwhile`);
    assert.equal((await bg.list()).filter((w) => w.state === 'stopped').length, 10);
    // The loop kept both slots busy: it launched more than the other process meanwhile.
    assert.ok(loopLaunches >= 10, `the loop launched ${loopLaunches}`);
  } finally {
    looper.process.kill('SIGKILL');
    await exitOf(looper);
    await bg.close();
  }
});

test('clusterMaxWorkers and clusterKey are validated, naming the option and the value', async () => {
  const { PgBackground } = await import('pg-background');
  const invalid = (options: object, message: string) =>
    assert.throws(() => new PgBackground({ connectionString: db.url, ...options }), { code: 'PGBG_INVALID_ARGUMENT', message });
  invalid({ clusterMaxWorkers: 0 }, 'Expected `clusterMaxWorkers` to be an integer from 1 to 10000, got 0');
  invalid({ clusterMaxWorkers: 10_001 }, 'Expected `clusterMaxWorkers` to be an integer from 1 to 10000, got 10001');
  invalid({ clusterMaxWorkers: 2.5 }, 'Expected `clusterMaxWorkers` to be an integer from 1 to 10000, got 2.5');
  invalid({ clusterMaxWorkers: 2, clusterKey: '' }, 'Expected `clusterKey` to be a non-empty string, got ""');
  invalid({ clusterMaxWorkers: 2, clusterKey: 7 }, 'Expected `clusterKey` to be a non-empty string, got 7');
  invalid({ clusterKey: 'jobs' }, 'Option `clusterKey` ("jobs") needs `clusterMaxWorkers`: it names a cluster-wide cap, off without it');
  invalid({ clustermaxworkers: 2 }, 'Unknown option `clustermaxworkers`; did you mean `clusterMaxWorkers`?');
});

test("whenFull 'error' throws PGBG_MAX_WORKERS naming the cluster cap; a waiting launch honours its signal; off costs no connection", async (t) => {
  const holder = db.background({ clusterMaxWorkers: 1, clusterKey: 'cap-local' });
  const strict = db.background({ clusterMaxWorkers: 1, clusterKey: 'cap-local' });
  const patient = db.background({ clusterMaxWorkers: 1, clusterKey: 'cap-local', whenFull: 'queue' });
  const off = db.background();
  // Closed also when an assertion fails: the next test waits for every session of the file to end.
  t.after(() => Promise.all([holder, strict, patient, off].map((bg) => bg.close({ cancel: true }))));
  // The holder keeps the one slot until the test lets it go (a sleep could end first on a slow machine).
  await db.query('SELECT pg_advisory_lock($1)', [GATE]);
  t.after(() => db.query('SELECT pg_advisory_unlock_all()'));
  const named = async (name: string) => (await db.backends()).filter((b) => b.application_name === name).length;
  const h = await holder.launch(`SELECT pg_advisory_xact_lock(${GATE})`);
  await assert.rejects(strict.launch('SELECT 1'), {
    code: 'PGBG_MAX_WORKERS',
    message:
      'Too many active workers across processes: the cluster-wide limit is 1 (clusterMaxWorkers, clusterKey "cap-local"); wait for one to finish, or use whenFull: \'queue\'',
  });
  assert.deepEqual(await strict.list(), []);

  const controller = new AbortController();
  const aborted = patient.launch('SELECT 2', { signal: controller.signal });
  await until(async () => (await patient.list())[0]?.state === 'pending', 'the launch to wait');
  controller.abort();
  await assert.rejects(aborted, { code: 'PGBG_ABORTED' });
  assert.equal((await patient.list())[0]!.state, 'canceled');

  // The aborted wait left nothing behind: the next launch gets the slot once the holder's frees.
  const next = patient.launch('SELECT 3 AS n');
  // It is the head of the cluster's queue, waiting for a slot (its turnstile session holds the
  // turnstile), before the holder lets go: so it did wait, on the session counted below.
  const waitingForSlot = async () =>
    (
      await db.query(
        `SELECT 1 FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid AND l.locktype = 'advisory' AND l.granted
          WHERE a.datname = current_database() AND a.application_name = 'pg-background turnstile' AND a.state = 'idle' AND a.query = $1`,
        [TURNSTILE_LOCK_SQL],
      )
    ).length > 0;
  await until(waitingForSlot, 'the next launch to wait for a slot at the head of the queue');
  await db.query('SELECT pg_advisory_unlock($1)', [GATE]);
  await holder.wait(h);
  assert.deepEqual(await patient.result(await next).toArray(), [{ n: 3 }]);

  await off.wait(await off.launch('SELECT 1'));
  // One cluster session per instance with the cap (holder, strict, patient; none for `off`), one
  // turnstile session for the instance that waited. (Sessions of earlier tests may still be ending.)
  await until(async () => (await named('pg-background cluster')) === 3, 'three cluster sessions');
  assert.equal(await named('pg-background turnstile'), 1);
  await Promise.all([holder.close(), strict.close(), patient.close(), off.close()]);
  await until(async () => (await db.backends()).length === 0, 'every session to end');
});

test('close() while a launch asks the cluster cap for a slot refuses it with PGBG_CLOSED and leaves no worker or session', async () => {
  const bg = db.background({ clusterMaxWorkers: 2, clusterKey: 'cap-closing' });
  const launching = bg.launch('SELECT 1');
  const closing = bg.close();
  await assert.rejects(launching, {
    code: 'PGBG_CLOSED',
    message: 'This PgBackground instance was closed while the launch waited for a cluster-wide slot',
  });
  await closing;
  await until(async () => (await db.backends()).length === 0, 'every session to end');
});
