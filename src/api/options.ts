// Options are checked once, on entry, and frozen: nothing is clamped or guessed later.
import type pg from 'pg';
import { parse as parseConnectionString } from 'pg-connection-string';
import { invalidArgument } from '../errors.js';
import type { TypeParsers } from '../results/row-parser.js';
import type { InstanceOptions } from '../store/instance-options.js';
import { MAX_BACKOFF_MS, type LaunchPlan, type RetryPolicy } from '../store/launch-plan.js';
import type { Worker } from '../store/worker.js';
import { commitsOnItsOwn } from '../plan/commit-points.js';
import { IDLE_TAG } from '../store/worker-identity.js';
import { unreadableSetting } from '../pool/readable-settings.js';
import { Readable } from 'node:stream';
import { copyDirection, planTask, type TaskPlan, type TaskSql } from '../plan/task-plan.js';
import type { LaunchOptions, PgBackgroundOptions, SettingValue } from './types.js';

export type { InstanceOptions };
import {
  MAX_TIMER_MS,
  abortSignal,
  boolean,
  checkUtf8,
  describe,
  integer,
  knownKeys,
  nonEmptyString,
  oneOf,
  plainObject,
  readable,
  unreadable,
} from '../util/validate.js';

export const MIN_QUEUE_SIZE = 4096;
export const MAX_QUEUE_SIZE = 268_435_456;
export const MAX_GRACE_MS = 3_600_000;
export const MAX_LABEL_BYTES = 64;
export const MIN_LIVENESS_TIMEOUT_MS = 100;
export const MAX_CLUSTER_WORKERS = 10_000;
export const MAX_CLUSTER_KEY_BYTES = 256;
const DEFAULT_CLUSTER_KEY = 'pg-background';
const DEFAULT_APPLICATION_NAME = 'pg-background';

const ownKeys = [
  'maxWorkers',
  'defaultQueueSize',
  'workerTimeoutMs',
  'whenFull',
  'retentionMs',
  'maxRetained',
  'settings',
  'role',
  'rowMode',
  'types',
  'maxIdle',
  'minIdle',
  'idleTimeoutMs',
  'cancelGraceMs',
  'livenessTimeoutMs',
  'onCallerExit',
  'clusterMaxWorkers',
  'clusterKey',
  'journal',
  'journalRetentionMs',
  'tagConnections',
] as const;

/**
 * Keys that node-postgres would take silently and ignore: a launch's own options, and pg.Pool's.
 * Everything else that is not ours goes to pg's Client as it is.
 */
const notForTheConstructor: Record<string, string> = {
  queueSize: 'it is a launch option (launch(sql, { queueSize })); the instance-wide default is `defaultQueueSize`',
  label: 'it is a launch option (launch(sql, { label }))',
  signal: 'it is a launch option (launch(sql, { signal })); close() ends the instance',
  timeoutMs: 'it is a launch option (launch(sql, { timeoutMs })); the instance-wide default is `workerTimeoutMs`',
  fresh: 'it is a launch option (launch(sql, { fresh }))',
  cursor: 'it is a launch option (launch(sql, { cursor: { batchRows } }))',
  max: 'it is a pg.Pool option; the most workers at once is `maxWorkers`',
  min: 'it is a pg.Pool option; warm connections kept are `minIdle` / `maxIdle`',
  idleTimeoutMillis: 'it is a pg.Pool option; warm connections close after `idleTimeoutMs`',
  maxUses: 'it is a pg.Pool option; pg-background resets a connection after every task',
  allowExitOnIdle: 'it is a pg.Pool option; idle warm connections never keep the process alive',
};

