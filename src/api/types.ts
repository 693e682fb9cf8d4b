// The public shapes: options, handles, worker information, statistics and events.
// Nearly a leaf: it imports nothing of ours but types, from the errors, the state vocabulary
// (src/core) and the pg seam (a result column), so every folder ranked above those may use it.
import type pg from 'pg';
import type { WireField } from '../pg/index.js';
import type { CancelReason as CoreCancelReason, WorkerState as CoreWorkerState } from '../core/states.js';

import type { WorkerErrorInfo } from '../errors.js';

export type { WorkerErrorInfo };

export type RowMode = 'object' | 'array';

/** node-postgres' per-client type-parser hook (`types` option). */
export interface TypeParsers {
  getTypeParser(oid: number, format?: 'text' | 'binary'): (value: string) => unknown;
}

/** Column metadata of the result, as the server described it (a RowDescription's field). */
export type ResultField = WireField;

/** A value for a server setting, sent as text. */
export type SettingValue = string | number | boolean;

export interface PgBackgroundOptions extends Omit<pg.ClientConfig, 'types'> {
  /** Concurrent active workers (pending, running or cancelling), 1..1000. Default 16. */
  maxWorkers?: number;
  /** Default byte budget of a worker's row queue, 4096..268435456. Default 65536. */
  defaultQueueSize?: number;
  /** Cancel a worker still running after this many ms; 0 = never. Default 0. */
  workerTimeoutMs?: number;
  /** What launch does when `maxWorkers` are active: throw PGBG_MAX_WORKERS, or wait for a slot. */
  whenFull?: 'error' | 'queue';
  /**
   * Active workers of every process using the same `clusterKey` on this database, 1..10000
   * (session advisory locks; see the README). Off by default. `whenFull` applies to it too.
   */
  clusterMaxWorkers?: number;
  /** Names the cluster-wide cap that `clusterMaxWorkers` sets. Default 'pg-background'. */
  clusterKey?: string;
  /**
   * Tag connections for `pg_stat_activity` (default true): a worker connection's
   * `application_name` is `pgbg:<cookie as 16 hex digits>:<label>` while it runs a task
   * (see `workerTag`), `pgbg:idle` between tasks, the control connection's `pgbg:control`. The
   * tag rides in the messages the task sends anyway (no extra round trip). `false`: connections
   * keep the `application_name` of the options (default 'pg-background'), and nothing is sent.
   */
  tagConnections?: boolean;
  /** How long a finished worker stays in `list()` (and its unread rows in memory). Default 900000. */
  retentionMs?: number;
  /** At most this many finished workers stay in `list()` (the oldest are forgotten first, as retention would); 0..; default Infinity. */
  maxRetained?: number;
  /** Server settings applied to every worker's task (`set_config`), e.g. `{ work_mem: '256MB' }`. */
  settings?: Readonly<Record<string, SettingValue>>;
  /** Role every worker's SQL runs as (`SET ROLE`); the login role must be a member of it. */
  role?: string;
  /** Rows as objects keyed by column name (default) or as arrays in column order. */
  rowMode?: RowMode;
  /** Type parsers for result columns (node-postgres' `types` hook); pg's globals are never changed. */
  types?: TypeParsers;
  /** Reset connections kept warm for the next launch, 0..maxWorkers. Default maxWorkers. */
  maxIdle?: number;
  /** Warm connections kept however long they idle, 0..maxIdle. Default 0. */
  minIdle?: number;
  /** Close a warm connection idle for this many ms; 0 = never. Default 10000. */
  idleTimeoutMs?: number;
  /** Grace period of `cancel()` before the worker's backend is terminated, ms. Default 5000. */
  cancelGraceMs?: number;
  /**
   * How long a worker's connection may stay silent before the server is asked whether the
   * worker is still alive, and how long any such check or control request may take; a worker
   * whose server cannot be reached ends in error (08006). 0 disables the checks (deadlines are
   * then 30 s); otherwise 100..2147483647 (it is also every connect's deadline). Default 30000.
   */
  livenessTimeoutMs?: number;
  /**
   * What happens to running workers if this process dies: 'finish' lets them run on and commit
   * (pg_background's behaviour); 'rollback' has the server abort them within about a second
   * (client_connection_check_interval, PostgreSQL 14+). Default 'finish'.
   */
  onCallerExit?: 'finish' | 'rollback';
}

