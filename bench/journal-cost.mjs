// Where the journal's server time goes (issue 13's ≤ 25%), one statement kind at a time, on one
// raw connection whose backend's CPU (utime + stime, /proc/<pid>/stat) is read around each part:
//   proof   a task of one INSERT, alone or with a proof of its end in the same implicit
//           transaction (one simple Query), in the statement's old and new forms
//   batch   1,000 journal rows per statement, per row: the first write of a worker (an insert,
//           as pending) and its second (an update, as stopped); `json` the old statement (a JSON
//           document through json_populate_recordset), `unnest` the writer's (an array per
//           column, from dist/), `plain` the same rows' first write without ON CONFLICT (as the
//           writer sends a worker's first row), `update` that, then an UPDATE joined to the arrays
// `node bench/journal-cost.mjs [rounds] [tasks]` with DATABASE_URL set and `npm run build` done.
// Every part runs once per round, in a rotating order; prints the median µs per task or row.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { PgBackground } from '../dist/index.js';
import * as catalog from '../dist/catalog.js';
import * as journal from '../dist/store/journal.js';

const rounds = Number(process.argv[2] ?? 5);
const tasks = Number(process.argv[3] ?? 4000);
const BATCH = 1000;
const url = process.env.DATABASE_URL;
const TICK_US = 1e6 / Number(execFileSync('getconf', ['CLK_TCK']).toString().trim());

const client = new pg.Client({ connectionString: url });
await client.connect();
const installer = new PgBackground({ connectionString: url });
await installer.install({ journal: true });
await installer.close();
await client.query('CREATE TABLE IF NOT EXISTS bench_jc (id int NOT NULL, payload text NOT NULL)');
await client.query('CREATE TABLE IF NOT EXISTS bench_jc_ends (cookie int8, committed_at timestamptz)');
const pid = (await client.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
const schema = (await client.query(catalog.JOURNAL_LOCATE_SQL)).rows[0].schema;

function cpuUs() {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) * TICK_US;
}

let cookie = BigInt(Date.now()) << 20n;
const proofs = {
  none: () => '',
  // The old proof: an INSERT ... SELECT with its cookie in the text (migration 4's writer).
  select: (c) =>
    `;INSERT INTO ${schema}.pg_background_journal_ends (cookie, committed_at) SELECT '${c}'::int8, pg_catalog.clock_timestamp() WHERE pg_catalog.pg_current_xact_id_if_assigned() IS NOT NULL`,
  // The same row into a table without an index: what the primary key costs.
  noindex: (c) => `;INSERT INTO bench_jc_ends (cookie, committed_at) VALUES ('${c}'::int8, pg_catalog.clock_timestamp())`,
  // Any second statement at all.
  select1: () => `;SELECT 1`,
  // The writer's statement today (for every transactional worker).
  writes: (c) => `;${catalog.journalCommitSql(schema, c)}`,
};

async function proofPart(kind) {
  await client.query('TRUNCATE bench_jc');
  const make = proofs[kind];
  const t0 = cpuUs();
  for (let i = 0; i < tasks; i++) await client.query(`INSERT INTO bench_jc (id, payload) VALUES (${i}, 'row')${make(cookie++)}`);
  return (cpuUs() - t0) / tasks;
}

/** A row as the writer builds it for a pending worker, then for the same worker finished. */
function rows(first, finished) {
  const out = [];
  const now = Date.now();
  for (let i = 0; i < BATCH; i++) {
    const worker = {
      cookie: first + BigInt(i),
      pid: finished ? 4242 : 0,
      scope: 'root',
      state: finished ? 'stopped' : 'pending',
      progress: null,
      observed: null,
      error: null,
      sqlPreview: 'INSERT INTO bench_floor (id, payload) VALUES ($1, $2)',
      user: 'postgres',
      attempts: 1,
      launchedAt: now - 1000,
      finishedAt: finished ? now : null,
      startedAt: finished ? now - 1 : null,
      parent: null,
      backendStart: finished ? '1764600000000000' : null,
      label: null,
      phase: null,
      fraction: null,
      active: !finished,
      commandTag: 'INSERT',
      rowCount: 1,
      launch: { job: false },
    };
    out.push(worker);
  }
  return out;
}

const owner = { host: 'bench-host', pid: process.pid, application: null };
const writers = {};
// Migration 4's writer (before commit 'journal batch as arrays'): one JSON document of rows keyed by column.
const JSON_COLUMNS = journal.JOURNAL_COLUMNS.map(([c]) => c).concat(['owner_host', 'owner_pid', 'owner_application']);
const jsonSql = `INSERT INTO ${schema}.pg_background_journal AS j (${JSON_COLUMNS.join(', ')}, owner_control_pid, owner_control_started)
SELECT ${JSON_COLUMNS.map((c) => `r.${c}`).join(', ')}, pg_catalog.pg_backend_pid(),
       (SELECT ${catalog.BACKEND_STARTED_SQL} FROM pg_catalog.pg_stat_activity WHERE pid = pg_catalog.pg_backend_pid())::int8
  FROM pg_catalog.json_populate_recordset(NULL::${schema}.pg_background_journal, $1::json) r
ON CONFLICT (cookie) DO UPDATE SET ${JSON_COLUMNS.filter((c) => c !== 'cookie')
  .concat(['owner_control_pid', 'owner_control_started'])
  .map((c) => `${c} = EXCLUDED.${c}`)
  .join(', ')}
 WHERE j.finished_at IS NULL OR EXCLUDED.finished_at IS NOT NULL`;
