// The command line's commands over a WorkerMonitor, and its exit statuses: 0 done, 1 nothing
// matched or the server refused (or could not be reached), 2 bad usage. Every failure is one
// line on stderr, `pg-background: ...`, redacted (see connection.ts); results go to stdout.
import { createRequire } from 'node:module';
import { PgBackgroundError } from '../errors.js';
import { WorkerMonitor, type MonitoredWorker } from '../monitor/worker-monitor.js';
import { USAGE, UsageError, parseCommand, type Command } from './args.js';
import { redact, resolveConnection } from './connection.js';
import { jsonRows, renderTable } from './table.js';
import { watch } from './watch.js';

/** `list` without --all: running and pending workers, and those finished in the last 10 minutes. */
export const RECENT_MS = 10 * 60_000;

export interface CliIo {
  env: NodeJS.ProcessEnv;
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WritableStream;
}

export async function main(argv: readonly string[], io: CliIo): Promise<number> {
  let secrets: string[] = io.env.PGPASSWORD ? [io.env.PGPASSWORD] : [];
  const fail = (status: number, message: string) => {
    io.stderr.write(`pg-background: ${oneLine(redact(message, secrets))}\n`);
    return status;
  };
  let command: Command;
  let monitor: WorkerMonitor;
  let target: string;
  try {
    command = parseCommand(argv);
    if (command.name === 'help') {
      io.stdout.write(USAGE + '\n');
      return 0;
    }
    if (command.name === 'version') {
      io.stdout.write(`${version()}\n`);
      return 0;
    }
    const connection = resolveConnection(command.url, io.env);
    secrets = connection.secrets;
    target = connection.target;
    monitor = new WorkerMonitor({ ...connection.options, ...(command.schema === undefined ? {} : { schema: command.schema }) });
  } catch (error) {
    if (error instanceof UsageError) return fail(2, `${error.message} (pg-background --help for usage)`);
    if (error instanceof PgBackgroundError && error.code === 'PGBG_INVALID_ARGUMENT') return fail(2, error.message);
    return fail(1, describe(error));
  }
  try {
    switch (command.name) {
      case 'list': {
        const list = () => monitor.list(command.all ? {} : { finishedWithinMs: RECENT_MS });
        if (command.json) {
          io.stdout.write(JSON.stringify(jsonRows(await list()), null, 2) + '\n');
          return 0;
        }
        if (!command.watch) {
          io.stdout.write(renderTable(await list(), { now: new Date() }).join('\n') + '\n');
          return 0;
        }
        // The first read fails the command (nothing installed, wrong password) before the screen changes.
        let first: MonitoredWorker[] | null = await list();
        await watch(io.stdout, {
          title: `pg-background list${command.all ? ' --all' : ''} · ${redact(target, secrets)}`,
          frame: async () => {
            const workers = first ?? (await list());
            first = null;
            return renderTable(workers, { now: new Date() });
          },
          describeError: (error) => oneLine(redact(describe(error, target), secrets)),
        });
        return 0;
      }
      case 'cancel': {
        // Resolves once the worker stopped (see WorkerMonitor.cancel); then the view says how it ended.
        const graceMs = command.graceMs === undefined ? {} : { graceMs: command.graceMs };
        if (!(await monitor.cancel(command.cookie, graceMs))) return fail(1, nothingMatched('cancel', command.cookie));
        const state = (await monitor.info(command.cookie))?.state;
        if (state === 'stopped' || state === 'error') {
          return fail(1, `cancel: worker ${command.cookie} ended ${state} before the cancel reached it`);
        }
        io.stdout.write(state === 'canceled' ? `canceled worker ${command.cookie}\n` : `worker ${command.cookie} has stopped\n`);
        return 0;
      }
      case 'pause':
      case 'resume': {
        if (!(await monitor[command.name](command.cookie))) return fail(1, nothingMatched(command.name, command.cookie));
        io.stdout.write(`${command.name} requested for worker ${command.cookie}\n`);
        return 0;
      }
    }
  } catch (error) {
    return fail(1, describe(error, target));
  } finally {
    await monitor.close();
  }
}

function nothingMatched(name: 'cancel' | 'pause' | 'resume', cookie: bigint): string {
  if (name === 'cancel') return `cancel: no active worker with cookie ${cookie} (unknown, or already finished)`;
  if (name === 'pause') return `pause: nothing to pause: no pending worker or job with cookie ${cookie}`;
  return `resume: nothing to resume: no paused worker or job with cookie ${cookie}`;
}

function describe(error: unknown, target?: string): string {
  if (error instanceof PgBackgroundError) {
    if (error.code === 'PGBG_CONNECTION_FAILED') return `cannot connect${target ? ` to ${target}` : ''}: ${error.message}`;
    return `${error.code}: ${error.message}`;
  }
  return error instanceof Error ? error.message : String(error);
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ').trim();
}

function version(): string {
  // ../../package.json from both src/cli/ and dist/cli/.
  return (createRequire(import.meta.url)('../../package.json') as { version: string }).version;
}
