// WorkerMonitor: the operator's view for Node code that did not launch the workers (dashboards,
// job layers, the CLI). It holds no worker of its own: it reads the view pg_background_workers
// and calls pg_background_{cancel,pause,resume}_worker, the same objects psql uses, over a small
// pg.Pool of its own that close() ends. Every answer therefore comes from the server, for every
// process's workers alike; the owning process does the work of a cancel or a pause, so states
// stay exact. Inputs are checked before any I/O; a database without the view or the functions is
// PGBG_NOT_INSTALLED, a control call the server refuses is PGBG_PERMISSION_DENIED.
import pg from 'pg';
import { WORKERS_VIEW, monitorCancelSql, monitorInfoSql, monitorListSql, monitorPauseSql, monitorResumeSql } from '../catalog.js';
import { PgBackgroundError, invalidArgument } from '../errors.js';
import { describe, integer, nonEmptyString, plainObject } from '../util/validate.js';
import { TERMINAL_STATES, type WorkerState } from '../core/states.js';

/** Connection options as pg.Pool takes them (PG* variables fill in what is missing), and where install() put the view. */
export interface WorkerMonitorOptions extends Omit<pg.PoolConfig, 'types'> {
  /** The schema install() created the view and the functions in. Default 'public'. */
  schema?: string;
}

/** A worker of any process, as the view pg_background_workers shows it (its columns, camelCase). */
export interface MonitoredWorker {
  cookie: bigint;
  /** Backend pid of its connection; 0 for a job's root (it has none) and while pending. */
  pid: number;
  label: string | null;
  scope: 'root' | 'subtask';
  /** The root's cookie, for a subtask. */
  parent: bigint | null;
  state: WorkerState;
  phase: string | null;
  /** 0..1, or null when nothing says how far it is. */
  fractionCompleted: number | null;
  sqlPreview: string | null;
  /** The role its SQL started as (the view's user_name). */
  user: string | null;
  /** The process that launched it (host, pid, application), as the view names it. */
  owner: string | null;
  attempts: number;
  launchedAt: Date;
  startedAt: Date | null;
  updatedAt: Date | null;
  finishedAt: Date | null;
  /** Time since launch; frozen when it finished. */
  elapsedMs: number | null;
  waitEvent: string | null;
  blockedBy: number[];
  sqlstate: string | null;
  errorMessage: string | null;
  commandTag: string | null;
  rowCount: number | null;
}

export interface MonitorListOptions {
  /**
   * Leave out workers that finished more than this many ms ago (running and pending ones are
   * always shown), 0..; default: every worker the view retains.
   */
  finishedWithinMs?: number;
}

export interface MonitorCancelOptions {
  /** How long the cancel request may take before the backend is terminated, 0..3600000 ms. Default 5000. */
  graceMs?: number;
}

/** Names a worker: its cookie, or anything with one (a WorkerHandle, a WorkerInfo, a MonitoredWorker). */
export type MonitorRef = bigint | { readonly cookie: bigint };

const MAX_GRACE_MS = 3_600_000;
const DEFAULT_GRACE_MS = 5000;
/**
 * How long past the grace a cancelled worker may still look active: the owner's ack wait (1 s),
 * pg_terminate_backend's own wait (5 s), the journal's batch (1 s), with room to spare.
 */
const STOP_MARGIN_MS = 10_000;
/** A live owner's journal batch lands within a second of a change: how long an inferred end may wait for it. */
const JOURNAL_SETTLE_MS = 1500;
const INT8_MIN = -(2n ** 63n);
const INT8_MAX = 2n ** 63n - 1n;
const DEFAULT_APPLICATION_NAME = 'pg-background-monitor';
/** undefined_function, undefined_table, invalid_schema_name: the view, a function or the schema is not there. */
const NOT_INSTALLED_SQLSTATES = new Set(['42883', '42P01', '3F000']);

interface Row {
  cookie: string;
  pid: number;
  label: string | null;
  scope: 'root' | 'subtask';
  parent: string | null;
  state: WorkerState;
  phase: string | null;
  fraction_completed: number | null;
  sql_preview: string | null;
  user_name: string | null;
  owner: string | null;
  attempts: number | null;
  launched_at: Date;
  started_at: Date | null;
  updated_at: Date | null;
  finished_at: Date | null;
  elapsed_ms: string | null;
  wait_event: string | null;
  blocked_by: number[] | null;
  sqlstate: string | null;
  error_message: string | null;
  command_tag: string | null;
  row_count: string | null;
}