export function instanceOptions(input: unknown): InstanceOptions {
  const options = (input === undefined ? {} : readable('options', plainObject('options', input), ownKeys)) as PgBackgroundOptions & Record<string, unknown>;
  const connection: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(options)) {
    if ((ownKeys as readonly string[]).includes(key)) continue;
    // Everything else goes to node-postgres, but a miscased option of ours is surely a typo.
    const ours = ownKeys.find((own) => own.toLowerCase() === key.toLowerCase());
    if (ours) throw invalidArgument(`Unknown option \`${key}\`; did you mean \`${ours}\`?`);
    const elsewhere = notForTheConstructor[key];
    if (elsewhere) throw invalidArgument(`Option \`${key}\` does not belong to the constructor: ${elsewhere}`);
    connection[key] = value;
  }
  if (connection.connectionString !== undefined) {
    if (typeof connection.connectionString !== 'string') {
      throw invalidArgument(`Expected \`connectionString\` to be a string, got ${describe(connection.connectionString)}`);
    }
    // Resolved once, here, exactly as node-postgres would (its own parser; the string's values
    // win over the options'): everything after this reads plain fields.
    let parsed: Record<string, unknown> | null = null;
    try {
      parsed = parseConnectionString(connection.connectionString) as Record<string, unknown>;
    } catch {
      // Left as it is: connecting fails on it, as in node-postgres, with PGBG_CONNECTION_FAILED.
    }
    if (parsed) {
      delete connection.connectionString;
      Object.assign(connection, parsed);
    }
  }
  // pg's client-side read timer would fire on our long-lived internal readers and drop warm
  // connections; worker and statement deadlines have their own options.
  if (connection.query_timeout !== undefined) {
    throw invalidArgument(
      "Option `query_timeout` is not supported: use `workerTimeoutMs` (or a launch's `timeoutMs`) to cancel workers that run too long, or `statement_timeout` in `settings`",
    );
  }
  // pg takes `connection` for its own protocol object: it would replace every worker's.
  if (connection.connection !== undefined) {
    throw invalidArgument(
      `Option \`connection\` is not supported: pg-background opens each worker's protocol connection itself, got ${describe(connection.connection)}`,
    );
  }
  if (connection.client_encoding !== undefined) {
    const why = unreadableSetting('client_encoding', String(connection.client_encoding));
    if (why) throw invalidArgument(`Option \`client_encoding\` cannot be ${describe(connection.client_encoding)}: ${why}`);
  }
  // Workers run one task at a time and cancel by connection: pg's pipeline mode would break both.
  connection.pipeline = false;
  const tagConnections = options.tagConnections === undefined ? true : boolean('tagConnections', options.tagConnections);
  // Tagged, a worker connection starts as `pgbg:idle`: the reset after each task (DISCARD ALL)
  // brings its application_name back to that startup value (see store/worker-identity.ts).
  // The caller's own name for it, before the tag replaces it: the journal's owner_application.
  const application = typeof connection.application_name === 'string' ? connection.application_name : DEFAULT_APPLICATION_NAME;
  if (tagConnections) connection.application_name = IDLE_TAG;
  else connection.application_name ??= DEFAULT_APPLICATION_NAME;

  const maxWorkers = options.maxWorkers === undefined ? 16 : integer('maxWorkers', options.maxWorkers, 1, 1000);
  const livenessTimeoutMs = options.livenessTimeoutMs === undefined ? 30_000 : livenessTimeout(options.livenessTimeoutMs);
  // A dead network must not hang a connect forever; keepalive lets the OS notice dead peers
  // (and keeps NAT entries alive). The caller's own values win.
  const controlTimeoutMs = livenessTimeoutMs || 30_000;
  connection.connectionTimeoutMillis ??= controlTimeoutMs;
  connection.keepAlive ??= true;
  const maxIdle = options.maxIdle === undefined ? maxWorkers : integer('maxIdle', options.maxIdle, 0, maxWorkers);
  const retentionMs =
    options.retentionMs === undefined
      ? 900_000
      : options.retentionMs === Infinity
        ? Infinity
        : integer('retentionMs', options.retentionMs, 0, Number.MAX_SAFE_INTEGER);
  return Object.freeze({
    connection: Object.freeze(connection as pg.ClientConfig),
    maxWorkers,
    defaultQueueSize: options.defaultQueueSize === undefined ? 65536 : integer('defaultQueueSize', options.defaultQueueSize, MIN_QUEUE_SIZE, MAX_QUEUE_SIZE),
    workerTimeoutMs: options.workerTimeoutMs === undefined ? 0 : integer('workerTimeoutMs', options.workerTimeoutMs, 0, MAX_TIMER_MS),
    whenFull: options.whenFull === undefined ? 'error' : oneOf('whenFull', options.whenFull, ['error', 'queue'] as const),
    retentionMs,
    maxRetained:
      options.maxRetained === undefined || options.maxRetained === Infinity
        ? Infinity
        : integer('maxRetained', options.maxRetained, 0, Number.MAX_SAFE_INTEGER),
    settings: options.settings === undefined ? Object.freeze({}) : settings('settings', options.settings),
    role: options.role === undefined ? null : nonEmptyString('role', options.role, 63),
    rowMode: options.rowMode === undefined ? 'object' : oneOf('rowMode', options.rowMode, ['object', 'array'] as const),
    types: options.types === undefined ? undefined : typeParsers('types', options.types),
    maxIdle,
    minIdle: options.minIdle === undefined ? 0 : integer('minIdle', options.minIdle, 0, maxIdle),
    idleTimeoutMs: options.idleTimeoutMs === undefined ? 10_000 : integer('idleTimeoutMs', options.idleTimeoutMs, 0, MAX_TIMER_MS),
    cancelGraceMs: options.cancelGraceMs === undefined ? 5000 : integer('cancelGraceMs', options.cancelGraceMs, 0, MAX_GRACE_MS),
    livenessTimeoutMs,
    controlTimeoutMs,
    onCallerExit: options.onCallerExit === undefined ? 'finish' : oneOf('onCallerExit', options.onCallerExit, ['finish', 'rollback'] as const),
    loginUser: loginUser(connection as pg.ClientConfig),
    cluster: clusterCap(options.clusterMaxWorkers, options.clusterKey),
    journal: journalOption(options.journal, options.journalRetentionMs, application),
    tagConnections,
  });
}

