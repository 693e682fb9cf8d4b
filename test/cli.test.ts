// The `pg-background` command, run as a child process (the sources, through tsx) against the real
// server, on workers this file launches from its own PgBackground: list (the table and --json),
// cancel by cookie, the exit statuses 0/1/2 with a one-line error, psql's connection rules, no
// password ever printed, and --watch in a real terminal (tmux), read back from the screen.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join, resolve } from 'node:path';
import { Writable } from 'node:stream';
import { main } from '../src/cli/run.js';
import { until, useDatabase } from './support/database.js';
import { outsider } from './support/outsider.js';
import { Terminal } from './support/terminal.js';

// A role of its own: it may not signal the superuser's workers.
const stranger = outsider('pgbg_cli_outsider');
const db = useDatabase(import.meta.filename, stranger.hooks);
const repo = resolve(import.meta.dirname, '..');
const MAIN = join(repo, 'src', 'cli', 'main.ts');
const NODE_ARGS = ['--conditions=pg-background-source', '--import', 'tsx', MAIN];
const COLUMNS = [
  'cookie',
  'pid',
  'label',
  'scope',
  'parent',
  'state',
  'phase',
  'fraction_completed',
  'sql_preview',
  'user_name',
  'owner',
  'attempts',
  'launched_at',
  'started_at',
  'updated_at',
  'finished_at',
  'elapsed_ms',
  'wait_event',
  'blocked_by',
  'sqlstate',
  'error_message',
  'command_tag',
  'row_count',
];

interface Ran {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** The environment without any PG* variable, DATABASE_URL at this file's database, times in UTC. */
function cleanEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith('PG') && key !== 'DATABASE_URL') env[key] = value;
  Object.assign(env, { DATABASE_URL: db.url, TZ: 'UTC' }, extra);
  for (const [key, value] of Object.entries(env)) if (value === undefined) delete env[key];
  return env;
}

