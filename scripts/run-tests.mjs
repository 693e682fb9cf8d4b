// Runs every test file with node:test (TypeScript through tsx), then checks that the suite left
// no connection of ours on the server. Expects DATABASE_URL (`npm test` sets it up).
// Arguments are test files to run instead of all of them.
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';

const SUITE_TIMEOUT_MS = 30 * 60_000;
const files = process.argv.slice(2).length
  ? process.argv.slice(2)
  : readdirSync('test', { recursive: true })
      .map(String)
      .filter((file) => file.endsWith('.test.ts'))
      .sort()
      .map((file) => join('test', file));

const args = [
  '--conditions=pg-background-source',
  '--import',
  'tsx',
  '--test',
  '--test-concurrency=3',
  '--test-timeout=120000',
  ...(process.env.CI ? ['--test-reporter=spec'] : []),
  ...files,
];
const child = spawn(process.execPath, args, { stdio: 'inherit' });
// A suite that does not exit by itself (a leaked socket or timer) fails instead of hanging CI.
const watchdog = setTimeout(() => {
  console.error(`\n[run-tests] the suite did not exit within ${SUITE_TIMEOUT_MS / 60000} minutes: something keeps it alive`);
  child.kill('SIGKILL');
}, SUITE_TIMEOUT_MS);
const code = await new Promise((resolve) => child.once('exit', (exitCode, signal) => resolve(exitCode ?? (signal ? 1 : 0))));
clearTimeout(watchdog);

// Leak check over the whole run: no backend of ours may remain on the server.
const client = new pg.Client({ connectionString: process.env.DATABASE_URL, application_name: 'pgbg-leak-check' });
await client.connect();
let rows = [];
// Backends of connections closed a moment ago may still be exiting: allow them a second.
for (let attempt = 0; attempt < 50; attempt++) {
  ({ rows } = await client.query(
    `SELECT pid, datname, application_name, state, query FROM pg_stat_activity
      WHERE pid <> pg_backend_pid() AND (application_name LIKE 'pg-background%' OR application_name LIKE 'pgbg:%' OR application_name LIKE 'pgbg-test%' OR datname LIKE 'pgbg\\_test\\_%')`,
  ));
  if (rows.length === 0) break;
  await new Promise((resolve) => setTimeout(resolve, 20));
}
await client.end();
if (rows.length > 0) {
  console.error('[run-tests] connections left on the server after the suite:', rows);
  process.exit(1);
}
console.error('[run-tests] leak check: no pg-background connection left on the server');
process.exit(code);