/**
 * livenessTimeoutMs is also the deadline of every connect and control request: below
 * MIN_LIVENESS_TIMEOUT_MS they would fail for taking the time a connect takes.
 */
function livenessTimeout(value: unknown): number {
  if (value === 0) return 0;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < MIN_LIVENESS_TIMEOUT_MS || value > MAX_TIMER_MS) {
    throw invalidArgument(
      `Expected \`livenessTimeoutMs\` to be 0 (no checks) or an integer from ${MIN_LIVENESS_TIMEOUT_MS} to ${MAX_TIMER_MS}, got ${describe(value)}`,
    );
  }
  return value;
}

/** clusterMaxWorkers and clusterKey; off (null) unless clusterMaxWorkers is given. */
function clusterCap(max: unknown, key: unknown): InstanceOptions['cluster'] {
  if (max === undefined) {
    if (key === undefined) return null;
    throw invalidArgument(`Option \`clusterKey\` (${describe(key)}) needs \`clusterMaxWorkers\`: it names a cluster-wide cap, off without it`);
  }
  return Object.freeze({
    max: integer('clusterMaxWorkers', max, 1, MAX_CLUSTER_WORKERS),
    key: key === undefined ? DEFAULT_CLUSTER_KEY : nonEmptyString('clusterKey', key, MAX_CLUSTER_KEY_BYTES),
  });
}

export const DEFAULT_JOURNAL_RETENTION_MS = 14 * 24 * 3_600_000;

/** journal and journalRetentionMs; off (null) unless journal is true. */
function journalOption(journal: unknown, retentionMs: unknown, application: string): InstanceOptions['journal'] {
  if (journal !== undefined && typeof journal !== 'boolean') throw invalidArgument(`Expected \`journal\` to be a boolean, got ${describe(journal)}`);
  if (!journal) {
    if (retentionMs === undefined) return null;
    throw invalidArgument(`Option \`journalRetentionMs\` (${describe(retentionMs)}) needs \`journal: true\`: it is the journal's retention`);
  }
  return Object.freeze({
    retentionMs: retentionMs === undefined ? DEFAULT_JOURNAL_RETENTION_MS : integer('journalRetentionMs', retentionMs, 0, Number.MAX_SAFE_INTEGER),
    application,
  });
}

