// The public shapes: options, handles, worker information, statistics and events.
// Nearly a leaf: it imports nothing of ours but types, from the errors, the state vocabulary
// (src/core) and the pg seam (a result column), so every folder ranked above those may use it.
import type pg from 'pg';
import type { WireField } from '../pg/index.js';
import type { CancelReason as CoreCancelReason, WorkerState as CoreWorkerState } from '../core/states.js';

import type { PgBackgroundError, WorkerErrorInfo } from '../errors.js';

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
  /**
   * Record every worker in the database's journal (`install({ journal: true })` creates it; a
   * launch rejects with PGBG_NOT_INSTALLED without it), in batches on the control connection.
   * Default false.
   */
  journal?: boolean;
  /** How long journal rows of finished workers are kept, ms (with `journal`). Default 1209600000 (14 days). */
  journalRetentionMs?: number;
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
  /** Run the task again after a transient failure that proves nothing of it committed (see RetryOptions). */
  retry?: RetryOptions;
  /**
   * Cursor mode, for a single statement: the worker reads its rows through a pg-cursor portal,
   * `batchRows` at a time, and fetches more only as `result(h)` makes room in the queue, so the
   * server does only the work whose rows were fetched. Breaking out of the result early closes
   * the portal at once and commits what the fetched rows did; `cancel()` rolls everything back.
   * Refused with `submit()`, for several statements, and behind a connection pooler.
   */
  cursor?: CursorOptions;
}

/** The options of `copyTo(sql, options)`: the launch options that apply to a COPY export. */
export type CopyToOptions = Pick<LaunchOptions, 'queueSize' | 'label' | 'signal' | 'settings' | 'role' | 'timeoutMs' | 'fresh'>;

/** The options of `copyFrom(sql, source, options)`: those of copyTo but `queueSize` (a load returns no data). */
export type CopyFromOptions = Omit<CopyToOptions, 'queueSize'>;

/** The `cursor` launch option. */
export interface CursorOptions {
  /** Rows per fetch (Execute), 1..1000000. */
  batchRows: number;
}

/**
 * Retries of transient failures. A try is run again, on the same connection (the handle stays
 * valid, the state stays `running`), only when the server answered it with an ErrorResponse
 * whose SQLSTATE is in `sqlstates` before the end of its transaction: nothing of it committed.
 * Never after a lost connection or a cancel, never behind a connection pooler, and never once
 * the reader has taken a row of the failing try: then that try's error is the worker's (its
 * `result(h)` loop throws that WorkerError), so a reader never sees rows of two tries.
 * A single statement that can commit on its own (CALL, DO, VACUUM, ... CONCURRENTLY) refuses
 * `attempts` above 1 with PGBG_INVALID_ARGUMENT.
 */
export interface RetryOptions {
  /** Total tries, 1..100. Default 1 (no retry). */
  attempts?: number;
  /** Pause before the second try, 0..3600000 ms; doubled before each later one (at most 3600000). Default 100. */
  backoffMs?: number;
  /** Five-character SQLSTATEs that are retried. Default ['40001', '40P01'] (serialization failure, deadlock). */
  sqlstates?: readonly string[];
}

/** The options of bg.job(body, options). */
export interface JobOptions {
  /** A name for operators, at most 64 bytes of UTF-8. */
  label?: string;
  /** Aborting it cancels the job (as cancel(root) does). */
  signal?: AbortSignal;
}

/**
 * What a job's body gets: launches of subtasks (ordinary workers whose `parent` is the root's
 * cookie), the root's phase and progress, and the root's cancellation.
 */
export interface JobContext {
  /** The root's handle (pid 0; found by its cookie). */
  readonly handle: WorkerHandle;
  /** Aborted when the job is cancelled (cancel(root), the job's signal, close({ cancel: true })). */
  readonly signal: AbortSignal;
  /** Launches a subtask: launch's options, all of them. Rejects with PGBG_ABORTED once the job is cancelled. */
  launch(sql: WorkerSql, options?: LaunchOptions): Promise<WorkerHandle>;
  /** Like launch, but the subtask's rows are discarded. */
  submit(sql: WorkerSql, options?: LaunchOptions): Promise<WorkerHandle>;
  /** The root's phase (WorkerInfo.phase), like PgDog's inner_status. */
  status(phase: string): void;
  /** The root's fractionCompleted (0..1) and, if given, its phase. */
  progress(fraction: number, message?: string): void;
}

/** A job's body: the root is running until it settles and every subtask is terminal. */
export type JobBody = (ctx: JobContext) => Promise<unknown> | unknown;

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
  /** 'subtask' for a job's subtask; every other worker (and a job's root) is a 'root'. */
  scope: 'root' | 'subtask';
  /** The job root's cookie, for a subtask; else null. */
  parent: bigint | null;
  /** Tries of its task made so far: 1, plus one per retry (launch's `retry`) or rerun on a new connection. */
  attempts: number;
  /** The last change of its state or progress; its finish time once terminal. */
  updatedAt: Date;
}

export interface WorkerStats {
  workersLaunched: number;
  workersCompleted: number;
  workersFailed: number;
  workersCanceled: number;
  /** Workers a timeout (workerTimeoutMs, timeoutMs, run's timeoutMs) cancelled before they finished. */
  workersTimedOut: number;
  /** Workers pending, paused, running or cancelling (job roots included). */
  workersActive: number;
  /** Tries made by workers that started: one per start, plus one per retry or rerun. */
  attempts: number;
  /** Tries run again after a retryable error (launch's `retry`). */
  retries: number;
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
  /** Schema to create pg_background_progress and the pg_background_workers view in. Default 'public'. */
  schema?: string;
  /** Also create the journal (pg_background_journal), for `new PgBackground({ journal: true })`. Default false. */
  journal?: boolean;
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
  /** WorkerInfo's phase and fractionCompleted after this report. */
  phase: string | null;
  fractionCompleted: number | null;
}

/** A worker (or job root) was accepted: it counts as launched and is listed. */
export interface WorkerLaunchedEvent {
  handle: WorkerHandle;
  label: string | null;
  scope: 'root' | 'subtask';
  parent: bigint | null;
}

/** A worker's connection is attached (a job root: its body began; pid 0). */
export interface WorkerStartedEvent {
  handle: WorkerHandle;
  label: string | null;
  pid: number;
}

/** A non-terminal state change: paused, resumed (pending, running), cancelling. Terminal ones are 'finished'. */
export interface WorkerStateEvent {
  handle: WorkerHandle;
  label: string | null;
  state: WorkerState;
  previous: WorkerState;
}

/** A try failed with a retryable error; the next one starts after `delayMs`. */
export interface WorkerRetryingEvent {
  handle: WorkerHandle;
  label: string | null;
  /** The try that failed (1 for the first). */
  attempt: number;
  delayMs: number;
  error: WorkerErrorInfo;
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
  /** Something went wrong that fails no worker (a journal write that will be retried). */
  warning: [warning: PgBackgroundError];
  notice: [notice: WorkerNotice];
  progress: [event: WorkerProgressEvent];
  finished: [event: WorkerFinishedEvent];
  launched: [event: WorkerLaunchedEvent];
  started: [event: WorkerStartedEvent];
  state: [event: WorkerStateEvent];
  retrying: [event: WorkerRetryingEvent];
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
