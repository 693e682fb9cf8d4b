// PgBackground: pg_background's API for Node.js. Each worker runs its SQL on a dedicated
// PostgreSQL connection, in its own transaction; this class tracks workers by handle, hands
// out connections and slots, and turns what the connection reports into worker states.
import { EventEmitter } from 'node:events';
import { inspect } from 'node:util';
import pg from 'pg';
import type { ServerNotice } from '../pool/worker-connection.js';
import { PgBackgroundError, type WorkerErrorInfo } from './errors.js';
import { closeOptions, graceMs, installSchema, instanceOptions, launchPlan, waitOptions, type InstanceOptions } from './options.js';
import { installProgressFunction, progressFromNotice } from './progress-function.js';
import type {
  CancelOptions,
  CancelReason,
  CloseOptions,
  InstallOptions,
  LaunchOptions,
  PgBackgroundEvents,
  PgBackgroundOptions,
  ResultInfo,
  Row,
  RunOptions,
  RunOutcome,
  WaitManyOptions,
  WaitOptions,
  WorkerHandle,
  WorkerInfo,
  WorkerOutcome,
  WorkerRef,
  WorkerProgress,
  WorkerSql,
  WorkerStats,
} from './types.js';
import { Worker, type TerminalState } from './worker.js';
import { WorkerRegistry } from './worker-registry.js';
import { outcomeOf } from './outcome.js';
import { cancelWorkersByLabel, drainWorkers, runWorker, waitAnyWorker, type HelperHost } from './worker-helpers.js';
import { sendCancelRequest } from '../pool/cancel-request.js';
import { ConnectionPool } from '../pool/connection-pool.js';
import { settlesWithin } from '../pool/deadline.js';
import { ControlConnection } from '../pool/control-connection.js';
import { LivenessMonitor, type BackendState } from '../pool/liveness-monitor.js';
import { BACKEND_STARTED_SQL, WorkerConnection, type BackendIdentity } from '../pool/worker-connection.js';
import { WorkerSlots, type Slot } from '../pool/worker-slots.js';
import { confirmsCancel, CONNECTION_FAILURE, endsSession, errorInfo, WorkerFailure } from '../results/error-info.js';
import { TaskQuery, type TaskOutcome } from '../results/task-query.js';
import { WorkerResult } from '../results/worker-result.js';
import { planTask } from '../sql/task-plan.js';

/** How often the server checks for our death with onCallerExit 'rollback'. */
const CALLER_CHECK_INTERVAL_MS = 1000;