export interface LaunchOptions {
  /** Byte budget of this worker's row queue, 4096..268435456. Default: `defaultQueueSize`. */
  queueSize?: number;
  /** A name for operators, at most 64 bytes of UTF-8. */
  label?: string;
  /** Aborting it cancels the worker (or its wait for a slot). */
  signal?: AbortSignal;
  /** Server settings for this task, merged over the instance's `settings`. */
  settings?: Readonly<Record<string, SettingValue>>;
  /** Role this task's SQL runs as; overrides the instance's `role`. */
  role?: string;
  rowMode?: RowMode;
  types?: TypeParsers;
  /** Cancel this worker after this many ms; 0 = never. Default: `workerTimeoutMs`. */
  timeoutMs?: number;
  /** Run on a brand-new connection instead of a warm one. */
  fresh?: boolean;
}

export interface WorkerHandle {
  readonly pid: number;
  readonly cookie: bigint;
  readonly label?: string;
}

/** What names a worker in calls: a WorkerHandle, or a WorkerInfo from list(). */
export interface WorkerRef {
  readonly pid: number;
  readonly cookie: bigint;
}

/** A worker's state: one of core/states.ts's WORKER_STATES. */
export type WorkerState = CoreWorkerState;

/** Why a worker was cancelled: one of core/states.ts's CANCEL_REASONS. */
export type CancelReason = CoreCancelReason;

export interface WorkerProgress {
  pct: number;
  message: string;
}

export interface WorkerInfo {
  /** Backend pid of the worker's connection; 0 while pending. */
  pid: number;
  cookie: bigint;
  label: string | null;
  launchedAt: Date;
  /** When its connection was attached and its SQL could go out (null while pending). */
  startedAt: Date | null;
  finishedAt: Date | null;
  /** Time since launch; frozen when the worker finishes. */
  elapsedMs: number;
  /** Role the worker's SQL ran as. */
  /**
   * The role the worker's SQL started as: the `role` option, else the login role. SQL can
   * switch roles itself (SET ROLE, RESET ROLE, SECURITY DEFINER functions); `user` does not
   * follow that, as the library cannot see it.
   */
  user: string;
  queueSize: number;
  /** Bytes of unread rows in the worker's queue now (DataRow wire bytes). */
  queuedBytes: number;
  state: WorkerState;
  /** The first 120 characters (code points) of the SQL. */
  sqlPreview: string;
  /** The error message when state is 'error'. */
  lastError: string | null;
  /** result(h) was read to the end (or its reading stopped early and the rest was dropped). */
  consumed: boolean;
  progress: WorkerProgress | null;
  /**
   * What it is doing: the message of progress its SQL reported (pg_background_progress), else
   * the phase of the server's pg_stat_progress_* view its backend is in ('building index:
   * scanning table', 'scanning heap', 'COPY FROM', ...), else 'waiting for the reader' while a
   * full queue blocks it; null otherwise. Kept once it finished: how far it got.
   */
  phase: string | null;
  /** 0..1: the reported progress (pct / 100), else the server's counters for the phase; else null. */
  fractionCompleted: number | null;
  /**
   * `wait_event_type:wait_event` of its backend, such as 'Lock:relation', 'IO:DataFileRead' or
   * 'Client:ClientWrite' (blocked sending rows nobody reads); null when not waiting or finished.
   */
  waitEvent: string | null;
  /** pg_blocking_pids() of its backend: who holds the lock it waits for ([] when none, or finished). */
  blockedBy: number[];
  /** Started with submit(): rows are discarded. */
  submitted: boolean;
  /**
   * What asked for a cancel (null if nothing did). The state says how it ended: 'canceled', or
   * 'stopped' if it committed before the cancel reached it, or 'error' if the connection was lost.
   */
  canceledBy: CancelReason | null;
}

export interface WorkerStats {
  workersLaunched: number;
  workersCompleted: number;
  workersFailed: number;
  workersCanceled: number;
  /** Workers a timeout (workerTimeoutMs, timeoutMs, run's timeoutMs) cancelled before they finished. */
  workersTimedOut: number;
  workersActive: number;
  /** Mean execution time of finished workers, ms: from their connection's attach (a wait for a slot is not counted) to their end (0 before any finished). */
  avgExecutionMs: number;
  maxWorkers: number;
}