export class WorkerMonitor {
  readonly #pool: pg.Pool;
  readonly #schema: string;
  #closed: Promise<void> | null = null;

  constructor(options: WorkerMonitorOptions = {}) {
    const { schema, ...connection } = plainObject('options', options) as WorkerMonitorOptions & Record<string, unknown>;
    // The monitor parses its own rows: a caller's parsers would change what a cookie or a date is.
    if (connection.types !== undefined) throw invalidArgument(`Option \`types\` is not supported by WorkerMonitor, got ${describe(connection.types)}`);
    this.#schema = pg.escapeIdentifier(schema === undefined ? 'public' : nonEmptyString('schema', schema, 63));
    this.#pool = new pg.Pool({
      max: 2,
      idleTimeoutMillis: 10_000,
      allowExitOnIdle: true,
      ...connection,
      // pg reads PGAPPNAME itself when nothing is given; ours otherwise, so operators see who asks.
      application_name: connection.application_name ?? process.env.PGAPPNAME ?? DEFAULT_APPLICATION_NAME,
    });
    // An idle connection the server drops must not crash the process: the next call reconnects.
    this.#pool.on('error', () => {});
  }

  /** Every worker the view shows, newest first (by launched_at). */
  async list(options: MonitorListOptions = {}): Promise<MonitoredWorker[]> {
    const { finishedWithinMs } = plainObject('options', options) as MonitorListOptions;
    const within = finishedWithinMs === undefined ? null : integer('finishedWithinMs', finishedWithinMs, 0, Number.MAX_SAFE_INTEGER);
    const rows = await this.#query<Row>(monitorListSql(this.#schema), [within === null ? null : String(within)]);
    return rows.map(toWorker);
  }

  /** The view's row of one worker, or null when it shows none (unknown, pruned, or finished without the journal). */
  async info(ref: MonitorRef): Promise<MonitoredWorker | null> {
    const [row] = await this.#query<Row>(monitorInfoSql(this.#schema), [cookieOf(ref).toString()]);
    return row ? toWorker(row) : null;
  }

  /**
   * Cancels a worker of any process and resolves once it has stopped, as PgBackground's cancel()
   * does: true when the server took the cancel (the worker was active), false when nothing matched
   * (an unknown cookie, or one already finished). The owner (or, when it is gone, the server)
   * escalates to terminating the backend after `graceMs`; a worker the view still shows active
   * well after that (graceMs + 10 s) is PGBG_CANCEL_FAILED: it was asked, its outcome is unknown.
   */
  async cancel(ref: MonitorRef, options: MonitorCancelOptions = {}): Promise<boolean> {
    const cookie = cookieOf(ref);
    const { graceMs } = plainObject('options', options) as MonitorCancelOptions;
    const grace = graceMs === undefined ? DEFAULT_GRACE_MS : integer('graceMs', graceMs, 0, MAX_GRACE_MS);
    if (!(await this.#control(monitorCancelSql(this.#schema), [cookie.toString(), grace]))) return false;
    const deadline = Date.now() + grace + STOP_MARGIN_MS;
    let inferredSince: number | null = null;
    for (let delay = 10; ; delay = Math.min(delay * 2, 100)) {
      const worker = await this.info(cookie);
      if (worker === null) return true;
      if ((TERMINAL_STATES as readonly string[]).includes(worker.state)) {
        // A row with an end recorded is final. One without (finished_at null) is the view's own
        // inference from a backend that is gone: final when its owner is dead, yet only until the
        // owner's next journal batch when it is alive, which records how it really ended.
        if (worker.finishedAt !== null) return true;
        inferredSince ??= Date.now();
        if (Date.now() - inferredSince > JOURNAL_SETTLE_MS) return true;
      }
      if (Date.now() > deadline) {
        throw new PgBackgroundError(
          'PGBG_CANCEL_FAILED',
          `Worker ${cookie} was asked to cancel, yet is still ${worker.state} ${grace + STOP_MARGIN_MS} ms later: its outcome is unknown`,
          { cookie, pid: worker.pid, label: worker.label },
        );
      }
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }

  /**
   * Holds a pending worker (or job) until resumed: true when the request reached its owner (it
   * was pending), false when nothing matched (unknown, running, finished, or its owner gone).
   */
  async pause(ref: MonitorRef): Promise<boolean> {
    return this.#control(monitorPauseSql(this.#schema), [cookieOf(ref).toString()]);
  }

  /** Releases a paused worker (or job): true when the request reached its owner, false when nothing matched. */
  async resume(ref: MonitorRef): Promise<boolean> {
    return this.#control(monitorResumeSql(this.#schema), [cookieOf(ref).toString()]);
  }

  /** Ends the monitor's connections; later calls reject with PGBG_CLOSED. */
  close(): Promise<void> {
    this.#closed ??= this.#pool.end();
    return this.#closed;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async #control(text: string, values: unknown[]): Promise<boolean> {
    const [row] = await this.#query<{ changed: boolean | null }>(text, values);
    return row?.changed === true;
  }

  async #query<R extends pg.QueryResultRow>(text: string, values: unknown[]): Promise<R[]> {
    if (this.#closed) throw new PgBackgroundError('PGBG_CLOSED', 'This WorkerMonitor is closed');
    try {
      return (await this.#pool.query<R>(text, values)).rows;
    } catch (error) {
      throw serverError(error, this.#schema);
    }
  }
}

function cookieOf(ref: unknown): bigint {
  const cookie = typeof ref === 'object' && ref !== null ? (ref as { cookie?: unknown }).cookie : ref;
  if (typeof cookie !== 'bigint') {
    throw invalidArgument(`Expected a worker's cookie (a bigint) or an object with a bigint \`cookie\`, got ${describe(ref)}`);
  }
  if (cookie < INT8_MIN || cookie > INT8_MAX) throw invalidArgument(`Expected \`cookie\` to be a 64-bit integer, got ${describe(cookie)}`);
  return cookie;
}

function toWorker(row: Row): MonitoredWorker {
  return {
    cookie: BigInt(row.cookie),
    pid: row.pid,
    label: row.label,
    scope: row.scope,
    parent: row.parent === null ? null : BigInt(row.parent),
    state: row.state,
    phase: row.phase,
    fractionCompleted: row.fraction_completed,
    sqlPreview: row.sql_preview,
    user: row.user_name,
    owner: row.owner,
    attempts: row.attempts ?? 0,
    launchedAt: row.launched_at,
    startedAt: row.started_at,
    updatedAt: row.updated_at,
    finishedAt: row.finished_at,
    elapsedMs: row.elapsed_ms === null ? null : Number(row.elapsed_ms),
    waitEvent: row.wait_event,
    blockedBy: row.blocked_by ?? [],
    sqlstate: row.sqlstate,
    errorMessage: row.error_message,
    commandTag: row.command_tag,
    rowCount: row.row_count === null ? null : Number(row.row_count),
  };
}

/** A server's or a connection's error, as a PgBackgroundError with a stable code. */
function serverError(error: unknown, schema: string): unknown {
  if (error instanceof PgBackgroundError) return error;
  const sqlstate = (error as { code?: unknown }).code;
  const message = error instanceof Error ? error.message : String(error);
  const details = { cause: error, ...(typeof sqlstate === 'string' && /^[0-9A-Z]{5}$/.test(sqlstate) ? { sqlstate } : {}) };
  if (typeof sqlstate === 'string' && NOT_INSTALLED_SQLSTATES.has(sqlstate)) {
    return new PgBackgroundError(
      'PGBG_NOT_INSTALLED',
      `pg-background is not installed in schema ${schema} of this database (${WORKERS_VIEW} or its control functions are missing: run install()): ${message}`,
      details,
    );
  }
  if (sqlstate === '42501') return new PgBackgroundError('PGBG_PERMISSION_DENIED', message, details);
  // No SQLSTATE (a socket, DNS, TLS or timeout failure), or one of the classes a connect fails with.
  if (details.sqlstate === undefined || /^(08|28|3D|53|57P)/.test(details.sqlstate)) {
    return new PgBackgroundError('PGBG_CONNECTION_FAILED', message, details);
  }
  return error;
}
