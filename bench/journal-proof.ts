// What a proof of a worker's commit costs the server when 16 workers commit at once (issue 13's
// journal target, issue 9's "under 25%"): 16 raw clients, each task exactly the library's bytes
// for a tagged fire-and-forget INSERT (DISCARD ALL, the tag, the task, one Sync: floor.ts's
// floor-tagged), and then, inside the same implicit transaction, one candidate proof:
//   none      no proof (floor-tagged itself)
//   proof     the writer's statement: an insert into pg_background_journal_ends (its primary key
//             on the random cookie)
//   noindex   the same row into a table without any index
//   hash      ... with a hash index instead of the btree
//   small     ... with the primary key, into a table emptied (and vacuumed) before each round: a
//             table kept small by deleting the ends the batches have recorded
//   select1   any second statement (`SELECT 1`): the least an in-transaction proof can cost
//   xid       `SELECT pg_current_xact_id()` ahead of the task (the xid journaled by the batch,
//             pg_xact_status in the view)
//   xidflush  the same with a Flush after it, so the xid reaches Node before a long task ends
// Every round runs every variant in a rotating order; prints the median server CPU (utime +
// stime of the 16 backends, /proc) and Node CPU per task, and the throughput.
// `node --conditions=pg-background-source --import tsx bench/journal-proof.ts [rounds] [tasks]`
// with DATABASE_URL set (`npx tsx scripts/with-postgres.ts -- ...` starts a throwaway server).
import pg from 'pg';
import { PgBackground } from 'pg-background';
import { JOURNAL_LOCATE_SQL, RESET_SQL, journalCommitSql, tagSql } from '../src/catalog.js';
import { encodeExtended, encodeStatement } from '../src/pg/wire-bytes.js';
import { RawPipeline, rawClients, serverCpuUs } from './floor.js';
import { median, now, sleep } from './measure.js';

const url = process.env.DATABASE_URL;
if (!url) throw new Error('Set DATABASE_URL');
const rounds = Number(process.argv[2] ?? 7);
const tasks = Number(process.argv[3] ?? 6000);
const INSERT = 'INSERT INTO bench_proof (id, payload) VALUES ($1, $2)';
const XID = 'SELECT pg_catalog.pg_current_xact_id()';
const FLUSH = Buffer.from([0x48, 0, 0, 0, 4]); // 'H', length 4

const installer = new PgBackground({ connectionString: url });
await installer.install({ journal: true });
await installer.close();
const admin = new pg.Client({ connectionString: url });
await admin.connect();
await admin.query('CREATE TABLE IF NOT EXISTS bench_proof (id int NOT NULL, payload text NOT NULL)');
await admin.query('CREATE TABLE IF NOT EXISTS bench_proof_noindex (cookie int8, committed_at timestamptz)');
await admin.query('CREATE TABLE IF NOT EXISTS bench_proof_hash (cookie int8, committed_at timestamptz)');
await admin.query('CREATE INDEX IF NOT EXISTS bench_proof_hash_cookie ON bench_proof_hash USING hash (cookie)');
await admin.query('CREATE TABLE IF NOT EXISTS bench_proof_small (cookie int8 PRIMARY KEY, committed_at timestamptz)');
const schema = (await admin.query<{ schema: string }>(JOURNAL_LOCATE_SQL)).rows[0]!.schema;

const reset = encodeStatement(RESET_SQL);
let cookie = 0x5000n;
const random = new BigInt64Array(1);
const randomCookie = () => crypto.getRandomValues(random)[0]!;
const tagged = () => encodeStatement(tagSql(`pgbg:${(cookie++).toString(16).padStart(16, '0')}:proof`, false), reset);
const row = (table: string) => `INSERT INTO ${table} (cookie, committed_at) VALUES ('${randomCookie()}'::int8, pg_catalog.clock_timestamp())`;

/** Each variant: the bytes written ahead of the task, and the statement after it (both under the task's Sync). */
const variants: Record<string, () => { lead: Buffer; trailer: string | null }> = {
  none: () => ({ lead: tagged(), trailer: null }),
  proof: () => ({ lead: tagged(), trailer: journalCommitSql(schema, randomCookie()) }),
  noindex: () => ({ lead: tagged(), trailer: row('bench_proof_noindex') }),
  hash: () => ({ lead: tagged(), trailer: row('bench_proof_hash') }),
  small: () => ({ lead: tagged(), trailer: row('bench_proof_small') }),
  select1: () => ({ lead: tagged(), trailer: 'SELECT 1' }),
  xid: () => ({ lead: encodeStatement(XID, tagged()), trailer: null }),
  xidflush: () => ({ lead: Buffer.concat([encodeStatement(XID, tagged()), FLUSH]), trailer: null }),
};

const clients = await rawClients(url, false);
const pids = await Promise.all(clients.map(async (c) => (await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid));

async function run(variant: () => { lead: Buffer; trailer: string | null }, count: number): Promise<void> {
  let next = 0;
  await Promise.all(
    clients.map(async (client) => {
      for (let i = next++; i < count; i = next++) {
        const { lead, trailer } = variant();
        const pipeline = new RawPipeline(encodeExtended(lead, INSERT, [String(i), 'row'], trailer));
        client.query(pipeline as unknown as pg.QueryConfig);
        await pipeline.done;
      }
    }),
  );
}

const names = Object.keys(variants);
const samples = new Map(names.map((name) => [name, { server: [] as number[], node: [] as number[], rate: [] as number[] }]));
for (const name of names) await run(variants[name]!, 1000); // plans and caches warm
for (let r = 0; r < rounds; r++) {
  for (let i = 0; i < names.length; i++) {
    const name = names[(i + r) % names.length]!;
    if (name === 'small') {
      await admin.query('DELETE FROM bench_proof_small');
      await admin.query('VACUUM bench_proof_small');
    }
    await sleep(50);
    const server0 = serverCpuUs(pids);
    const node0 = process.cpuUsage();
    const t0 = now();
    await run(variants[name]!, tasks);
    const ms = now() - t0;
    const node = process.cpuUsage(node0);
    await sleep(50); // the backends' last ticks
    const sample = samples.get(name)!;
    sample.server.push((serverCpuUs(pids) - server0) / tasks);
    sample.node.push((node.user + node.system) / tasks);
    sample.rate.push(tasks / (ms / 1000));
  }
}
const base = samples.get('none')!;
for (const [name, s] of samples) {
  console.log(
    `${name.padEnd(9)} server ${median(s.server).toFixed(1).padStart(6)} µs/task (+${(median(s.server) - median(base.server)).toFixed(1)})` +
      `  node ${median(s.node).toFixed(1).padStart(5)}  ${median(s.rate).toFixed(0).padStart(6)}/s (${(median(s.rate) / median(base.rate)).toFixed(2)}×)` +
      `  server runs ${s.server.map((x) => x.toFixed(0)).join(', ')}`,
  );
}
await Promise.all(clients.map((c) => c.end()));
await admin.query('DROP TABLE bench_proof, bench_proof_noindex, bench_proof_hash, bench_proof_small');
await admin.end();
