// Run: npx tsx scripts/with-postgres.ts -- node --conditions=pg-background-source --import tsx examples/reshard.ts
//
// A reshard as a job, the way PgDog runs one: a root task with phases (its inner status) and
// parallel subtasks, one per destination shard. The root is listed with pid 0 beside its
// subtasks (scope 'subtask', parent = the root's cookie); its phase and fractionCompleted are
// printed live from 'progress' events, and the tree at the end from list().
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { PgBackground } from 'pg-background';

const url = process.env.DATABASE_URL;
if (!url) throw new Error('Set DATABASE_URL (or run through scripts/with-postgres.ts)');

const SHARDS = 4;
const schema = pg.escapeIdentifier(`reshard_example_${randomBytes(3).toString('hex')}`);
const app = new pg.Client({ connectionString: url });
await app.connect();
await app.query(`CREATE SCHEMA ${schema}`);
await app.query(`CREATE TABLE ${schema}.orders AS SELECT g AS id, g % 97 AS customer FROM generate_series(1, 200000) AS g`);

const bg = new PgBackground({ connectionString: url, maxWorkers: SHARDS });
bg.on('progress', ({ label, phase, fractionCompleted }) => {
  if (label !== 'reshard orders') return;
  const pct = fractionCompleted === null ? '' : ` ${Math.round(fractionCompleted * 100)}%`;
  console.log(`[reshard] ${phase}${pct}`);
});

const shards = Array.from({ length: SHARDS }, (_, n) => ({ n, table: `${schema}.orders_shard_${n}` }));
const job = await bg.job(
  async (ctx) => {
    ctx.status('syncing schema');
    const schemaTask = await ctx.launch(shards.map(({ table }) => `CREATE TABLE ${table} (id int PRIMARY KEY, customer int)`).join('; '), { label: 'schema' });
    await bg.wait(schemaTask);

    ctx.progress(0, 'copying data');
    let copied = 0;
    await Promise.all(
      shards.map(async ({ n, table }) => {
        const h = await ctx.launch(`INSERT INTO ${table} SELECT id, customer FROM ${schema}.orders WHERE id % ${SHARDS} = ${n}`, { label: `copy shard ${n}` });
        await bg.wait(h);
        ctx.progress(++copied / SHARDS, 'copying data');
      }),
    );

    ctx.status('verifying');
    const counts = await Promise.all(
      shards.map(async ({ n, table }) => {
        const h = await ctx.launch(`SELECT count(*)::int AS n FROM ${table}`, { label: `verify shard ${n}` });
        const [row] = await bg.result<{ n: number }>(h).toArray();
        return row!.n;
      }),
    );
    const total = counts.reduce((a, b) => a + b, 0);
    if (total !== 200000) throw new Error(`reshard lost rows: ${total} of 200000`);
    ctx.progress(1, `done: ${counts.join(' + ')} = ${total} rows`);
  },
  { label: 'reshard orders' },
);

await bg.wait(job);
for (const w of await bg.list()) {
  const who = w.scope === 'root' ? `root ${w.label} (pid ${w.pid})` : `  ${w.label}`;
  const where = w.scope === 'subtask' && w.parent === job.cookie ? 'under root' : (w.lastError ?? '');
  console.log(`${who.padEnd(28)} ${w.state.padEnd(8)} ${where}`.trimEnd());
}
const stats = await bg.stats();
console.log(`workers: ${stats.workersLaunched} launched, ${stats.workersCompleted} completed, ${stats.workersFailed} failed`);

await bg.close();
await app.query(`DROP SCHEMA ${schema} CASCADE`);
await app.end();
