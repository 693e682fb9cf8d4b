// Options are checked once, on entry, and frozen: nothing is clamped or guessed later.
import type pg from 'pg';
import { parse as parseConnectionString } from 'pg-connection-string';
import { invalidArgument } from '../errors.js';
import type { TypeParsers } from '../results/row-parser.js';
import type { InstanceOptions } from '../store/instance-options.js';
import type { LaunchPlan } from '../store/launch-plan.js';
import { IDLE_TAG } from '../store/worker-identity.js';
import { unreadableSetting } from '../pool/readable-settings.js';
import { planTask, type TaskSql } from '../plan/task-plan.js';
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

function loginUser({ user }: pg.ClientConfig): string {
  return user || process.env.PGUSER || '';
}

/** Everything a launch needs, checked before any connection is touched. */

const launchKeys = ['queueSize', 'label', 'signal', 'settings', 'role', 'rowMode', 'types', 'timeoutMs', 'fresh'] as const;

export function launchPlan(sql: unknown, input: unknown, instance: InstanceOptions, submitted: boolean): LaunchPlan {
  const options = (input === undefined ? {} : methodOptions(input, launchKeys)) as LaunchOptions & Record<string, unknown>;
  // { text, values } read once, here: the worker may plan it again later, from this copy.
  if (sql !== null && typeof sql === 'object') sql = readable('sql', sql, ['text', 'values']);
  const values = (sql as { values?: unknown } | null)?.values;
  if (Array.isArray(values)) {
    try {
      (sql as { values: unknown[] }).values = Array.from(values);
    } catch (error) {
      throw unreadable('sql.values', error);
    }
  }
  const plan = planTask(sql as TaskSql);
  const label = options.label === undefined ? null : labelOption(options.label);
  const own = options.settings !== undefined || options.role !== undefined;
  const role = options.role === undefined ? instance.role : nonEmptyString('role', options.role, 63);
  const taskSettings = options.settings === undefined ? instance.settings : { ...instance.settings, ...settings('settings', options.settings) };
  // A launch without settings or a role of its own shares the instance's, built once.
  const session = own ? sessionSetup(taskSettings, role) : instanceSession(instance);
  return {
    sql: sql as TaskSql,
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
  };
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
  if (input === undefined) return 'public';
  const options = methodOptions(input, ['schema']);
  return options.schema === undefined ? 'public' : nonEmptyString('schema', options.schema, 63);
}

function methodOptions(input: unknown, known: readonly string[]): Record<string, unknown> {
  const options = readable('options', plainObject('options', input), known);
  knownKeys('options', options, known);
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
