// Run: npx tsx scripts/with-postgres.ts -- node --conditions=pg-background-source --import tsx examples/run-with-timeout.ts
//
// Give a statement a deadline: wait for it with a timeout, and if it is not done by then,
// cancel it. cancel() sends a cancel request first and terminates the backend only if the
// statement has not stopped after graceMs. (For a fixed deadline, launch's `timeoutMs` option
// does the same by itself; this recipe lets the caller decide at wait time.)
import { PgBackground } from 'pg-background';

const url = process.env.DATABASE_URL;
if (!url) throw new Error('Set DATABASE_URL (or run through scripts/with-postgres.ts)');

const bg = new PgBackground({ connectionString: url });

/** Runs `sql`; its rows if it finishes within `timeoutMs`, otherwise cancels it and returns null. */
async function runWithTimeout(sql: string, timeoutMs: number, label: string): Promise<Record<string, unknown>[] | null> {
  const h = await bg.launch(sql, { label });
  if (!(await bg.wait(h, { timeoutMs }))) {
    console.log(`${label}: still running after ${timeoutMs} ms, cancelling`);
    await bg.cancel(h, { graceMs: 1000 }); // resolves once the worker has stopped
  }
  const info = await bg.info(h);
  console.log(`${label}: state ${info.state} after ${info.elapsedMs} ms`);
  if (info.state !== 'stopped') {
    console.log(`${label}: ${(await bg.errorInfo(h))?.message}`);
    return null;
  }
  return bg.result(h).toArray();
}

console.log('rows:', await runWithTimeout('SELECT 42 AS answer FROM pg_sleep(0.1)', 2000, 'quick'));
console.log('rows:', await runWithTimeout('SELECT 42 AS answer FROM pg_sleep(30)', 500, 'slow'));

await bg.close();
