// Automatic progress and wait state in list()/info(): phase and fraction from the server's
// pg_stat_progress_* views, the wait event and pg_blocking_pids() of each running worker's
// backend, refreshed once a second by one query on the control connection while a worker has
// run for a second, and never asked for by an instance whose workers all finish sooner.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { instanceOptions, launchPlan } from '../src/api/options.js';
import { observerCounts } from '../src/control/backend-monitor.js';
import { Worker } from '../src/store/worker.js';
import { CONTROL_LISTEN_SQL } from '../src/catalog.js';
import { until, useDatabase } from './support/database.js';
import { PARTIAL } from '../src/run/classify.js';

/** The advisory locks the gated index build waits for (see gated_md5 below). */
const GATES = [7_700_001, 7_700_002] as const;

const db = useDatabase(import.meta.filename, {
  // ~2M narrow rows in an order the index build has to sort.
  async setup(d) {
    await d.query('CREATE TABLE big AS SELECT (g::int8 * 7919 % 2000003)::int AS id FROM generate_series(1, 2000000) g');
    // An index expression that stops the build's table scan at two gates the test holds: at the
    // rows 600000 and 1400000 of the table (their ids, in its physical order), about 30% and 70%
    // of its blocks. The scan waits there however fast the machine is (a free-running build can
    // end before two once-a-second polls saw it).
    await d.query(`CREATE FUNCTION gated_md5(id int) RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
      BEGIN
        IF id = ${(600000 * 7919) % 2000003} THEN PERFORM pg_advisory_xact_lock_shared(${GATES[0]}); END IF;
        IF id = ${(1400000 * 7919) % 2000003} THEN PERFORM pg_advisory_xact_lock_shared(${GATES[1]}); END IF;
        RETURN md5(id::text);
      END $$`);
    const bg = d.background();
    await bg.install(); // the view pg_background_workers
    await bg.close();
  },
});

// Small maintenance_work_mem: an external sort, so the build takes a few seconds; no parallel
// build, so the leader does (and reports) all of it.
const slowBuild = { settings: { maintenance_work_mem: '1MB', max_parallel_maintenance_workers: '0' } };

