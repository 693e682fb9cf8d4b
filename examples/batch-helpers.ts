// Run: npx tsx scripts/with-postgres.ts -- node --conditions=pg-background-source --import tsx examples/batch-helpers.ts
//
// pg_background 2.0's helpers: run() for a one-shot statement with a deadline (a timeout
// cancels it and run() returns once it has stopped), waitAny() and drain() for a batch, and
// cancelByLabel() and purge() to clean up.
import { PgBackground } from 'pg-background';

const url = process.env.DATABASE_URL;
if (!url) throw new Error('Set DATABASE_URL (or run through scripts/with-postgres.ts)');

const bg = new PgBackground({ connectionString: url });

const quick = await bg.run<{ answer: number }>('SELECT 42 AS answer');
console.log(`run quick: ${quick.state}, answer ${quick.rows?.[0]?.answer}`);
const slow = await bg.run('SELECT pg_sleep(30)', { timeoutMs: 300, label: 'slow' });
console.log(`run slow: ${slow.state}, timedOut ${slow.timedOut}, sqlstate ${slow.sqlstate}`);

// A batch: the quickest one is reported first, then every outcome in launch order.
const batch = await Promise.all([2, 0, 1].map((i) => bg.launch(`SELECT ${i} AS n FROM pg_sleep(${i / 2})`, { label: `batch/${i}` })));
const first = await bg.waitAny(batch);
console.log(`first to finish: ${first?.label}`);
for (const o of await bg.drain(batch, { timeoutMs: 10_000 })) console.log(`${o.label}: ${o.state} (${o.commandTag} ${o.rowCount})`);

// Clean-up by label pattern (SQL LIKE), then forget what has finished.
const stragglers = await Promise.all(['etl/a', 'etl/b', 'report'].map((label) => bg.launch('SELECT pg_sleep(30)', { label })));
console.log(`cancelled by label 'etl/%': ${await bg.cancelByLabel('etl/%', { graceMs: 1000 })}`);
console.log(
  `still running: ${(await bg.list())
    .filter((w) => w.state === 'running')
    .map((w) => w.label)
    .join(', ')}`,
);
await bg.cancel(stragglers[2]!);
console.log(`purged: ${await bg.purge()}, left: ${(await bg.list()).length}`);
const stats = await bg.stats();
console.log(`stats: timed out ${stats.workersTimedOut}, canceled ${stats.workersCanceled}, completed ${stats.workersCompleted}`);

await bg.close();
