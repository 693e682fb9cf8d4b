// Runs a command against DATABASE_URL when it is set, otherwise against a throwaway PostgreSQL
// started here and removed afterwards: `tsx scripts/with-postgres.ts -- <command> [args...]`.
import { spawn } from 'node:child_process';
import { startLocalPostgres, type LocalPostgres } from './local-postgres.js';

const separator = process.argv.indexOf('--');
const [command, ...args] = separator === -1 ? [] : process.argv.slice(separator + 1);
if (!command) {
  console.error('usage: tsx scripts/with-postgres.ts -- <command> [args...]');
  process.exit(2);
}

let server: LocalPostgres | undefined;
const env = { ...process.env };
if (env.DATABASE_URL && (env.PGBG_PG_VERSION || env.PGBG_PG_AUTH)) {
  console.error('[with-postgres] DATABASE_URL is set: PGBG_PG_VERSION and PGBG_PG_AUTH only choose the servers that tests start themselves');
}
if (!env.DATABASE_URL) {
  const started = Date.now();
  server = await startLocalPostgres();
  env.DATABASE_URL = server.url;
  env.PGBG_LOCAL_SERVER = '1';
  console.error(`[with-postgres] throwaway PostgreSQL ${server.version} (${server.auth} auth) on port ${server.port} (${Date.now() - started} ms to start)`);
}

const child = spawn(command, args, { stdio: 'inherit', env });
const forward = (signal: NodeJS.Signals) => child.kill(signal);
process.on('SIGINT', forward);
process.on('SIGTERM', forward);

const code = await new Promise<number>((resolve) => {
  child.once('exit', (exitCode, signal) => resolve(exitCode ?? (signal ? 128 : 1)));
  child.once('error', (error) => {
    console.error(error);
    resolve(127);
  });
});
process.off('SIGINT', forward);
process.off('SIGTERM', forward);
if (server) await server.destroy();
process.exit(code);
