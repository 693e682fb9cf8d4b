// pg-background in one walkthrough: launch labelled workers, watch their live progress, read a
// result, cancel one, inspect a failure, print the statistics, close.
// Run: npm run demo   (starts a throwaway PostgreSQL unless DATABASE_URL is set), or
//      npx tsx scripts/with-postgres.ts -- node --conditions=pg-background-source --import tsx examples/demo.ts
import pg from 'pg';
import { PgBackground, type WorkerInfo } from 'pg-background';

const url = process.env.DATABASE_URL;
if (!url) throw new Error('Set DATABASE_URL, or run this with `npm run demo`');

// Setup goes through an ordinary pg connection, as in any application. Everything the demo
// creates lives in its own schema, dropped at the end.
const app = new pg.Client({ connectionString: url });
await app.connect();
await app.query(`
  DROP SCHEMA IF EXISTS pgbg_demo CASCADE;
  CREATE SCHEMA pgbg_demo;
  CREATE TABLE pgbg_demo.orders AS
    SELECT g AS id, (ARRAY['north', 'south', 'east', 'west'])[1 + g % 4] AS region, (g % 97) * 1.5 AS amount
      FROM generate_series(1, 20000) AS g;
  CREATE TABLE pgbg_demo.audit (at timestamptz DEFAULT now(), event text)`);

const bg = new PgBackground({ connectionString: url, maxWorkers: 8 });
// Creates pg_background_progress(pct, msg) (in public), which worker SQL calls to report progress.
await bg.install();

// Launching returns as soon as the SQL is on its way; each worker has its own connection and
// its own transaction. Only the rows of the last statement come back.
const report = await bg.launch(
  `SELECT pg_background_progress(0, 'Scanning orders');
   SELECT pg_sleep(0.5);
   SELECT pg_background_progress(50, 'Halfway');
   SELECT pg_sleep(0.5);
   SELECT pg_background_progress(90, 'Aggregating');
   SELECT region, count(*)::int AS orders, round(sum(amount))::int AS revenue
     FROM pgbg_demo.orders GROUP BY region ORDER BY region`,
  { label: 'report' },
);
const count = await bg.launch('SELECT count(*)::int AS n FROM pgbg_demo.orders', { label: 'count' });
const audit = await bg.launch(`INSERT INTO pgbg_demo.audit (event) VALUES ('demo ran')`, { label: 'audit' });
const sleeper = await bg.launch('SELECT pg_sleep(60)', { label: 'sleeper' });
const broken = await bg.launch('SELECT 1/0 AS boom', { label: 'broken' });

// Watch the workers until the report is done: wait(h, { timeoutMs }) doubles as the poll
// interval, returning true as soon as the worker finishes. (A pid can repeat: a finished
// worker's connection is reused for the next launch; the handle's cookie tells them apart.)
do {
  printList(await bg.list(), 'list()');
} while (!(await bg.wait(report, { timeoutMs: 300 })));
printList(await bg.list(), 'list() once the report is done');

// Rows stream back through a bounded queue; read them like any async iterable.
console.log('\nreport rows:');
for await (const row of bg.result<{ region: string; orders: number; revenue: number }>(report)) {
  console.log(`  ${row.region.padEnd(6)} ${String(row.orders).padStart(6)} orders  ${String(row.revenue).padStart(8)} revenue`);
}
const [counted] = await bg.result<{ n: number }>(count).toArray();
console.log(`count: ${counted?.n} orders`);
const auditInfo = await bg.resultInfo(audit);
console.log(`audit: ${auditInfo.commandTag} ${auditInfo.rowCount} (committed on its own)`);

// Cancel asks the server to stop the statement; its transaction rolls back.
await bg.cancel(sleeper, { graceMs: 2000 });
const sleeperInfo = await bg.info(sleeper);
console.log(`\nsleeper after cancel(): ${sleeperInfo.state} (by ${sleeperInfo.canceledBy})`);

// A failing worker never made launch() throw; the error is recorded on the worker.
await bg.wait(broken);
const error = await bg.errorInfo(broken);
console.log('broken errorInfo():', error && Object.fromEntries(Object.entries(error).filter(([, v]) => v !== null)));

printList(await bg.list(), 'final list()');
console.log('\nstats():', await bg.stats());

await bg.close(); // waits for anything still running, then closes every connection
await app.query('DROP SCHEMA pgbg_demo CASCADE');
await app.end();

/** list() as a compact, aligned table under a title. */
function printList(workers: WorkerInfo[], title: string): void {
  const rows = workers.map((w) => [
    w.label ?? '',
    String(w.pid),
    w.state,
    w.progress ? `${w.progress.pct}% ${w.progress.message}` : '',
    `${(w.elapsedMs / 1000).toFixed(1)}s`,
  ]);
  const header = ['label', 'pid', 'state', 'progress', 'elapsed'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    '  ' +
    cells
      .map((c, i) => c.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  console.log(`\n${title}\n${line(header)}`);
  for (const row of rows) console.log(line(row));
}