const iso = (ms) => (ms === null ? undefined : new Date(ms).toISOString());
writers.json = (workers) => {
  const rows = workers.map((w) => ({
    cookie: w.cookie.toString(),
    pid: w.pid,
    backend_started: w.backendStart ?? undefined,
    scope: w.scope,
    state: w.state,
    explicit_progress: false,
    sql_preview: w.sqlPreview,
    user_name: w.user,
    owner_host: owner.host,
    owner_pid: owner.pid,
    attempts: w.attempts,
    launched_at: iso(w.launchedAt),
    started_at: iso(w.startedAt),
    updated_at: iso(w.finishedAt ?? Date.now()),
    finished_at: iso(w.finishedAt),
    blocked_by: [],
    command_tag: w.active ? undefined : w.commandTag,
    row_count: w.startedAt === null ? undefined : w.rowCount,
    proven: true,
    job: false,
  }));
  return client.query(jsonSql, [JSON.stringify(rows)]);
};
if (typeof journal.journalBatch === 'function') {
  const sql = catalog.journalWriteSql(schema, journal.JOURNAL_COLUMNS);
  const batchOf = (workers) => journal.journalBatch(new Map(workers.map((w) => [w, Date.now()])), owner, () => true);
  writers.unnest = (workers) => client.query(sql, batchOf(workers));
  // The floor: the same rows as a plain INSERT (no ON CONFLICT).
  const plain = sql.slice(0, sql.indexOf('ON CONFLICT'));
  writers.plain = (workers) => (workers[0].finishedAt === null ? client.query(plain, batchOf(workers)) : client.query(sql, batchOf(workers)));
  // The second write as a plain UPDATE joined to the arrays.
  const cols = journal.JOURNAL_COLUMNS;
  const n = cols.length;
  const value = ([name, type]) =>
    type === 'ms' ? `pg_catalog.to_timestamp(r.${name} / 1000)` : type === 'int4[]' ? `coalesce(r.${name}::int4[], '{}')` : `r.${name}`;
  const arrayType = (type) => (type === 'ms' ? 'float8' : type === 'int4[]' ? 'text' : type);
  const update = `UPDATE ${schema}.pg_background_journal AS j SET ${cols
    .filter(([c]) => c !== 'cookie')
    .map((c) => `${c[0]} = ${value(c)}`)
    .join(', ')}, owner_host = $${n + 1}::text, owner_pid = $${n + 2}::int4, owner_application = $${n + 3}::text
  FROM ROWS FROM (${cols.map(([, type], i) => `pg_catalog.unnest($${i + 1}::${arrayType(type)}[])`).join(', ')}) AS r(${cols.map(([c]) => c).join(', ')})
 WHERE j.cookie = r.cookie AND (j.finished_at IS NULL OR r.finished_at IS NOT NULL)`;
  writers.update = (workers) => client.query(workers[0].finishedAt === null ? plain : update, batchOf(workers));
}

async function batchPart(kind) {
  await client.query(`TRUNCATE ${schema}.pg_background_journal`);
  const base = cookie;
  cookie += BigInt(tasks);
  let insert = 0;
  let update = 0;
  for (let first = 0; first < tasks; first += BATCH) {
    const c0 = cpuUs();
    await writers[kind](rows(base + BigInt(first), false));
    const c1 = cpuUs();
    await writers[kind](rows(base + BigInt(first), true));
    insert += c1 - c0;
    update += cpuUs() - c1;
  }
  return { insert: insert / tasks, update: update / tasks };
}

const parts = [...Object.keys(proofs).map((k) => `proof:${k}`), ...Object.keys(writers).map((k) => `batch:${k}`)];
const results = Object.fromEntries(parts.map((p) => [p, []]));
for (let r = 0; r < rounds; r++) {
  const order = parts.map((_, i) => parts[(i + r) % parts.length]);
  for (const part of order) {
    const [what, kind] = part.split(':');
    results[part].push(what === 'proof' ? await proofPart(kind) : await batchPart(kind));
  }
  console.error(
    `round ${r + 1}: ${parts.map((p) => `${p} ${JSON.stringify(results[p].at(-1), (_, v) => (typeof v === 'number' ? Math.round(v * 10) / 10 : v))}`).join(', ')}`,
  );
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const spread = (xs) => `${median(xs).toFixed(1)} (${Math.min(...xs).toFixed(1)}–${Math.max(...xs).toFixed(1)})`;
for (const part of parts) {
  const xs = results[part];
  if (typeof xs[0] === 'number') console.log(`${part}: server µs per task ${spread(xs)}`);
  else console.log(`${part}: server µs per row, insert ${spread(xs.map((x) => x.insert))}, update ${spread(xs.map((x) => x.update))}`);
}
await client.query('DROP TABLE bench_jc, bench_jc_ends');
await client.end();
