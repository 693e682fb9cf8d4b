// The command line's grammar, on util.parseArgs: what the user typed becomes one Command, or a
// UsageError (exit status 2) naming what is wrong. Nothing here connects or prints; every check
// that can be made without the server is made here, so bad usage never opens a connection.
import { parseArgs } from 'node:util';

export const USAGE = `Usage: pg-background [--url URL] [--schema NAME] <command> [options]

Commands:
  list [--json] [--watch] [--all]   the server's workers, newest first, subtasks under their root
                                    (running ones and those finished in the last 10 minutes;
                                    --all: every retained one; --watch: redraw every second
                                    until Ctrl-C; --json: the view's rows as a JSON array)
  cancel <cookie> [--grace MS]      cancel a worker of any process (grace before terminate,
                                    default 5000 ms)
  pause <cookie>                    hold a pending worker or job until resumed
  resume <cookie>                   release a paused worker or job

A worker is named by its cookie, or by the pid:cookie that list shows.
Connection: --url, else DATABASE_URL, else the PG* variables (PGHOST, PGPORT, PGUSER,
PGPASSWORD, PGDATABASE, ...), as psql does. --schema: where install() put the view
(default public).

Exit status: 0 done, 1 nothing matched or the server refused, 2 bad usage.`;

export class UsageError extends Error {
  override name = 'UsageError';
}

interface Common {
  url: string | undefined;
  schema: string | undefined;
}

export type Command =
  | { name: 'help' }
  | { name: 'version' }
  | (Common & { name: 'list'; json: boolean; watch: boolean; all: boolean })
  | (Common & { name: 'cancel'; cookie: bigint; graceMs: number | undefined })
  | (Common & { name: 'pause' | 'resume'; cookie: bigint });

const MAX_GRACE_MS = 3_600_000;
const INT8_MIN = -(2n ** 63n);
const INT8_MAX = 2n ** 63n - 1n;

/** Which options each command takes, besides the connection's. */
const COMMAND_OPTIONS: Record<string, readonly string[]> = {
  list: ['json', 'watch', 'all'],
  cancel: ['grace'],
  pause: [],
  resume: [],
};

/** Options that take a value: what follows them is theirs, even when it starts with '-'. */
const VALUED = new Set(['--url', '--schema', '--grace']);

/**
 * Cookies are signed: `cancel -4611686018427387904` (or list's `123:-46...`) names a worker, not
 * an option. Such arguments go behind a `--`, where parseArgs takes them as positionals; the
 * value of an option that takes one stays where it is.
 */
function negativeCookiesLast(argv: readonly string[]): string[] {
  const end = argv.indexOf('--');
  const head = end < 0 ? [...argv] : argv.slice(0, end);
  const tail = end < 0 ? [] : argv.slice(end + 1);
  const kept: string[] = [];
  const moved: string[] = [];
  head.forEach((arg, i) => (/^-\d+$/.test(arg) && !VALUED.has(head[i - 1] ?? '') ? moved : kept).push(arg));
  return moved.length || end >= 0 ? [...kept, '--', ...moved, ...tail] : kept;
}

export function parseCommand(argv: readonly string[]): Command {
  let parsed;
  try {
    parsed = parseArgs({
      args: negativeCookiesLast(argv),
      allowPositionals: true,
      strict: true,
      options: {
        url: { type: 'string' },
        schema: { type: 'string' },
        json: { type: 'boolean' },
        watch: { type: 'boolean' },
        all: { type: 'boolean' },
        grace: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean' },
      },
    });
  } catch (error) {
    // parseArgs' messages are long and vary between Node versions: ours name the option.
    const { code, message } = error as { code?: string; message: string };
    const option = /'(-[^' ]*)/.exec(message)?.[1];
    if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && option) throw new UsageError(`unknown option ${option}`);
    if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && option)
      throw new UsageError(`${option} needs a value (${option}=VALUE for one that starts with '-')`);
    throw new UsageError(message.split('\n')[0]!);
  }
  const { values, positionals } = parsed;
  if (values.help || positionals[0] === 'help') return { name: 'help' };
  if (values.version) return { name: 'version' };
  const [name, ...rest] = positionals;
  if (name === undefined) throw new UsageError('no command given (list, cancel, pause or resume)');
  const allowed = COMMAND_OPTIONS[name];
  if (!allowed) throw new UsageError(`unknown command ${JSON.stringify(name)} (list, cancel, pause or resume)`);
  for (const option of ['json', 'watch', 'all', 'grace'] as const) {
    if (values[option] !== undefined && !allowed.includes(option)) throw new UsageError(`${name} does not take --${option}`);
  }
  if (values.url !== undefined && values.url === '') throw new UsageError('--url is empty');
  if (values.schema !== undefined && values.schema === '') throw new UsageError('--schema is empty');
  const common: Common = { url: values.url, schema: values.schema };

  if (name === 'list') {
    if (rest.length > 0) throw new UsageError(`list takes no argument, got ${JSON.stringify(rest[0])}`);
    if (values.json && values.watch) throw new UsageError('--json and --watch cannot be combined');
    return { ...common, name, json: values.json === true, watch: values.watch === true, all: values.all === true };
  }
  if (rest.length === 0) throw new UsageError(`${name} needs a worker's cookie`);
  if (rest.length > 1) throw new UsageError(`${name} takes one cookie, got ${rest.length} arguments`);
  const cookie = parseCookie(rest[0]!);
  if (name === 'cancel') {
    return { ...common, name, cookie, graceMs: values.grace === undefined ? undefined : parseGrace(values.grace) };
  }
  return { ...common, name: name as 'pause' | 'resume', cookie };
}

/** A cookie in decimal (a signed 64-bit integer, as the view shows it), or list's `pid:cookie`. */
export function parseCookie(text: string): bigint {
  const match = /^(?:\d+:)?(-?\d{1,19})$/.exec(text);
  const cookie = match ? BigInt(match[1]!) : null;
  if (cookie === null || cookie < INT8_MIN || cookie > INT8_MAX) {
    throw new UsageError(`expected a cookie (a 64-bit integer, or pid:cookie as list shows it), got ${JSON.stringify(text)}`);
  }
  return cookie;
}

function parseGrace(text: string): number {
  const grace = /^\d{1,7}$/.test(text) ? Number(text) : NaN;
  if (!(grace <= MAX_GRACE_MS)) throw new UsageError(`--grace must be an integer from 0 to ${MAX_GRACE_MS} (ms), got ${JSON.stringify(text)}`);
  return grace;
}