export interface ResultInfo {
  /** Rows the last statement returned or affected (so far, while running). */
  rowCount: number;
  /** The last statement's command, e.g. 'SELECT', 'INSERT', 'CREATE TABLE'; null until it completes. */
  commandTag: string | null;
  /** The worker has finished (stopped, error or canceled). */
  completed: boolean;
  /** It finished with an error or was cancelled. */
  hasError: boolean;
  /** When its connection was attached and its SQL could go out (null while pending). */
  startedAt: Date | null;
  /** When it finished (null while active). */
  finishedAt: Date | null;
}

export interface WaitOptions {
  /** Give up after this many ms and return false; 0 checks once. */
  timeoutMs?: number;
  /** Aborting it rejects the wait with the signal's reason; the worker is not affected. */
  signal?: AbortSignal;
}

export interface CancelOptions {
  /** How long a cancel request may take before the backend is terminated, 0..3600000 ms. */
  graceMs?: number;
}

export interface CloseOptions {
  /** Cancel running workers, and abort launches not started yet, instead of waiting for them. */
  cancel?: boolean;
  /** Wait at most this long for running workers and accepted launches, then cancel them. */
  timeoutMs?: number;
}

export interface InstallOptions {
  /** Schema to create pg_background_progress in. Default 'public'. */
  schema?: string;
}

/** A notice (NOTICE, WARNING, INFO, ...) raised by a worker's SQL. */
export interface WorkerNotice {
  handle: WorkerHandle;
  label: string | null;
  severity: string;
  sqlstate: string;
  message: string;
  detail: string | null;
  hint: string | null;
  context: string | null;
}

export interface WorkerProgressEvent {
  handle: WorkerHandle;
  label: string | null;
  progress: WorkerProgress;
}

export interface WorkerFinishedEvent {
  handle: WorkerHandle;
  label: string | null;
  state: 'stopped' | 'canceled' | 'error';
  elapsedMs: number;
  /** The worker's error (as errorInfo(h) gives it), null when it stopped without one. */
  error: WorkerErrorInfo | null;
}

export interface PgBackgroundEvents {
  notice: [notice: WorkerNotice];
  progress: [event: WorkerProgressEvent];
  finished: [event: WorkerFinishedEvent];
}

/** A worker's SQL: a string of one or more statements, or one statement with parameters. */
export type WorkerSql = string | { readonly text: string; readonly values?: readonly unknown[] };

/** A result row in the default rowMode 'object'. */
export type Row = Record<string, unknown>;

/** One snapshot of a worker (state, result info, error, timing), consuming nothing. */
export interface WorkerOutcome {
  pid: number;
  cookie: bigint;
  label: string | null;
  state: WorkerState;
  /** result(h) was read to the end (or its reading stopped early and the rest was dropped). */
  consumed: boolean;
  /** The worker has finished (stopped, error or canceled). */
  completed: boolean;
  /** It finished with an error or was cancelled. */
  hasError: boolean;
  rowCount: number;
  commandTag: string | null;
  sqlstate: string | null;
  errorMessage: string | null;
  launchedAt: Date;
  /** Time since launch; frozen when the worker finishes. */
  elapsedMs: number;
  /** Cancelled because a timeout passed (a worker that committed before that cancel landed did not time out). */
  timedOut: boolean;
}

/** The options of run(): launch's, with `timeoutMs` the deadline after which the worker is cancelled. */
export type RunOptions = LaunchOptions;

/**
 * What run() resolves with: the outcome, and the rows of the last statement, or null when not
 * every row could be read (the worker failed, was cancelled or timed out).
 */
export type RunOutcome<R = Row> = WorkerOutcome & { rows: R[] | null };

/** The options of drain() and waitAny(). */
export interface WaitManyOptions {
  /** One budget for the whole call, ms; 0 checks once. Without it, waits as long as it takes. */
  timeoutMs?: number;
  /** Aborting it rejects the wait with the signal's reason; the workers are not affected. */
  signal?: AbortSignal;
}
