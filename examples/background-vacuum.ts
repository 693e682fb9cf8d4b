// Run: npx tsx scripts/with-postgres.ts -- node --conditions=pg-background-source --import tsx examples/background-vacuum.ts
//
// Maintenance in the background: VACUUM (ANALYZE) a table on a worker while the application
// carries on. VACUUM cannot run inside a transaction block; a worker whose SQL is that single
// statement runs it outside one (in a multi-statement string it would fail with 25001).
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { PgBackground } from 'pg-background';

const url = process.env.DATABASE_URL;
if (!url) throw new Error('Set DATABASE_URL (or run through scripts/with-postgres.ts)');

// A table with plenty of dead rows, in a schema of our own.
const schema = pg.escapeIdentifier(`vacuum_example_${randomBytes(3).toString('hex')}`);
const table = `${schema}.events`;
const app = new pg.Client({ connectionString: url });
await app.connect();
await app.query(`
  CREATE SCHEMA ${schema};
  CREATE TABLE ${table} WITH (autovacuum_enabled = off) AS SELECT g AS id, md5(g::text) AS payload FROM generate_series(1, 200000) AS g;
  DELETE FROM ${table} WHERE id % 2 = 0`);

const statsOf = async () =>
  (await app.query<{ reltuples: number; relpages: number }>(`SELECT reltuples, relpages FROM pg_class WHERE oid = $1::regclass`, [table])).rows[0]!;
const before = await statsOf();

const bg = new PgBackground({ connectionString: url });
// submit(): VACUUM returns no rows, and a submitted worker never holds any, so it can never
// block on a full queue. It is still tracked: wait for it, read its state and error.
const h = await bg.submit(`VACUUM (ANALYZE) ${table}`, { label: 'vacuum events' });
console.log(`VACUUM running on backend ${h.pid}; the application is free meanwhile`);

await bg.wait(h);
const [info] = (await bg.list()).filter((w) => w.cookie === h.cookie);
const { commandTag } = await bg.resultInfo(h);
console.log(`${info!.label}: ${info!.state} (${commandTag}) in ${info!.elapsedMs} ms`);
if (info!.state === 'error') console.log('error:', await bg.errorInfo(h));

// ANALYZE refreshed the planner's estimate (-1 meant "never analyzed").
const after = await statsOf();
console.log(`pg_class.reltuples: ${before.reltuples} -> ${after.reltuples}, relpages: ${before.relpages} -> ${after.relpages}`);

await bg.close();
await app.query(`DROP SCHEMA ${schema} CASCADE`);
await app.end();