function loginUser({ user }: pg.ClientConfig): string {
  return user || process.env.PGUSER || '';
}

/** Everything a launch needs, checked before any connection is touched. */

const launchKeys = ['queueSize', 'label', 'signal', 'settings', 'role', 'rowMode', 'types', 'timeoutMs', 'fresh', 'retry', 'cursor'] as const;

/** Rows per fetch in cursor mode. */
export const MAX_BATCH_ROWS = 1_000_000;

/** `parent`: the job's root, for a subtask (ctx.launch, ctx.submit). */
export function launchPlan(sql: unknown, input: unknown, instance: InstanceOptions, submitted: boolean, parent: Worker | null = null): LaunchPlan {
  if (input === undefined) {
    // No options (fire and forget's usual launch): every option is the instance's, kept once on
    // a prototype, and the launch holds only its own facts; a pending worker is that much smaller.
    const launch = Object.create(instanceDefaults(instance)) as { -readonly [K in keyof LaunchPlan]: LaunchPlan[K] };
    launch.plan = planTask(sql as TaskSql);
    launch.submitted = submitted;
    launch.parent = parent;
    return launch;
  }
  const options = methodOptions(input, launchKeys) as LaunchOptions & Record<string, unknown>;
  const plan = planTask(sql as TaskSql);
  const label = options.label === undefined ? null : labelOption(options.label);
  const own = options.settings !== undefined || options.role !== undefined;
  const role = options.role === undefined ? instance.role : nonEmptyString('role', options.role, 63);
  const taskSettings = options.settings === undefined ? instance.settings : { ...instance.settings, ...settings('settings', options.settings) };
  // A launch without settings or a role of its own shares the instance's, built once.
  const session = own ? sessionSetup(taskSettings, role) : instanceSession(instance);
  return {
    plan,
    submitted,
    queueSize: options.queueSize === undefined ? instance.defaultQueueSize : integer('queueSize', options.queueSize, MIN_QUEUE_SIZE, MAX_QUEUE_SIZE),
    label,
    signal: options.signal === undefined ? null : abortSignal('signal', options.signal),
    session: session.query,
    settings: session.pairs,
    role,
    rowMode: options.rowMode === undefined ? instance.rowMode : oneOf('rowMode', options.rowMode, ['object', 'array'] as const),
    types: options.types === undefined ? instance.types : typeParsers('types', options.types),
    timeoutMs: options.timeoutMs === undefined ? instance.workerTimeoutMs : integer('timeoutMs', options.timeoutMs, 0, MAX_TIMER_MS),
    fresh: options.fresh === undefined ? false : boolean('fresh', options.fresh),
    parent,
    job: false,
    retry: options.retry === undefined ? null : retryPolicy(options.retry, plan),
    cursor: options.cursor === undefined ? null : cursorOption(options.cursor, plan, submitted),
    copy: null,
  };
}

/** What a launch without options has of the instance (every field of LaunchPlan but its own three), made on first use. */
type LaunchDefaults = Omit<LaunchPlan, 'plan' | 'submitted' | 'parent'>;
const launchDefaults = new WeakMap<InstanceOptions, LaunchDefaults>();

function instanceDefaults(instance: InstanceOptions): LaunchDefaults {
  let defaults = launchDefaults.get(instance);
  if (!defaults) {
    const session = instanceSession(instance);
    defaults = Object.freeze({
      queueSize: instance.defaultQueueSize,
      label: null,
      signal: null,
      session: session.query,
      settings: session.pairs,
      role: instance.role,
      rowMode: instance.rowMode,
      types: instance.types,
      timeoutMs: instance.workerTimeoutMs,
      fresh: false,
      job: false,
      retry: null,
      cursor: null,
      copy: null,
    });
    launchDefaults.set(instance, defaults);
  }
  return defaults;
}