export class PgBackground extends EventEmitter<PgBackgroundEvents> {
  readonly #options: InstanceOptions;
  readonly #registry: WorkerRegistry;
  readonly #slots: WorkerSlots;
  readonly #pool: ConnectionPool;
  readonly #control: ControlConnection;
  readonly #liveness: LivenessMonitor;
  /** onCallerExit 'rollback' needs client_connection_check_interval (PostgreSQL 14+). */
  #callerCheck: 'wanted' | 'unsupported' | 'off';
  /** The connection of each worker past its start (between attach and completion). */
  readonly #running = new Map<Worker, WorkerConnection>();
  #closing: Promise<void> | null = null;
  /** What the pg_background 2.0 helpers (worker-helpers.ts) may use of this instance. */
  readonly #helpers: HelperHost = {
    launch: (sql, options) => this.launch(sql, options),
    result: (handle) => this.result(handle),
    lookup: (handle) => this.#registry.lookup(handle),
    tracked: () => this.#registry.list(),
    stop: (worker, reason, grace) => this.#stop(worker, reason, grace),
    detach: (worker) => this.#detach(worker),
  };

  constructor(options?: PgBackgroundOptions) {
    super();
    this.#options = instanceOptions(options);
    this.#callerCheck = this.#options.onCallerExit === 'rollback' ? 'wanted' : 'off';
    const { connection, maxWorkers, maxIdle, minIdle, idleTimeoutMs, retentionMs } = this.#options;
    this.#registry = new WorkerRegistry(retentionMs);
    this.#slots = new WorkerSlots(maxWorkers);
    this.#pool = new ConnectionPool({
      maxConnections: maxWorkers,
      maxIdle,
      minIdle,
      idleTimeoutMs,
      connect: () => this.#openConnection(),
    });
    this.#control = new ControlConnection({ ...connection, application_name: 'pg-background control' }, this.#options.controlTimeoutMs);
    this.#liveness = new LivenessMonitor(this.#options.livenessTimeoutMs, (backends) => this.#probe(backends));
  }

  /** Starts a worker running `sql`; resolves with its handle once the SQL is on its way. */
  launch(sql: WorkerSql, options?: LaunchOptions): Promise<WorkerHandle> {
    return this.#start(sql, options, false);
  }

  /** Like launch, but the worker's rows are discarded as they arrive: it never blocks. */
  submit(sql: WorkerSql, options?: LaunchOptions): Promise<WorkerHandle> {
    return this.#start(sql, options, true);
  }

  /** The worker's rows (the last statement's), as an async iterable that can be read once. */
  result<R = Record<string, unknown>>(handle: WorkerRef): WorkerResult<R> {
    this.#assertOpen();
    const worker = this.#registry.lookup(handle);
    const { pid, cookie, label } = worker;
    if (worker.launch.submitted) {
      throw new PgBackgroundError('PGBG_RESULTS_DISABLED', `Worker pid ${pid} was started with submit(): its rows are discarded`, { pid, cookie, label });
    }
    if (worker.resultClaimed) {
      throw new PgBackgroundError('PGBG_ALREADY_CONSUMED', `The result of worker pid ${pid} was already taken by an earlier result() call`, { pid, cookie, label });
    }
    worker.resultClaimed = true;
    return new WorkerResult<R>(worker);
  }

  async resultInfo(handle: WorkerRef): Promise<ResultInfo> {
    this.#assertOpen();
    return this.#registry.lookup(handle).resultInfo();
  }

  async errorInfo(handle: WorkerRef): Promise<WorkerErrorInfo | null> {
    this.#assertOpen();
    const { error } = this.#registry.lookup(handle);
    return error && { ...error };
  }

  /** Waits until the worker is finished (stopped, error or canceled). */
  wait(handle: WorkerRef): Promise<void>;
  /** Waits at most `timeoutMs`: true if the worker finished, false on timeout. */
  wait(handle: WorkerRef, options: WaitOptions & { timeoutMs: number }): Promise<boolean>;
  wait(handle: WorkerRef, options?: WaitOptions): Promise<void | boolean>;
  async wait(handle: WorkerRef, options?: WaitOptions): Promise<void | boolean> {
    this.#assertOpen();
    const { timeoutMs, signal } = waitOptions(options);
    const worker = this.#registry.lookup(handle);
    const finished = await worker.waitTerminal(timeoutMs ?? Infinity, signal);
    return timeoutMs === undefined ? undefined : finished;
  }

  /**
   * Cancels the worker and resolves once it has stopped: a cancel request first, then, after
   * `graceMs`, its backend is terminated. Its uncommitted work is rolled back (state
   * 'canceled'), unless it had already committed (state 'stopped').
   */
  async cancel(handle: WorkerRef, options?: CancelOptions): Promise<void> {
    this.#assertOpen();
    const grace = graceMs(options, this.#options);
    await this.#stop(this.#registry.lookup(handle), 'cancel', grace);
  }

  /** Stops tracking the worker; it keeps running and commits. */
  async detach(handle: WorkerRef): Promise<void> {
    this.#assertOpen();
    this.#detach(this.#registry.lookup(handle));
  }

  /** Detaches every tracked worker; resolves with how many. */
  async detachAll(): Promise<number> {
    this.#assertOpen();
    const workers = this.#registry.list();
    for (const worker of workers) this.#detach(worker);
    return workers.length;
  }

  /** Cancels every tracked active worker and waits for them; resolves with how many. */
  async cancelAll(options?: CancelOptions): Promise<number> {
    this.#assertOpen();
    const grace = graceMs(options, this.#options);
    const active = this.#registry.list().filter((worker) => worker.active);
    await Promise.all(active.map((worker) => this.#stop(worker, 'cancel', grace)));
    return active.length;
  }

  /** What list() says about one worker. */
  async info(handle: WorkerRef): Promise<WorkerInfo> {
    this.#assertOpen();
    return this.#registry.lookup(handle).info(Date.now());
  }

  /** Tracked workers, newest first. */
  async list(): Promise<WorkerInfo[]> {
    this.#assertOpen();
    const now = Date.now();
    return this.#registry.list().map((worker) => worker.info(now));
  }

  async stats(): Promise<WorkerStats> {
    this.#assertOpen();
    return this.#registry.stats(this.#options.maxWorkers);
  }

  /** The last progress the worker's SQL reported with pg_background_progress(), or null. */
  async getProgress(handle: WorkerRef): Promise<WorkerProgress | null> {
    this.#assertOpen();
    const { progress } = this.#registry.lookup(handle);
    return progress && { ...progress };
  }

  /** Creates pg_background_progress(pct, msg) in `schema` (default 'public'); idempotent. */
  async install(options?: InstallOptions): Promise<void> {
    this.#assertOpen();
    await installProgressFunction(this.#control, installSchema(options), pg.escapeIdentifier);
  }

  // ---- pg_background 2.0's helpers (worker-helpers.ts) ------------------------------------

  /**
   * Launches `sql`, reads its rows, waits for its end and detaches it. With `timeoutMs` the
   * worker is cancelled once that passes, and this resolves only after it has stopped
   * (`timedOut: true`). A failed, cancelled or timed-out worker is an outcome, not a rejection.
   */
  async run<R = Row>(sql: WorkerSql, options?: RunOptions): Promise<RunOutcome<R>> {
    this.#assertOpen();
    return runWorker<R>(this.#helpers, sql, options);
  }

  /** State, result info and error of a worker in one snapshot; consumes nothing. */
  async outcome(handle: WorkerRef): Promise<WorkerOutcome> {
    this.#assertOpen();
    return outcomeOf(this.#registry.lookup(handle));
  }

  /** The outcomes of `handles`, in input order, once all finished or `timeoutMs` (one budget for all) passed. */
  async drain(handles: readonly WorkerRef[], options?: WaitManyOptions): Promise<WorkerOutcome[]> {
    this.#assertOpen();
    return drainWorkers(this.#helpers, handles, options);
  }

  /** The first of `handles` to finish (the caller's own object), or null if `timeoutMs` passes first. */
  async waitAny<H extends WorkerRef>(handles: readonly H[], options?: WaitManyOptions): Promise<H | null> {
    this.#assertOpen();
    return waitAnyWorker(this.#helpers, handles, options);
  }

  /** Cancels the tracked active workers whose label matches the SQL LIKE `pattern`; resolves with how many, once they stopped. */
  async cancelByLabel(pattern: string, options?: CancelOptions): Promise<number> {
    this.#assertOpen();
    return cancelWorkersByLabel(this.#helpers, pattern, graceMs(options, this.#options));
  }

  /** Stops tracking every finished worker (running ones stay); resolves with how many. */
  async purge(): Promise<number> {
    this.#assertOpen();
    return this.#registry.purge();
  }

  /** The worker's whole SQL text (`sqlPreview` is its first 120 code points). */
  async fullSql(handle: WorkerRef): Promise<string> {
    this.#assertOpen();
    return this.#registry.lookup(handle).launch.plan.text;
  }

  /**
   * Waits for running workers (detached ones too) to finish and commit, discarding rows nobody
   * will read, then closes every connection. `{ cancel: true }` cancels them instead;
   * `{ timeoutMs }` waits that long before cancelling. Later calls reject with PGBG_CLOSED.
   */
  close(options?: CloseOptions): Promise<void> {
    if (this.#closing) return this.#closing;
    const { cancel, timeoutMs } = closeOptions(options);
    this.#closing = this.#shutdown(cancel, timeoutMs);
    return this.#closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  [inspect.custom](): string {
    const stats = this.#registry.stats(this.#options.maxWorkers);
    return `PgBackground { maxWorkers: ${stats.maxWorkers}, active: ${stats.workersActive}, launched: ${stats.workersLaunched}, connections: ${this.#pool.size}, closed: ${this.#closing !== null} }`;
  }

  override toString(): string {
    return this[inspect.custom]();
  }

  // ---- launching ---------------------------------------------------------------------------

  async #start(sql: WorkerSql, options: LaunchOptions | undefined, submitted: boolean): Promise<WorkerHandle> {
    this.#assertOpen();
    const launch = launchPlan(sql, options, this.#options, submitted);
    if (launch.signal?.aborted) {
      throw new PgBackgroundError('PGBG_ABORTED', 'The launch was aborted before it started', { cause: launch.signal.reason });
    }
    // Count active workers ourselves: p-limit frees a slot a microtask after the worker ended.
    if (this.#options.whenFull === 'error' && this.#registry.active.size >= this.#options.maxWorkers) {
      const max = this.#options.maxWorkers;
      throw new PgBackgroundError('PGBG_MAX_WORKERS', `Too many active workers: the limit is ${max} (maxWorkers); wait for one to finish, or use whenFull: 'queue'`);
    }
    const worker = new Worker(launch, this.#options.loginUser);
    this.#registry.add(worker);
    const signal = launch.signal;
    if (signal) {
      const onAbort = () => void this.#stop(worker, 'signal', this.#options.cancelGraceMs);
      signal.addEventListener('abort', onAbort, { once: true });
      void worker.whenTerminal.then(() => signal.removeEventListener('abort', onAbort));
    }

    let slot: Slot | undefined;
    let connection: WorkerConnection | undefined;
    try {
      slot = await this.#slots.acquire(worker);
      connection = (launch.fresh ? null : this.#pool.take()) ?? (await cancellable(this.#pool.acquire(launch.fresh), worker, (late) => this.#pool.release(late, true)));
    } catch (error) {
      slot?.release();
      const cancelled = worker.startCancelled !== null;
      const info = errorInfo(cancelled ? new WorkerFailure('57014', `worker was cancelled (${worker.canceledBy}) before it started`) : error);
      this.#finish(worker, cancelled ? 'canceled' : 'error', info, null, 0);
      if (cancelled) {
        throw new PgBackgroundError('PGBG_ABORTED', `The launch was cancelled (${worker.canceledBy}) before the worker started`, { cookie: worker.cookie, label: worker.label, cause: signal?.aborted ? signal.reason : undefined });
      }
      throw new PgBackgroundError('PGBG_CONNECTION_FAILED', `Could not open a worker connection: ${info.message}`, {
        cookie: worker.cookie,
        label: worker.label,
        sqlstate: info.sqlstate === CONNECTION_FAILURE ? undefined : info.sqlstate,
      });
    }
    await this.#run(worker, connection, slot);
    return worker.handle;
  }

  /**
   * Runs the worker's task on `connection`; resolves once its SQL is on its way (after the
   * settings round trip, if settings or a role were asked for). Completion is handled later.
   */
  async #run(worker: Worker, connection: WorkerConnection, slot: Slot): Promise<void> {
    const { launch } = worker;
    this.#registry.started(worker, connection.pid, connection.user);
    this.#running.set(worker, connection);
    connection.onNotice = (notice) => this.#notice(worker, notice);
    const timer = launch.timeoutMs > 0 ? setTimeout(() => void this.#stop(worker, 'timeout', this.#options.cancelGraceMs), launch.timeoutMs) : null;
    const end = (outcome: TaskOutcome) => {
      if (timer) clearTimeout(timer);
      this.#liveness.unwatch(connection);
      this.#complete(worker, connection, slot, outcome);
    };

    if (launch.session) {
      // One round trip, only when asked for: the reset undoes it before the next task.
      try {
        await connection.query(launch.session.text, launch.session.values);
      } catch (error) {
        return end(failed(error));
      }
    }
    if (worker.cancelRequested) return end(failed(new WorkerFailure('57014', 'canceling statement due to user request')));
    let plan = launch.plan;
    if (!connection.standardConformingStrings) {
      try {
        plan = planTask(launch.sql, false);
      } catch (error) {
        return end(failed(error));
      }
    }
    if (plan.refusal !== null) return end(failed(new WorkerFailure('0A000', plan.refusal)));

    // The reset for the next task rides in the same write as this one (no extra round trip,
    // nothing on the caller's path); a connection that will not be kept needs none.
    const query = new TaskQuery(plan, worker.queue, worker, this.#options.maxIdle > 0 ? connection : null);
    worker.sent(query);
    this.#liveness.watch(connection, worker.queue);
    connection.run(query);
    void query.done.then(end);
  }

  #complete(worker: Worker, connection: WorkerConnection, slot: Slot, outcome: TaskOutcome): void {
    this.#running.delete(worker);
    connection.onNotice = null;
    const { error } = outcome;
    // Without an ErrorResponse the connection broke: say why, if we broke it ourselves.
    const info = error && errorInfo(error instanceof pg.DatabaseError || error instanceof WorkerFailure ? error : (connection.failure ?? error));
    // Canceled means the stop is proven (nothing committed); a lost connection proves nothing.
    const state: TerminalState = !error ? 'stopped' : worker.cancelRequested && confirmsCancel(error) ? 'canceled' : 'error';
    // A connection that saw a cancel request is never reused: the request could still land
    // on its next task. One whose session ended (FATAL, terminate, lost socket) cannot be.
    const reusable = !worker.cancelRequested && connection.failure === null && !(error && endsSession(error));
    // Give back the connection and the slot first: a 'finished' listener may launch again.
    this.#pool.release(connection, reusable);
    slot.release();
    this.#finish(worker, state, info, outcome.commandTag, outcome.rowCount);
  }

  #finish(worker: Worker, state: TerminalState, info: WorkerErrorInfo | null, commandTag: string | null, rowCount: number): void {
    if (!worker.finish(state, info, commandTag, rowCount)) return;
    this.#registry.finished(worker);
    if (this.listenerCount('finished') > 0) {
      this.#emitSafely('finished', { handle: worker.handle, label: worker.label, state, elapsedMs: worker.finishedAt! - worker.launchedAt });
    }
  }

  /**
   * Emits from inside our own bookkeeping: a listener that throws must not leave it half done,
   * so its error is rethrown on its own, like any other uncaught error of the caller's code.
   */
  #emitSafely<K extends keyof PgBackgroundEvents>(event: K, ...args: PgBackgroundEvents[K]): void {
    try {
      (this.emit as (event: K, ...args: PgBackgroundEvents[K]) => boolean)(event, ...args);
    } catch (error) {
      process.nextTick(() => {
        throw error;
      });
    }
  }

  #notice(worker: Worker, notice: ServerNotice): void {
    const progress = progressFromNotice(notice);
    if (progress) {
      worker.progress = progress;
      if (this.listenerCount('progress') > 0) this.#emitSafely('progress', { handle: worker.handle, label: worker.label, progress: { ...progress } });
      return;
    }
    if (this.listenerCount('notice') === 0) return;
    this.#emitSafely('notice', {
      handle: worker.handle,
      label: worker.label,
      severity: notice.severity ?? 'NOTICE',
      sqlstate: notice.code ?? '00000',
      message: notice.message ?? '',
      detail: notice.detail ?? null,
      hint: notice.hint ?? null,
      context: notice.where ?? null,
    });
  }

  // ---- stopping ----------------------------------------------------------------------------

  #detach(worker: Worker): void {
    this.#registry.untrack(worker);
    worker.discard('detach');
  }

  /** Cancels a worker (once; later calls join the first) and resolves when it is terminal. */
  #stop(worker: Worker, reason: CancelReason, graceMs: number): Promise<void> {
    if (!worker.active) return Promise.resolve();
    worker.requestCancel(reason);
    worker.stopping ??= this.#halt(worker, graceMs);
    return worker.stopping;
  }

  async #halt(worker: Worker, graceMs: number): Promise<void> {
    if (worker.state === 'pending') {
      // requestCancel aborted its wait for a slot or a connection.
      await worker.whenTerminal;
      return;
    }
    const connection = this.#running.get(worker);
    if (!connection) return;
    const deadline = Date.now() + graceMs;
    if (graceMs > 0) {
      await this.#requestCancel(connection, graceMs);
      if (await worker.waitTerminal(Math.max(0, deadline - Date.now()))) return;
    }
    await this.#terminate(worker, connection);
  }

  async #requestCancel(connection: WorkerConnection, timeoutMs: number): Promise<void> {
    const target = connection.cancelTarget;
    try {
      if (!target) throw new Error('no cancel key');
      await sendCancelRequest(target, Math.min(timeoutMs, this.#options.controlTimeoutMs));
    } catch {
      // The protocol cancel could not be delivered (a pooler, a proxy): ask the server directly.
      const deadline = Math.min(timeoutMs, this.#options.controlTimeoutMs);
      await this.#control.query(`SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE pid = $1 AND ${BACKEND_STARTED_SQL} = $2`, [connection.pid, connection.started], deadline).catch(() => {});
    }
  }

  /** Terminates the worker's backend (only that backend: pid and start time must match). */
  async #terminate(worker: Worker, connection: WorkerConnection): Promise<void> {
    if (!worker.active) return;
    try {
      await this.#control.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = $1 AND ${BACKEND_STARTED_SQL} = $2`, [connection.pid, connection.started]);
    } catch {
      connection.destroy(new Error('the server could not be reached to terminate the worker; the connection was dropped and the outcome is unknown'));
    }
    if (!(await worker.waitTerminal(this.#options.controlTimeoutMs))) {
      connection.destroy(new Error('the worker was terminated but its connection did not close; it was dropped and the outcome is unknown'));
      await worker.whenTerminal;
    }
  }

  /** What the server says about backends (for the liveness monitor). */
  async #probe(backends: readonly BackendIdentity[]): Promise<BackendState[]> {
    const { rows } = await this.#control.query<{ pid: number; started: string; state: string | null; wait_event: string | null }>(
      `SELECT pid, ${BACKEND_STARTED_SQL} AS started, state, wait_event FROM pg_stat_activity WHERE pid = ANY($1::int[])`,
      [backends.map((b) => b.pid)],
    );
    return rows.map((row) => ({ pid: row.pid, started: row.started, state: row.state, waitEvent: row.wait_event }));
  }

  /** A new worker connection; with onCallerExit 'rollback', one the server watches for our death. */
  async #openConnection(): Promise<WorkerConnection> {
    const config = this.#options.connection;
    const timeoutMs = this.#options.controlTimeoutMs;
    if (this.#callerCheck !== 'wanted') return WorkerConnection.open(config, timeoutMs);
    try {
      const connection = await WorkerConnection.open(withStartupSetting(config, 'client_connection_check_interval', CALLER_CHECK_INTERVAL_MS), timeoutMs);
      if (connection.callerCheckMs !== CALLER_CHECK_INTERVAL_MS && this.#callerCheck === 'wanted') {
        this.#callerCheck = 'unsupported';
        process.emitWarning(`onCallerExit: 'rollback' did not take effect (client_connection_check_interval is ${connection.callerCheckMs ?? 'missing'} on worker connections; a pooler or the server may drop startup options): workers of a process that dies finish and commit`, {
          code: 'PGBG_CALLER_CHECK_UNSUPPORTED',
        });
      }
      return connection;
    } catch (error) {
      if (!(error instanceof pg.DatabaseError && error.code === '42704' && /client_connection_check_interval/.test(error.message))) throw error;
      this.#callerCheck = 'unsupported';
      process.emitWarning(
        "onCallerExit: 'rollback' needs PostgreSQL 14 or later (client_connection_check_interval); on this server, workers of a process that dies finish and commit",
        { code: 'PGBG_CALLER_CHECK_UNSUPPORTED' },
      );
      return WorkerConnection.open(config, timeoutMs);
    }
  }

  async #shutdown(cancel: boolean, timeoutMs: number | undefined): Promise<void> {
    const active = [...this.#registry.active];
    for (const worker of active) {
      if (worker.state === 'pending') worker.requestCancel('close');
      worker.discard('close');
    }
    for (const worker of this.#registry.list()) worker.discard('close');
    if (cancel) {
      await Promise.all(active.map((worker) => this.#stop(worker, 'close', this.#options.cancelGraceMs)));
    } else {
      const all = Promise.all(active.map((worker) => worker.whenTerminal));
      if (timeoutMs !== undefined && !(await settlesWithin(all, timeoutMs))) {
        await Promise.all(active.map((worker) => this.#stop(worker, 'close', this.#options.cancelGraceMs)));
      }
      await all;
    }
    this.#registry.dispose();
    this.#liveness.close();
    await Promise.all([this.#pool.close(), this.#control.close()]);
  }

  #assertOpen(): void {
    if (this.#closing) throw new PgBackgroundError('PGBG_CLOSED', 'This PgBackground instance is closed');
  }
}

/**
 * The config with `-c name=value` added to the startup options. node-postgres lets a
 * connection string's own `options` override the config's, so they are merged there.
 */
function withStartupSetting(config: Readonly<pg.ClientConfig>, name: string, value: number): pg.ClientConfig {
  const setting = `-c ${name}=${value}`;
  if (config.connectionString) {
    try {
      const url = new URL(config.connectionString);
      const own = url.searchParams.get('options');
      if (own !== null) {
        url.searchParams.set('options', `${own} ${setting}`);
        return { ...config, connectionString: url.toString() };
      }
    } catch {
      // A key=value connection string: its options (if any) win; the check after connect says so.
    }
  }
  return { ...config, options: [config.options, setting].filter(Boolean).join(' ') };
}

/** Resolves like `promise` unless the start is cancelled first; then its value (if any) goes to `onLate`, once. */
function cancellable<T>(promise: Promise<T>, start: Worker, onLate: (value: T) => void): Promise<T> {
  return new Promise((resolve, reject) => {
    const unsubscribe = start.onStartCancelled(reject);
    if (start.startCancelled) reject(start.startCancelled);
    promise.then(
      (value) => {
        unsubscribe();
        if (start.startCancelled) onLate(value);
        else resolve(value);
      },
      (error) => {
        unsubscribe();
        reject(error);
      },
    );
  });
}

/** A task that ended before (or instead of) reaching the server. */
function failed(error: unknown): TaskOutcome {
  return { error: error instanceof Error ? error : new Error(String(error)), commandTag: null, rowCount: 0 };
}
