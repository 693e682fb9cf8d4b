// Every error this library throws is a PgBackgroundError with a stable `code`; a worker's own
// failure is its subclass WorkerError, which adds the server's fields.

export type PgBackgroundErrorCode =
  /** A bad argument or option; nothing was started and nothing changed. */
  | 'PGBG_INVALID_ARGUMENT'
  /** No tracked worker has the handle's pid (never launched here, detached, or pruned). */
  | 'PGBG_UNKNOWN_WORKER'
  /** A tracked worker has the handle's pid but another cookie: the handle is stale. */
  | 'PGBG_COOKIE_MISMATCH'
  /** `result(h)` was already called for this worker. */
  | 'PGBG_ALREADY_CONSUMED'
  /** The worker was started with `submit()`: its rows are discarded. */
  | 'PGBG_RESULTS_DISABLED'
  /** `maxWorkers` workers are active and `whenFull` is `'error'`. */
  | 'PGBG_MAX_WORKERS'
  /** The launch was cancelled (its AbortSignal, cancel(), close()) before the worker started. */
  | 'PGBG_ABORTED'
  /** cancel() threw away unread rows of a worker that then committed anyway. */
  | 'PGBG_RESULT_DISCARDED'
  /** The worker was detached while its result was being read. */
  | 'PGBG_DETACHED'
  /** The instance is closed (or closing). */
  | 'PGBG_CLOSED'
  /** A worker connection (or install()'s connection) could not be opened. */
  | 'PGBG_CONNECTION_FAILED'
  /** `install()` found a `pg_background_progress` function or a `pg_background_migrations` table it does not own. */
  | 'PGBG_INSTALL_CONFLICT'
  /** `install()` failed on the server (e.g. no CREATE privilege on the schema), or got no answer in time. */
  | 'PGBG_INSTALL_FAILED'
  /** The caller's `types` parsers threw (or gave no function) for a row of the result: see `cause`. */
  | 'PGBG_TYPE_PARSER_FAILED'
  /** The worker's SQL failed: see `sqlstate` and the other server fields. */
  | 'PGBG_WORKER_FAILED'
  /** The worker was cancelled (cancel, timeout, abort signal or close). */
  | 'PGBG_WORKER_CANCELED'
  /**
   * cancel() could not stop the worker: no cancel request, pg_cancel_backend nor terminate
   * reached its backend in time. Its connection was dropped; its outcome is unknown.
   */
  | 'PGBG_CANCEL_FAILED'
  /**
   * A connection pooler stands between us and the server in a mode that cannot hold a task's
   * transaction on one backend (PgBouncer's statement mode): use session or transaction mode, or
   * the direct endpoint.
   */
  | 'PGBG_POOLER_UNSUPPORTED'
  /** The journal (or the view, or the functions) is missing where needed: run `install({ journal: true })`. */
  | 'PGBG_NOT_INSTALLED'
  /**
   * A warning, never thrown: the journal could not be written (it is retried). Emitted once as
   * the instance's 'warning' event (process.emitWarning when nobody listens).
   */
  | 'PGBG_JOURNAL_WRITE_FAILED';

export interface PgBackgroundErrorDetails {
  pid?: number | undefined;
  cookie?: bigint | undefined;
  label?: string | null | undefined;
  sqlstate?: string | undefined;
  cause?: unknown;
}

export class PgBackgroundError extends Error {
  override name = 'PgBackgroundError';
  readonly code: PgBackgroundErrorCode;
  /** Backend pid of the worker involved, when there is one. */
  readonly pid: number | undefined;
  readonly cookie: bigint | undefined;
  readonly label: string | null | undefined;
  /** SQLSTATE, when PostgreSQL raised the underlying error. */
  readonly sqlstate: string | undefined;

  constructor(code: PgBackgroundErrorCode, message: string, details: PgBackgroundErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.code = code;
    this.pid = details.pid;
    this.cookie = details.cookie;
    this.label = details.label;
    this.sqlstate = details.sqlstate;
  }

  /** JSON loggers can serialise it (a bigint cookie would make JSON.stringify throw). */
  toJSON(): Record<string, unknown> {
    const json: Record<string, unknown> = { name: this.name, code: this.code, message: this.message };
    for (const [key, value] of Object.entries(this)) json[key] = typeof value === 'bigint' ? value.toString() : value;
    return json;
  }
}

/** The server's description of a worker's failure (`errorInfo(h)`, `WorkerError`). */
export interface WorkerErrorInfo {
  sqlstate: string;
  message: string;
  detail: string | null;
  hint: string | null;
  /** The server's CONTEXT field (where the error happened: function, line, statement). */
  context: string | null;
  severity: string | null;
  /** 1-based character position in the worker's SQL, when the server reported one. */
  position: number | null;
  schema: string | null;
  table: string | null;
  column: string | null;
  dataType: string | null;
  constraint: string | null;
}

/** A worker's failure or cancellation, thrown from `result(h)`. */
export class WorkerError extends PgBackgroundError {
  override name = 'WorkerError';
  declare readonly sqlstate: string;
  declare readonly pid: number;
  declare readonly cookie: bigint;
  declare readonly label: string | null;
  readonly detail: string | null;
  readonly hint: string | null;
  readonly context: string | null;
  readonly info: WorkerErrorInfo;

  constructor(info: WorkerErrorInfo, worker: { pid: number; cookie: bigint; label: string | null }, canceled: boolean) {
    super(canceled ? 'PGBG_WORKER_CANCELED' : 'PGBG_WORKER_FAILED', info.message, {
      pid: worker.pid,
      cookie: worker.cookie,
      label: worker.label,
      sqlstate: info.sqlstate,
    });
    this.detail = info.detail;
    this.hint = info.hint;
    this.context = info.context;
    this.info = info;
  }
}

export function invalidArgument(message: string): PgBackgroundError {
  return new PgBackgroundError('PGBG_INVALID_ARGUMENT', message);
}