export const MAX_ATTEMPTS = 100;
const DEFAULT_BACKOFF_MS = 100;
const DEFAULT_RETRY_SQLSTATES = Object.freeze(['40001', '40P01']);

/** launch's `retry`: null for a single try (the default). */
function retryPolicy(input: unknown, plan: TaskPlan): RetryPolicy | null {
  const options = methodOptions(input, ['attempts', 'backoffMs', 'sqlstates'], 'retry');
  const attempts = options.attempts === undefined ? 1 : integer('retry.attempts', options.attempts, 1, MAX_ATTEMPTS);
  const backoffMs = options.backoffMs === undefined ? DEFAULT_BACKOFF_MS : integer('retry.backoffMs', options.backoffMs, 0, MAX_BACKOFF_MS);
  let sqlstates: readonly string[] = DEFAULT_RETRY_SQLSTATES;
  if (options.sqlstates !== undefined) {
    const list = options.sqlstates;
    if (!Array.isArray(list) || list.length === 0) {
      throw invalidArgument(`Expected \`retry.sqlstates\` to be a non-empty array of five-character SQLSTATEs, got ${describe(list)}`);
    }
    sqlstates = Array.from(list as unknown[], (code, i) => {
      if (typeof code !== 'string' || !/^[0-9A-Z]{5}$/.test(code)) {
        throw invalidArgument(`Expected \`retry.sqlstates[${i}]\` to be a five-character SQLSTATE such as '40001', got ${describe(code)}`);
      }
      return code;
    });
  }
  if (attempts === 1) return null;
  if (commitsOnItsOwn(plan)) {
    throw invalidArgument(
      `Option \`retry.attempts\` cannot be ${attempts} for this SQL: a single statement such as CALL, DO, VACUUM or one run CONCURRENTLY can commit part of its work before it fails, so a retry could run it twice`,
    );
  }
  return Object.freeze({ attempts, backoffMs, sqlstates: new Set(sqlstates) });
}

/** The root of bg.job(body, { label, signal }): no SQL, no connection, no rows. */
export function jobPlan(body: unknown, input: unknown): LaunchPlan {
  if (typeof body !== 'function') throw invalidArgument(`Expected the job's \`body\` to be a function (ctx) => ..., got ${describe(body)}`);
  const options = input === undefined ? {} : methodOptions(input, ['label', 'signal']);
  return Object.freeze({
    plan: Object.freeze({ text: '', values: null, pieces: null, statementCount: 0, refusal: null, inBlock: false }),
    submitted: true,
    queueSize: 0,
    label: options.label === undefined ? null : labelOption(options.label),
    signal: options.signal === undefined ? null : abortSignal('signal', options.signal),
    session: null,
    settings: [],
    role: null,
    rowMode: 'object',
    types: undefined,
    timeoutMs: 0,
    fresh: false,
    parent: null,
    job: true,
    retry: null,
    cursor: null,
    copy: null,
  });
}

const copyToKeys = ['queueSize', 'label', 'signal', 'settings', 'role', 'timeoutMs', 'fresh'] as const;
const copyFromKeys = ['label', 'signal', 'settings', 'role', 'timeoutMs', 'fresh'] as const;

/**
 * bg.copyTo(sql, options) and bg.copyFrom(sql, source, options): one COPY ... TO STDOUT or COPY
 * ... FROM STDIN (no parameters), with the launch options that apply to it.
 */
