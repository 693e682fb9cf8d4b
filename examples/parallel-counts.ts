// Run: npx tsx scripts/with-postgres.ts -- node --conditions=pg-background-source --import tsx examples/parallel-counts.ts
//
// Count the rows of several tables at once, one background worker (one connection) per table.
// maxWorkers bounds the concurrency; whenFull: 'queue' makes launch wait for a free slot
// instead of throwing PGBG_MAX_WORKERS.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { PgBackground } from 'pg-background';

const url = process.env.DATABASE_URL;
if (!url) throw new Error('Set DATABASE_URL (or run through scripts/with-postgres.ts)');

// A few tables of different sizes, in a schema of our own.
const schema = pg.escapeIdentifier(`counts_example_${randomBytes(3).toString('hex')}`);
const sizes = { customers: 1_000, orders: 250_000, order_lines: 600_000, invoices: 40_000, events: 0 };
const app = new pg.Client({ connectionString: url });
await app.connect();
await app.query(`CREATE SCHEMA ${schema}`);
for (const [table, rows] of Object.entries(sizes)) {
  await app.query(`CREATE TABLE ${schema}.${pg.escapeIdentifier(table)} AS SELECT g AS id FROM generate_series(1, ${rows}) AS g`);
}

const bg = new PgBackground({ connectionString: url, maxWorkers: 3, whenFull: 'queue' });
const started = Date.now();

// Launch them all; with 3 slots, the 4th and 5th launches wait until a count finishes.
const counts = await Promise.all(
  Object.keys(sizes).map(async (table) => {
    const h = await bg.launch(`SELECT count(*) AS n FROM ${schema}.${pg.escapeIdentifier(table)}`, { label: `count ${table}` });
    // count(*) is a bigint: node-postgres returns it as a string, exact however large.
    const [row] = await bg.result<{ n: string }>(h).toArray();
    return { table, rows: BigInt(row!.n) };
  }),
);

for (const { table, rows } of counts) console.log(`${table.padEnd(12)} ${rows.toLocaleString('en-US').padStart(9)}`);
const stats = await bg.stats();
console.log(`${stats.workersCompleted} workers (at most ${stats.maxWorkers} at a time) in ${Date.now() - started} ms`);

await bg.close();
await app.query(`DROP SCHEMA ${schema} CASCADE`);
await app.end();