function cli(args: string[], env: Record<string, string | undefined> = {}): Promise<Ran> {
  return new Promise((resolveRun, reject) => {
    const child = spawn(process.execPath, [...NODE_ARGS, ...args], { cwd: repo, env: cleanEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.once('error', reject);
    child.once('close', (status) => resolveRun({ status, stdout, stderr }));
  });
}

/**
 * The same command in this process (main() with the given environment and captured streams):
 * for the many cases of one rule, where a child process each would only cost seconds. Each rule
 * is also checked through a real child process. (pg itself reads PG* from process.env, so the
 * PG* resolution is only tested in a child.)
 */
async function inProcess(args: string[], env: Record<string, string | undefined> = {}): Promise<Ran> {
  let stdout = '';
  let stderr = '';
  const sink = (write: (text: string) => void) =>
    new Writable({
      write(chunk: Buffer, _encoding, done) {
        write(chunk.toString('utf8'));
        done();
      },
    });
  const status = await main(args, {
    env: cleanEnv(env),
    stdout: sink((text) => (stdout += text)) as unknown as NodeJS.WriteStream,
    stderr: sink((text) => (stderr += text)),
  });
  return { status, stdout, stderr };
}

/** Rows of list's table as records keyed by the header's words, cut at the header's column starts. */
function parseTable(text: string): { header: string[]; rows: Record<string, string>[]; summary: string } {
  const lines = text.replace(/\n$/, '').split('\n');
  const head = lines[0]!;
  const starts = [...head.matchAll(/\S+/g)].map((m) => m.index);
  const header = [...head.matchAll(/\S+/g)].map((m) => m[0]);
  const rows = lines.slice(1, -1).map((line) => {
    const chars = [...line];
    return Object.fromEntries(
      header.map((name, i) => [
        name,
        chars
          .slice(starts[i], starts[i + 1] ?? chars.length)
          .join('')
          .trim(),
      ]),
    );
  });
  return { header, rows, summary: lines.at(-1)! };
}

/** The view's row of one worker, as --json must print it (int8 as text, dates as ISO strings). */
async function viewRow(cookie: bigint): Promise<Record<string, unknown> | undefined> {
  const [row] = await db.query(
    `SELECT cookie::text AS cookie, pid, label, scope, parent::text AS parent, state, phase, fraction_completed, sql_preview,
            user_name, owner, attempts, launched_at, started_at, updated_at, finished_at, elapsed_ms::int8::float8 AS elapsed_ms,
            wait_event, blocked_by, sqlstate, error_message, command_tag, row_count::float8 AS row_count
       FROM pg_background_workers WHERE cookie = $1`,
    [cookie.toString()],
  );
  if (!row) return undefined;
  return Object.fromEntries(Object.entries(row).map(([k, v]) => [k, v instanceof Date ? v.toISOString() : v]));
}

function utcTime(iso: string): string {
  return iso.slice(11, 19);
}

test('list shows another process’s running worker as a row of the table, and --json prints the view’s rows with its exact columns', async (t) => {
  const bg = db.background({ journal: true });
  t.after(() => bg.close({ cancel: true }));
  await bg.install({ journal: true });
  const h = await bg.launch('SELECT pg_sleep(60)', { label: 'cli/sleeper' });
  // Its journal row (the owner) lands in the owner's next batch.
  await until(async () => {
    const row = await viewRow(h.cookie);
    return row?.wait_event === 'Timeout:PgSleep' && row.owner !== null;
  }, 'the worker in the view, sleeping, journaled');

  const listed = await cli(['list']);
  assert.equal(listed.stderr, '');
  assert.equal(listed.status, 0);
  const table = parseTable(listed.stdout);
  assert.deepEqual(table.header, ['ID', 'SCOPE', 'LABEL', 'STATE', 'PHASE', 'PROGRESS', 'STARTED', 'ELAPSED', 'OWNER', 'WAIT']);
  const view = (await viewRow(h.cookie))!;
  // The view answers for the whole server: the suite's other files have workers too (other databases).
  const ours = table.rows.filter((r) => r.ID === `${h.pid}:${h.cookie}`);
  assert.equal(ours.length, 1);
  const row = ours[0]!;
  assert.match(row.ELAPSED!, /^\d+\.\ds$/);
  assert.deepEqual(
    { ...row, ELAPSED: '' },
    {
      ID: `${h.pid}:${h.cookie}`,
      SCOPE: 'root',
      LABEL: 'cli/sleeper',
      STATE: 'running',
      PHASE: '',
      PROGRESS: '',
      STARTED: utcTime(view.started_at as string),
      ELAPSED: '',
      OWNER: view.owner,
      WAIT: 'Timeout:PgSleep',
    },
  );
  assert.match(table.summary, new RegExp(`^\\(${table.rows.length} workers?: \\d+ running.*\\)$`));

  const json = await cli(['list', '--json']);
  assert.equal(json.status, 0);
  assert.equal(json.stderr, '');
  const rows = (JSON.parse(json.stdout) as Record<string, unknown>[]).filter((r) => r.cookie === h.cookie.toString());
  assert.equal(rows.length, 1);
  const [printed] = rows as [Record<string, unknown>];
  assert.deepEqual(Object.keys(printed), COLUMNS);
  const [{ user }] = (await db.query('SELECT current_user AS user')) as [{ user: string }];
  assert.deepEqual({ ...printed, elapsed_ms: 0, updated_at: '' }, { ...(await viewRow(h.cookie)), elapsed_ms: 0, updated_at: '' });
  assert.deepEqual(
    [printed.cookie, printed.pid, printed.label, printed.scope, printed.parent, printed.state, printed.sql_preview, printed.user_name],
    [h.cookie.toString(), h.pid, 'cli/sleeper', 'root', null, 'running', 'SELECT pg_sleep(60)', user],
  );
  assert.deepEqual(
    [printed.attempts, printed.finished_at, printed.wait_event, printed.blocked_by, printed.sqlstate, printed.error_message],
    [1, null, 'Timeout:PgSleep', [], null, null],
  );
  assert.equal(typeof printed.elapsed_ms, 'number');
  await bg.cancel(h);
  await bg.close();
});

/** A journaling instance's worker sleeping a minute under `label`, once the view shows it running; closed after the test. */
async function sleeperInView(t: TestContext, label: string) {
  const bg = db.background({ journal: true });
  t.after(() => bg.close({ cancel: true }));
  await bg.install({ journal: true });
  const h = await bg.launch('SELECT pg_sleep(60)', { label });
  await until(async () => (await viewRow(h.cookie))?.state === 'running', 'the worker in the view');
  return { bg, h };
}

test('cancel <cookie> cancels another process’s worker (it ends canceled, and list --all shows it so); a wrong cookie is exit 1', async (t) => {
  const { bg, h } = await sleeperInView(t, 'cli/victim');

  // A role that could not pg_cancel_backend it is refused, and it runs on.
  const refused = await cli(['--url', stranger.url(db.url), 'cancel', h.cookie.toString()]);
  assert.deepEqual({ ...refused, stderr: '' }, { status: 1, stdout: '', stderr: '' });
  assert.match(refused.stderr, /^pg-background: PGBG_PERMISSION_DENIED: [^\n]*permission denied[^\n]*\n$/);
  assert.equal((await bg.info(h)).state, 'running');

  const canceled = await cli(['cancel', h.cookie.toString(), '--grace', '2000']);
  assert.deepEqual(canceled, { status: 0, stdout: `canceled worker ${h.cookie}\n`, stderr: '' });
  await bg.wait(h);
  assert.equal((await bg.info(h)).state, 'canceled');
  await until(async () => (await viewRow(h.cookie))?.state === 'canceled', 'the view saying canceled');
  const all = JSON.parse((await inProcess(['list', '--all', '--json'])).stdout) as { cookie: string; state: string }[];
  assert.deepEqual(
    all.filter((w) => w.cookie === h.cookie.toString()).map((w) => w.state),
    ['canceled'],
  );

  // Again (it is finished now), and a cookie nobody has: nothing matched.
  // (Cookies are signed: a negative one is a cookie, not an option.)
  for (const [i, cookie] of [h.cookie.toString(), '12345', '-12345'].entries()) {
    assert.deepEqual(await (i === 0 ? cli : inProcess)(['cancel', cookie]), {
      status: 1,
      stdout: '',
      stderr: `pg-background: cancel: no active worker with cookie ${cookie} (unknown, or already finished)\n`,
    });
  }
  // list's pid:cookie names it too.
  assert.equal((await inProcess(['cancel', `${h.pid}:${h.cookie}`])).status, 1);
  await bg.close();
});

test('bad usage is exit 2 with one line on stderr, before any connection', async () => {
  const cases: [string[], string][] = [
    [[], 'no command given (list, cancel, pause or resume)'],
    [['lst'], 'unknown command "lst" (list, cancel, pause or resume)'],
    [['list', '--bogus'], 'unknown option --bogus'],
    [['list', '-x'], 'unknown option -x'],
    [['list', '--grace', '5'], 'list does not take --grace'],
    [['list', 'extra'], 'list takes no argument, got "extra"'],
    [['list', '--json', '--watch'], '--json and --watch cannot be combined'],
    [['cancel'], "cancel needs a worker's cookie"],
    [['cancel', '1', '2'], 'cancel takes one cookie, got 2 arguments'],
    [['cancel', 'abc'], 'expected a cookie (a 64-bit integer, or pid:cookie as list shows it), got "abc"'],
    [['cancel', '9223372036854775808'], 'expected a cookie (a 64-bit integer, or pid:cookie as list shows it), got "9223372036854775808"'],
    [['cancel', '1', '--grace', '-1'], "--grace needs a value (--grace=VALUE for one that starts with '-')"],
    [['cancel', '1', '--grace=-1'], '--grace must be an integer from 0 to 3600000 (ms), got "-1"'],
    [['cancel', '1', '--grace', '3600001'], '--grace must be an integer from 0 to 3600000 (ms), got "3600001"'],
    [['pause', '1', '--json'], 'pause does not take --json'],
    [['list', '--url'], "--url needs a value (--url=VALUE for one that starts with '-')"],
  ];
  // DATABASE_URL points at a closed port: had any of them connected, it would have failed with 1.
  const env = { DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none' };
  // Two through a child process (the status and the line reach the shell), all of them in-process.
  const results = await Promise.all(cases.map(([args], i) => (i < 2 ? cli : inProcess)(args, env)));
  results.forEach((ran, i) => {
    const [args, message] = cases[i]!;
    assert.deepEqual(ran, { status: 2, stdout: '', stderr: `pg-background: ${message} (pg-background --help for usage)\n` }, args.join(' '));
  });
  const help = await inProcess(['--help'], env);
  assert.equal(help.status, 0);
  assert.match(help.stdout, /^Usage: pg-background \[--url URL\]/);
});

test('the connection comes from --url, else DATABASE_URL, else the PG* variables, as psql does', async () => {
  const url = new URL(db.url);
  const closed = 'postgres://nobody@127.0.0.1:1/none';
  const pgVars = {
    DATABASE_URL: undefined,
    PGHOST: url.hostname,
    PGPORT: url.port,
    PGUSER: decodeURIComponent(url.username),
    PGPASSWORD: decodeURIComponent(url.password),
    PGDATABASE: db.name,
  };
  const [byUrl, byEnv, byPg, refused] = await Promise.all([
    inProcess(['--url', db.url, 'list', '--json'], { DATABASE_URL: closed }),
    inProcess(['list', '--json']),
    cli(['list', '--json'], pgVars),
    inProcess(['list'], { DATABASE_URL: closed }),
  ]);
  // The same rows (this file's earlier workers, all finished by now) whichever way it connected.
  const cookies = (ran: Ran) =>
    (JSON.parse(ran.stdout) as { cookie: string; label: string | null }[]).filter((w) => w.label?.startsWith('cli/')).map((w) => w.cookie);
  for (const ran of [byUrl, byEnv, byPg]) assert.deepEqual({ ...ran, stdout: '' }, { status: 0, stdout: '', stderr: '' });
  assert.equal(cookies(byEnv).length, 2);
  assert.deepEqual(cookies(byUrl), cookies(byEnv));
  assert.deepEqual(cookies(byPg), cookies(byEnv));
  assert.equal(refused.status, 1);
  assert.equal(refused.stdout, '');
  assert.match(refused.stderr, /^pg-background: cannot connect to nobody@127\.0\.0\.1:1\/none: .*ECONNREFUSED.*\n$/);
  // A database without the view: nothing installed there (another schema here).
  const missing = await inProcess(['list', '--schema', 'nowhere']);
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /^pg-background: PGBG_NOT_INSTALLED: pg-background is not installed in schema "nowhere" of this database .*\n$/);
});

test('no password is ever printed: not of a URL that fails to parse, to connect or to authenticate, nor PGPASSWORD', async () => {
  const real = new URL(db.url);
  const secret = 'Sup3r-S3cret-pw';
  const wrongDb = new URL(db.url);
  wrongDb.pathname = '/no_such_database';
  const wrongPassword = new URL(db.url);
  wrongPassword.password = secret;
  const runs = await Promise.all([
    inProcess(['--url', `postgres://alice:${secret}@[::1/db`, 'list']),
    cli(['list'], { DATABASE_URL: `postgres://alice:${secret}@127.0.0.1:1/db` }),
    inProcess(['list'], { DATABASE_URL: `postgres://alice:${encodeURIComponent(secret + '@/')}@127.0.0.1:1/db` }),
    inProcess(['list'], { DATABASE_URL: `postgres://alice@127.0.0.1:1/db?password=${secret}` }),
    inProcess(['--url', wrongDb.toString(), 'list']),
    inProcess(['--url', wrongPassword.toString(), 'list', '--schema', 'nowhere']),
    cli(['list'], { DATABASE_URL: undefined, PGHOST: '127.0.0.1', PGPORT: '1', PGUSER: 'alice', PGPASSWORD: secret }),
    inProcess(['cancel', '1'], { DATABASE_URL: `postgres://alice:${secret}@127.0.0.1:1/db` }),
    // Unparsable, with what an unencoded password may hold: a space, a tab, an `@`.
    inProcess(['--url', `postgres://alice:my ${secret}@localhost:54x32/db`, 'list']),
    inProcess(['list'], { DATABASE_URL: `postgres://alice:tab\t${secret}@localhost:54x32/db` }),
    inProcess(['--url', `postgres://alice:at@${secret}@localhost:54x32/db`, 'list']),
    inProcess(['--url', `postgres://al ice:my ${secret}@localhost:54x32/db`, 'list']),
    inProcess(['--url', `postgres://alice@localhost:54x32/db?password=my ${secret}&sslmode=disable`, 'list']),
  ]);
  const statuses = runs.map((ran) => ran.status);
  assert.deepEqual(statuses, [2, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2]);
  for (const ran of runs) {
    assert.equal(ran.stdout, '');
    assert.match(ran.stderr, /^pg-background: [^\n]+\n$/);
    for (const hidden of [secret, encodeURIComponent(secret + '@/'), real.password, decodeURIComponent(real.password)].filter(Boolean)) {
      assert.ok(!ran.stderr.includes(hidden), `${ran.stderr} shows a password`);
    }
  }
  assert.equal(
    runs[0]!.stderr,
    `pg-background: --url is not a valid connection string (postgres://alice:***@[::1/db): Invalid URL (pg-background --help for usage)\n`,
  );
  assert.match(runs[4]!.stderr, /database "no_such_database" does not exist/);
  for (const [i, source] of [
    [8, '--url'],
    [9, 'DATABASE_URL'],
    [10, '--url'],
  ] as const) {
    assert.equal(
      runs[i]!.stderr,
      `pg-background: ${source} is not a valid connection string (postgres://alice:***@localhost:54x32/db): Invalid URL (pg-background --help for usage)\n`,
    );
  }
  assert.match(runs[11]!.stderr, /\(postgres:\/\/al ice:\*\*\*@localhost:54x32\/db\)/);
  assert.match(runs[12]!.stderr, /\(postgres:\/\/alice@localhost:54x32\/db\?password=\*\*\*&sslmode=disable\)/);
});

test('list --watch redraws in place in a real terminal, and Ctrl-C ends it with 0 and restores the screen', async (t) => {
  const { bg, h } = await sleeperInView(t, 'cli/watched');

  const node = [process.execPath, ...NODE_ARGS].map((arg) => `'${arg}'`).join(' ');
  // sh ignores nothing (its trap runs a command, so the child gets SIGINT as usual) and goes on
  // after the CLI to print its status; the pane then stays for the last capture.
  const command = `trap 'true' INT; printf 'before the watch\\n'; cd '${repo}'; ${node} list --watch; echo "exit status $?"; sleep 600`;
  const env = cleanEnv() as Record<string, string>;
  const terminal = await Terminal.open(command, { width: 200, height: 60, env: { DATABASE_URL: env.DATABASE_URL!, TZ: 'UTC', PATH: env.PATH! } });
  t.after(() => terminal.close());

  const id = `${h.pid}:${h.cookie}`;
  const rowOf = (screen: string[]) => screen.filter((line) => line.startsWith(id + ' '));
  const running = await until(async () => {
    const screen = await terminal.screen();
    return rowOf(screen).some((line) => / running /.test(line)) && screen;
  }, 'the watch showing the worker running');
  assert.equal(await terminal.flag('alternate_on'), '1');
  assert.equal(await terminal.flag('cursor_flag'), '0');
  assert.match(running[0]!, /^pg-background list · .+@.+:\d+\/pgbg_test_cli_\w+ · \d\d:\d\d:\d\d · every 1s, Ctrl-C to quit$/);
  assert.equal(running[1], '');
  assert.deepEqual(parseTable(running.slice(2, 5).join('\n') + '\n').header, [
    'ID',
    'SCOPE',
    'LABEL',
    'STATE',
    'PHASE',
    'PROGRESS',
    'STARTED',
    'ELAPSED',
    'OWNER',
    'WAIT',
  ]);
  // A whole frame: header, blank, table header, its rows (other databases' running workers too:
  // the view answers for the server), the summary saying how many, and nothing below it.
  const frame = (screen: string[]) => {
    const summaryAt = screen.findIndex((line) => /^\(\d+ workers?: .*\)$/.test(line));
    assert.ok(summaryAt > 2, screen.join('\n'));
    assert.equal(Number(/^\((\d+)/.exec(screen[summaryAt]!)![1]), summaryAt - 3, screen.join('\n'));
    assert.deepEqual(screen.slice(summaryAt + 1).filter(Boolean), [], screen.join('\n'));
    assert.equal(screen.filter((line) => line.startsWith('pg-background list')).length, 1);
    assert.equal(screen.filter((line) => line.startsWith('ID ')).length, 1);
    const ours = screen.slice(3, summaryAt).filter((line) => line.startsWith(id + ' '));
    assert.equal(ours.length, 1, screen.join('\n'));
    return ours[0]!;
  };
  assert.match(frame(running), / cli\/watched +running /);
  assert.ok(!running.includes('before the watch'));

  await bg.cancel(h);
  const canceled = await until(async () => {
    const screen = await terminal.screen();
    return rowOf(screen).some((line) => / canceled /.test(line)) && screen;
  }, 'the watch showing the worker canceled');
  // Redrawn in place: still one whole frame, the worker's one row now canceled (not appended).
  assert.match(canceled[0]!, /^pg-background list · /);
  assert.match(frame(canceled), / cli\/watched +canceled /);

  await terminal.keys('C-c');
  const after = await until(async () => {
    const screen = await terminal.screen();
    return screen.includes('exit status 0') && screen;
  }, 'the shell printing the exit status');
  assert.deepEqual(after.filter(Boolean), ['before the watch', 'exit status 0']);
  assert.equal(await terminal.flag('alternate_on'), '0');
  assert.equal(await terminal.flag('cursor_flag'), '1');
  await bg.close();
});