export function copyPlan(sql: unknown, direction: 'to' | 'from', source: unknown, input: unknown, instance: InstanceOptions): LaunchPlan {
  const method = direction === 'to' ? 'copyTo' : 'copyFrom';
  const options = input === undefined ? {} : methodOptions(input, direction === 'to' ? copyToKeys : copyFromKeys);
  if (typeof sql !== 'string') throw invalidArgument(`Expected \`sql\` of ${method}() to be a string (COPY takes no parameters), got ${describe(sql)}`);
  const plan = launchPlan(sql, options, instance, false); // options given: a launch with fields of its own, which the spread below copies
  const expected = direction === 'to' ? 'COPY ... TO STDOUT' : 'COPY ... FROM STDIN';
  if (copyDirection(sql) !== direction) throw invalidArgument(`Expected \`sql\` of ${method}() to be one ${expected} statement`);
  if (direction === 'to') return { ...plan, copy: Object.freeze({ direction }) };
  if (!(source instanceof Readable)) throw invalidArgument(`Expected \`source\` of copyFrom() to be a Node Readable, got ${describe(source)}`);
  return { ...plan, copy: Object.freeze({ direction, source }) };
}

/** The `cursor` launch option: a single statement whose rows someone reads. */
function cursorOption(input: unknown, plan: TaskPlan, submitted: boolean): LaunchPlan['cursor'] {
  const cursor = readable('cursor', plainObject('cursor', input), ['batchRows']);
  knownKeys('cursor', cursor, ['batchRows']);
  if (cursor.batchRows === undefined) throw invalidArgument('Expected `cursor.batchRows` to be given (rows per fetch, 1..1000000)');
  const batchRows = integer('cursor.batchRows', cursor.batchRows, 1, MAX_BATCH_ROWS);
  if (submitted) throw invalidArgument('Expected no `cursor` with submit(): a cursor fetches rows only as they are read, and submit() reads none');
  if (plan.statementCount > 1) {
    throw invalidArgument(
      `Expected \`sql\` with \`cursor\` to be a single statement, got ${plan.statementCount} statements: a cursor reads one statement's rows`,
    );
  }
  return Object.freeze({ batchRows });
}

/** `SELECT set_config(...)` for the settings and the role (last: settings need the login's rights). */
type Session = { readonly query: LaunchPlan['session']; readonly pairs: LaunchPlan['settings'] };

/** `SELECT set_config(...)` for the settings and the role (last: settings need the login's rights), and the settings as pairs. */
function sessionSetup(settings: Readonly<Record<string, string>>, role: string | null): Session {
  const pairs = Object.freeze(Object.entries(settings));
  const values = pairs.flat();
  if (role !== null) values.push('role', role);
  if (values.length === 0) return { query: null, pairs };
  const calls = Array.from({ length: values.length / 2 }, (_, i) => `set_config($${2 * i + 1}, $${2 * i + 2}, false)`);
  return { query: Object.freeze({ text: `SELECT ${calls.join(', ')}`, values }), pairs };
}

const instanceSessions = new WeakMap<InstanceOptions, Session>();

/** The instance's own settings and role as a launch's session, made on first use. */
function instanceSession(instance: InstanceOptions): Session {
  let session = instanceSessions.get(instance);
  if (!session) instanceSessions.set(instance, (session = sessionSetup(instance.settings, instance.role)));
  return session;
}

/** The options of wait(h, options). */
export function waitOptions(input: unknown): { timeoutMs: number | undefined; signal: AbortSignal | null } {
  if (input === undefined) return { timeoutMs: undefined, signal: null };
  const options = methodOptions(input, ['timeoutMs', 'signal']);
  return {
    timeoutMs: options.timeoutMs === undefined ? undefined : integer('timeoutMs', options.timeoutMs, 0, MAX_TIMER_MS),
    signal: options.signal === undefined ? null : abortSignal('signal', options.signal),
  };
}

/** The graceMs of cancel(h, options) and cancelAll(options). */
export function graceMs(input: unknown, instance: InstanceOptions): number {
  if (input === undefined) return instance.cancelGraceMs;
  const options = methodOptions(input, ['graceMs']);
  return options.graceMs === undefined ? instance.cancelGraceMs : integer('graceMs', options.graceMs, 0, MAX_GRACE_MS);
}