test('CREATE INDEX shows its phase and a moving fraction in list() and info(), and in the view', async (t) => {
  const bg = db.background();
  t.after(() => bg.close({ cancel: true })); // also when an assertion fails: the tests after it need a quiet server
  const gates = await db.client();
  const [{ pid: gatePid }] = (await gates.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows as [{ pid: number }];
  await gates.query('SELECT pg_advisory_lock($1), pg_advisory_lock($2)', [...GATES]);
  t.after(() => gates.query('SELECT pg_advisory_unlock_all()'));
  const h = await bg.launch('CREATE INDEX big_id ON big (gated_md5(id))', { ...slowBuild, label: 'index' });
  /** The build waiting at a gate, as list() (one poll) and the view (now) both show it. */
  const atGate = (what: string) =>
    until(
      async () => {
        const [info] = await bg.list();
        if (info!.state !== 'running') throw new Error(`the build ended (${info!.state}) at ${what}`);
        const [row] = await db.query<{ phase: string | null; fraction_completed: number | null; wait_event: string | null }>(
          'SELECT phase, fraction_completed, wait_event FROM pg_background_workers WHERE cookie = $1',
          [h.cookie.toString()],
        );
        const waiting = info!.waitEvent === 'Lock:advisory' && row?.wait_event === 'Lock:advisory';
        return waiting && info!.fractionCompleted !== null && info!.fractionCompleted === row.fraction_completed && { info: info!, row };
      },
      what,
      60_000,
    );
  const first = await atGate('the first gate');
  await gates.query('SELECT pg_advisory_unlock($1)', [GATES[0]]);
  const second = await until(
    async () => {
      const at = await atGate('the second gate');
      return at.info.fractionCompleted !== first.info.fractionCompleted && at;
    },
    'the build at the second gate, further on',
    60_000,
  );
  for (const { info, row } of [first, second]) {
    assert.deepEqual([info.phase, row.phase], ['building index: scanning table', 'building index: scanning table']);
  }
  const fractions = [first.info.fractionCompleted!, second.info.fractionCompleted!];
  assert.ok(0 < fractions[0]! && fractions[0]! < fractions[1]! && fractions[1]! < 1, `fractions ${fractions.join(', ')}`);
  // Waiting at the gate: blocked by the session that holds it, from the same poll.
  const during = await bg.info(h);
  assert.deepEqual([during.phase, during.fractionCompleted, during.progress], ['building index: scanning table', fractions[1], null]);
  assert.deepEqual([during.waitEvent, during.blockedBy], ['Lock:advisory', [gatePid]]);
  // Seen enough: stop it. Its last phase stays, its wait goes.
  await bg.cancel(h);
  const after = await bg.info(h);
  assert.equal(after.state, 'canceled');
  assert.equal(after.phase, 'building index: scanning table');
  assert.equal(after.waitEvent, null);
  assert.deepEqual(after.blockedBy, []);
  await bg.close();
});

test('VACUUM shows its heap scan moving, from the columns PostgreSQL 14 to 18 share', async (t) => {
  const bg = db.background();
  t.after(() => bg.close({ cancel: true }));
  // Throttled by cost-based delay: the scan of ~9000 blocks takes seconds, at little CPU.
  const h = await bg.launch('VACUUM big', { settings: { vacuum_cost_delay: '1ms', vacuum_cost_limit: '5' } });
  const fractions = new Set<number>();
  await until(
    async () => {
      const info = await bg.info(h);
      if (info.state !== 'running') throw new Error(`VACUUM ended (${info.state}) first: ${[...fractions].join(', ')}`);
      if (info.phase === 'scanning heap' && info.fractionCompleted !== null) fractions.add(info.fractionCompleted);
      return fractions.size >= 2;
    },
    'two fractions of the heap scan',
    60_000,
  );
  assert.ok(
    [...fractions].every((f) => f > 0 && f < 1),
    [...fractions].join(', '),
  );
  await bg.cancel(h);
  // VACUUM commits as it goes (table by table): stopped, it is an error, never `canceled`.
  assert.deepEqual([(await bg.info(h)).state, (await bg.errorInfo(h))?.message], ['error', `canceling statement due to user request${PARTIAL}`]);
  await bg.close();
});

test('workers waiting on a lock show Lock:relation and blockedBy the holder, both from one poll', async (t) => {
  await db.query('CREATE TABLE held (id int)');
  const holder = await db.client();
  const [{ pid: holderPid }] = (await holder.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows as [{ pid: number }];
  await holder.query('BEGIN');
  await holder.query('LOCK TABLE held IN ACCESS EXCLUSIVE MODE');
  const bg = db.background();
  t.after(() => bg.close({ cancel: true }));
  const a = await bg.launch('SELECT count(*)::int AS n FROM held', { label: 'a' });
  const b = await bg.launch('SELECT count(*)::int AS n FROM held', { label: 'b' });
  const polls = observerCounts.polls;
  const infos = await until(async () => {
    const all = await bg.list();
    return all.every((w) => w.blockedBy.length > 0) && all;
  }, 'both workers to show their blocker');
  assert.deepEqual(
    infos.map((w) => [w.label, w.state, w.waitEvent, w.blockedBy, w.phase, w.fractionCompleted]),
    [
      ['b', 'running', 'Lock:relation', [holderPid], null, null],
      ['a', 'running', 'Lock:relation', [holderPid], null, null],
    ],
  );
  // One query a second for all of them (the two were seen by the same first poll, or the next).
  assert.ok(observerCounts.polls - polls <= 2, `${observerCounts.polls - polls} polls`);
  await holder.query('ROLLBACK');
  assert.deepEqual(await bg.result(a).toArray(), [{ n: 0 }]);
  await bg.wait(b);
  const done = await bg.info(b);
  assert.equal(done.state, 'stopped');
  assert.equal(done.waitEvent, null);
  assert.deepEqual(done.blockedBy, []);
  await bg.close();
});

test('a worker blocked on its full queue says so: Client:ClientWrite, waiting for the reader', async (t) => {
  const bg = db.background();
  t.after(() => bg.close({ cancel: true }));
  const h = await bg.launch('SELECT g, md5(g::text) AS m FROM generate_series(1, 2000000) g', { queueSize: 16384 });
  const info = await until(async () => {
    const found = await bg.info(h);
    return found.waitEvent === 'Client:ClientWrite' && found;
  }, 'the worker to block sending');
  assert.equal(info.state, 'running');
  assert.equal(info.phase, 'waiting for the reader');
  assert.equal(info.fractionCompleted, null);
  assert.deepEqual(info.blockedBy, []);
  await bg.cancel(h);
  assert.equal((await bg.info(h)).state, 'canceled');
  await bg.close();
});

test('progress the SQL reports itself wins over the server’s', async (t) => {
  const bg = db.background();
  t.after(() => bg.close({ cancel: true }));
  await bg.install();
  // The build waits at its first gate (see gated_md5) until the test is done with it.
  const gates = await db.client();
  await gates.query('SELECT pg_advisory_lock($1)', [GATES[0]]);
  t.after(() => gates.query('SELECT pg_advisory_unlock_all()'));
  const h = await bg.launch("SELECT pg_background_progress(40, 'indexing'); CREATE INDEX big_id2 ON big (gated_md5(id))", slowBuild);
  await until(
    async () =>
      (
        await db.query("SELECT 1 FROM pg_stat_progress_create_index p JOIN pg_stat_activity a USING (pid) WHERE pid = $1 AND a.wait_event = 'advisory'", [
          h.pid,
        ])
      ).length,
    'the build to show on the server, at its gate',
  );
  // Two polls after the server showed the build: at least one saw it.
  const polls = observerCounts.polls;
  await until(() => observerCounts.polls >= polls + 2, 'two polls during the build', 30_000);
  const info = await bg.info(h);
  assert.deepEqual([info.phase, info.fractionCompleted, info.progress], ['indexing', 0.4, { pct: 40, message: 'indexing' }]);
  await bg.cancel(h);
  await bg.close();
});

test('an instance whose workers all finish within a second never polls', async () => {
  const control = () =>
    db.query<{ query: string }>("SELECT query FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'pgbg:control'");
  // The control connections of the instances closed above are gone (their backends exit asynchronously).
  await until(async () => (await control()).length === 0, 'earlier control connections to go');
  const bg = db.background();
  const { ticks, polls } = observerCounts;
  const handles = await Promise.all(Array.from({ length: 10 }, (_, i) => bg.launch(`SELECT ${i} AS i`)));
  await Promise.all(handles.map((h) => bg.wait(h)));
  // The tick a second after the first start finds nothing running and disarms; nothing was asked.
  await until(() => observerCounts.ticks > ticks && observerCounts.armed === 0, 'the observer to disarm', 5_000);
  assert.equal(observerCounts.polls, polls);
  // Nothing ran on the control connection after its setup (it listens for control requests from SQL).
  assert.deepEqual(await control(), [{ query: CONTROL_LISTEN_SQL }]);
  // The same instance polls as soon as a worker has run for a second.
  const h = await bg.launch('SELECT pg_sleep(30)');
  await until(() => observerCounts.polls > polls, 'a poll', 5_000);
  await until(async () => /pg_stat_progress_vacuum/.test((await control())[0]!.query), 'the poll on the control connection');
  await bg.cancel(h);
  await bg.close();
  // close() stops the poll: no timer outlives the instance.
  assert.equal(observerCounts.armed, 0);
});

test('offline: an observation is a change only while running and only when it says something new', () => {
  const heard: string[] = [];
  const worker = new Worker(launchPlan('SELECT 1', undefined, instanceOptions({ user: 'alice' }), false), 'alice', {
    changed: (_w, change) => void heard.push(change.kind),
  });
  const lock = { phase: null, fractionCompleted: null, waitEvent: 'Lock:relation', blockedBy: [7] } as const;
  assert.equal(worker.apply({ kind: 'observed', observation: lock }), false); // pending: no backend yet
  worker.apply({ kind: 'started', pid: 41, backendStart: 'a', user: 'alice' });
  assert.equal(worker.apply({ kind: 'observed', observation: lock }), true);
  assert.equal(worker.apply({ kind: 'observed', observation: { ...lock, blockedBy: [7] } }), false);
  assert.equal(worker.apply({ kind: 'observed', observation: { ...lock, phase: 'scanning heap', fractionCompleted: 0.5 } }), true);
  let info = worker.info(Date.now());
  assert.deepEqual([info.phase, info.fractionCompleted, info.waitEvent, info.blockedBy], ['scanning heap', 0.5, 'Lock:relation', [7]]);
  worker.apply({ kind: 'progress', progress: { pct: 25, message: '' } });
  info = worker.info(Date.now());
  // Reported progress wins; an empty message leaves the server's phase.
  assert.deepEqual([info.phase, info.fractionCompleted], ['scanning heap', 0.25]);
  worker.apply({ kind: 'finished', state: 'stopped', error: null, commandTag: 'VACUUM', rowCount: 0 });
  info = worker.info(Date.now());
  assert.deepEqual([info.phase, info.fractionCompleted, info.waitEvent, info.blockedBy], ['scanning heap', 0.25, null, []]);
  assert.equal(worker.apply({ kind: 'observed', observation: lock }), false);
  assert.deepEqual(heard, ['started', 'observed', 'observed', 'progress', 'finished']);
});