/** The options of close(options). */
export function closeOptions(input: unknown): { cancel: boolean; timeoutMs: number | undefined } {
  if (input === undefined) return { cancel: false, timeoutMs: undefined };
  const options = methodOptions(input, ['cancel', 'timeoutMs']);
  return {
    cancel: options.cancel === undefined ? false : boolean('cancel', options.cancel),
    timeoutMs: options.timeoutMs === undefined ? undefined : integer('timeoutMs', options.timeoutMs, 0, MAX_TIMER_MS),
  };
}

/** The schema of install(options). */
export function installSchema(input: unknown): string {
  return installOptions(input).schema;
}

/** install()'s options: the schema, and whether the journal is asked for. */
export function installOptions(input: unknown): { schema: string; journal: boolean } {
  if (input === undefined) return { schema: 'public', journal: false };
  const options = methodOptions(input, ['schema', 'journal']);
  const { journal } = options;
  if (journal !== undefined && typeof journal !== 'boolean') throw invalidArgument(`Expected \`journal\` to be a boolean, got ${describe(journal)}`);
  return { schema: options.schema === undefined ? 'public' : nonEmptyString('schema', options.schema, 63), journal: journal === true };
}

function methodOptions(input: unknown, known: readonly string[], name = 'options'): Record<string, unknown> {
  const options = readable(name, plainObject(name, input), known);
  knownKeys(name, options, known);
  return options;
}

function labelOption(value: unknown): string {
  if (typeof value !== 'string') throw invalidArgument(`Expected \`label\` to be a string, got ${describe(value)}`);
  checkUtf8('label', value, MAX_LABEL_BYTES);
  return value;
}

function settings(name: string, value: unknown): Readonly<Record<string, string>> {
  const input = readable(name, plainObject(name, value), []);
  const entries = Object.entries(input).map(([key, setting]): [string, string] => {
    if (!/^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)*$/.test(key) || key === '__proto__') {
      throw invalidArgument(`Expected the keys of \`${name}\` to be setting names, got ${describe(key)}`);
    }
    const instead = settingsElsewhere[key.toLowerCase()];
    if (instead) throw invalidArgument(`Setting \`${key}\` cannot go in \`${name}\`: ${instead}`);
    const text = settingValue(`${name}.${key}`, setting);
    const unreadable = unreadableSetting(key, text);
    if (unreadable) throw invalidArgument(`Setting \`${name}.${key}\` cannot be ${describe(text)}: ${unreadable}`);
    return [key, text];
  });
  return Object.freeze(Object.fromEntries(entries));
}

// Settings are applied to the session before the task's own transaction starts: these would
// apply to nothing (transaction_*) or bypass what the library tracks (role).
const settingsElsewhere: Record<string, string> = {
  transaction_isolation: 'it applies to one transaction only; use `default_transaction_isolation`',
  transaction_read_only: 'it applies to one transaction only; use `default_transaction_read_only`',
  transaction_deferrable: 'it applies to one transaction only; use `default_transaction_deferrable`',
  role: 'use the `role` option',
  session_authorization: 'use the `role` option',
};

function settingValue(name: string, value: unknown): string {
  if (typeof value === 'string') {
    checkUtf8(name, value, Infinity);
    return value;
  }
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  if (typeof value === 'boolean') return value ? 'on' : 'off';
  throw invalidArgument(`Expected \`${name}\` to be a string, finite number or boolean, got ${describe(value as SettingValue)}`);
}

function typeParsers(name: string, value: unknown): TypeParsers {
  let getTypeParser: unknown;
  try {
    getTypeParser = value !== null && typeof value === 'object' ? (value as TypeParsers).getTypeParser : undefined;
  } catch (error) {
    throw unreadable(`${name}.getTypeParser`, error);
  }
  if (typeof getTypeParser !== 'function') {
    throw invalidArgument(`Expected \`${name}\` to be an object with a getTypeParser(oid, format) function, got ${describe(value)}`);
  }
  return value as TypeParsers;
}
