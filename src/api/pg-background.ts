// PgBackground: pg_background's API for Node.js. Each worker runs its SQL on a dedicated
// PostgreSQL connection, in its own transaction; this class tracks workers by handle, hands
// out connections and slots, and turns what the connection reports into worker states.
import { EventEmitter } from 'node:events';
import { inspect } from 'node:util';
import pg from 'pg';
import type { ServerNotice } from '../pool/worker-connection.js';
import { PgBackgroundError, type WorkerErrorInfo } from '../errors.js';
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
import { Worker, type TerminalState } from '../store/worker.js';
import { WorkerRegistry } from '../store/worker-registry.js';
import { outcomeOf } from '../store/outcome.js';
import { cancelWorkersByLabel, drainWorkers, runWorker, waitAnyWorker, type HelperHost } from './worker-helpers.js';
import { sendCancelRequest } from '../pool/cancel-request.js';
import { ConnectionPool } from '../pool/connection-pool.js';
import { settlesWithin } from '../pool/deadline.js';
import { ControlConnection } from '../pool/control-connection.js';
import { LivenessMonitor, type BackendState } from '../pool/liveness-monitor.js';
import { BACKEND_STARTED_SQL, WorkerConnection, type BackendIdentity } from '../pool/worker-connection.js';
import { WorkerSlots, type Slot } from '../pool/worker-slots.js';
import { PINNED_HINT, pinSql, poolerUnsupported, refusesTransactions } from '../pool/pooler.js';
import { confirmsCancel, CONNECTION_FAILURE, endsSession, errorInfo, provesNeverRan, WorkerFailure } from '../results/error-info.js';
import { TaskQuery, type TaskOutcome } from '../results/task-query.js';
import { WorkerResult } from '../results/worker-result.js';
import { planTask, type TaskPlan } from '../plan/task-plan.js';

/** How often the server checks for our death with onCallerExit 'rollback'. */
const CALLER_CHECK_INTERVAL_MS = 1000;
/** Pause between attempts to reach a backend to cancel or terminate (unless it ends first). */
const STOP_RETRY_MS = 100;

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
    return this.#launch(sql, options, false);
  }

  /** Like launch, but the worker's rows are discarded as they arrive: it never blocks. */
  submit(sql: WorkerSql, options?: LaunchOptions): Promise<WorkerHandle> {
    return this.#launch(sql, options, true);
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
   * 'canceled'), unless it had already committed (state 'stopped'). Rejects with
   * PGBG_CANCEL_FAILED when no path reached the backend: the worker's outcome is then unknown.
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
    // Every stop runs to its end; then the first that could not be proven is the rejection.
    const stops = await Promise.allSettled(active.map((worker) => this.#stop(worker, 'cancel', grace)));
    const failure = stops.find((stop) => stop.status === 'rejected');
    if (failure) throw failure.reason;
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
   * Waits for running workers (detached ones too) and accepted launches not started yet to
   * finish and commit, discarding rows nobody will read, then closes every connection.
   * `{ cancel: true }` cancels them instead;
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
    return `PgBackground { maxWorkers: ${stats.maxWorkers}, active: ${stats.workersActive}, launched: ${stats.workersLaunched}, connections: ${this.#pool.size}, idle: ${this.#pool.idle}, closed: ${this.#closing !== null} }`;
  }

  override toString(): string {
    return this[inspect.custom]();
  }

  // ---- launching ---------------------------------------------------------------------------

  /** #start, with the accepted worker knowing its launch's promise (see #shutdown). */
  #launch(sql: WorkerSql, options: LaunchOptions | undefined, submitted: boolean): Promise<WorkerHandle> {
    let accepted: Worker | undefined;
    const launching = this.#start(sql, options, submitted, (worker) => (accepted = worker));
    if (accepted) accepted.launching = launching;
    return launching;
  }

  async #start(sql: WorkerSql, options: LaunchOptions | undefined, submitted: boolean, onAccepted: (worker: Worker) => void): Promise<WorkerHandle> {
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
    onAccepted(worker);
    const signal = launch.signal;
    if (signal) {
      // Nobody awaits this stop: if it fails, the worker's own state says outcome unknown.
      const onAbort = () => void this.#stop(worker, 'signal', this.#options.cancelGraceMs).catch(() => {});
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
      // pg's own words for its connect deadline name neither the time nor the option.
      const deadline = /timeout/i.test(info.message) ? ` (within connectionTimeoutMillis, ${this.#options.connection.connectionTimeoutMillis} ms; it defaults to livenessTimeoutMs)` : '';
      throw new PgBackgroundError('PGBG_CONNECTION_FAILED', `Could not open a worker connection: ${info.message}${deadline}`, {
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
   * `firstStart` is set when this is the task's second (and last) try: see #retry.
   */
  async #run(worker: Worker, connection: WorkerConnection, slot: Slot, firstStart: number | null = null): Promise<void> {
    const { launch } = worker;
    // From the first worker on, the control connection stays open: a server that fills up later
    // must not keep us from checking, cancelling or terminating this worker.
    this.#control.open();
    // Behind a pooler the worker's backend is known once its transaction holds one (below).
    if (!connection.pooled) this.#registry.started(worker, connection.pid, connection.user);
    this.#running.set(worker, connection);
    connection.onNotice = (notice) => this.#notice(worker, notice);
    const timeoutMs = launch.timeoutMs - (firstStart === null ? 0 : Date.now() - firstStart);
    const timer = launch.timeoutMs > 0 ? setTimeout(() => void this.#stop(worker, 'timeout', this.#options.cancelGraceMs).catch(() => {}), Math.max(0, timeoutMs)) : null;
    // What is on the wire: our settings round trip, then the task.
    let sent: 'settings' | TaskPlan | null = null;
    // Resolves when a second try is on its way (the launch waits for it while settings are sent).
    const end = (outcome: TaskOutcome): Promise<void> | void => {
      if (timer) clearTimeout(timer);
      this.#liveness.unwatch(connection);
      const { error } = outcome;
      // Nothing of the task reached a backend: its connection had died (see provesNeverRan;
      // the settings round trip is ours, so its connection dying proves it too).
      const neverRan = error !== null && sent !== null && (sent === 'settings' ? endsSession(error) : provesNeverRan(error, connection.firstAnswer, startsWithParse(sent)));
      if (neverRan && worker.cancelRequested) {
        outcome = failed(new WorkerFailure('57014', `worker was cancelled (${worker.canceledBy}) before it ran (its connection had died: ${error.message})`));
      } else if (neverRan && firstStart === null) {
        // Once: a second dead connection in a row is reported as it is.
        return this.#retry(worker, connection, slot, error, worker.startedAt ?? Date.now());
      }
      if (!connection.pinned) return this.#complete(worker, connection, slot, outcome);
      void this.#unpin(worker, connection, outcome).then((final) => this.#complete(worker, connection, slot, final));
    };

    if (connection.pooled) {
      // Behind a pooler: BEGIN, the role and settings for this transaction only, and the identity
      // of the backend that now holds it, in one round trip (see pooler.ts).
      try {
        const results = (await connection.query(pinSql(launch.settings, launch.role, BACKEND_STARTED_SQL))) as unknown as pg.QueryResult[];
        const backend = results.at(-1)!.rows[0] as { pid: number; started: string };
        connection.pin(backend);
      } catch (error) {
        end(failed(error));
        if (!refusesTransactions(error)) return;
        throw poolerUnsupported(`The connection pooler refused to keep a transaction open (${(error as Error).message}); this is PgBouncer's statement mode`, {
          cookie: worker.cookie,
          label: worker.label,
          cause: error,
        });
      }
      this.#registry.started(worker, connection.pid, connection.user);
    } else if (launch.session) {
      // One round trip, only when asked for: the reset undoes it before the next task.
      sent = 'settings';
      try {
        await connection.query(launch.session.text, launch.session.values);
      } catch (error) {
        return end(failed(error));
      }
      sent = null;
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
    // Pooled connections are never reused: no reset of ours may land on another client's session.
    const query = new TaskQuery(plan, worker.queue, worker, this.#options.maxIdle > 0 && !connection.pooled ? connection : null, connection.pinned);
    worker.sent(query);
    this.#liveness.watch(connection, worker.queue);
    sent = plan;
    connection.run(query);
    void query.done.then(end);
  }

  /**
   * The task never reached a backend (its connection was dead): it runs again, transparently, on
   * a new connection. Its handle stays valid (the registry knows the first pid too); list()
   * shows the new backend's pid.
   */
  async #retry(worker: Worker, dead: WorkerConnection, slot: Slot, cause: Error, firstStart: number): Promise<void> {
    this.#running.delete(worker);
    dead.onNotice = null;
    this.#pool.release(dead, false);
    let connection: WorkerConnection;
    try {
      connection = await cancellable(this.#pool.acquire(true), worker, (late) => this.#pool.release(late, true));
    } catch (error) {
      slot.release();
      const info = worker.startCancelled
        ? errorInfo(new WorkerFailure('57014', `worker was cancelled (${worker.canceledBy}) before it started`))
        : errorInfo(new Error(`the task never ran: its connection had died (${cause.message}) and no new one could be opened: ${errorInfo(error).message}`));
      this.#finish(worker, worker.startCancelled ? 'canceled' : 'error', info, null, 0);
      return;
    }
    await this.#run(worker, connection, slot, firstStart);
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
    const reusable = !worker.cancelRequested && connection.failure === null && !(error && endsSession(error)) && !connection.pooled;
    // Give back the connection and the slot first: a 'finished' listener may launch again.
    this.#pool.release(connection, reusable);
    slot.release();
    this.#finish(worker, state, info, outcome.commandTag, outcome.rowCount);
  }

  /**
   * Ends a pinned task's transaction (see pooler.ts): COMMIT after a task that succeeded and was
   * not cancelled; ROLLBACK after one that failed; after a cancel request the session is dropped
   * uncommitted, so the backend (a signal may be on its way to it) is never anyone else's.
   */
  async #unpin(worker: Worker, connection: WorkerConnection, outcome: TaskOutcome): Promise<TaskOutcome> {
    connection.onNotice = null;
    // Synchronously with the check below: a cancel from now on signals nothing.
    connection.unpin();
    if (connection.failure) return outcome;
    if (worker.cancelRequested) {
      connection.destroy(new Error('cancelled behind a connection pooler: the session was dropped before its transaction committed'));
      if (outcome.error) return outcome;
      return { ...outcome, error: new WorkerFailure('57014', 'canceling statement due to user request (the task had run but was never committed)') };
    }
    if (outcome.error) {
      await connection.query('ROLLBACK').catch(() => {});
      if (outcome.error instanceof pg.DatabaseError && outcome.error.code === '25001' && !outcome.error.hint) outcome.error.hint = PINNED_HINT;
      return outcome;
    }
    try {
      await connection.query('COMMIT');
      return outcome;
    } catch (error) {
      if (error instanceof pg.DatabaseError) return { ...outcome, error };
      return { ...outcome, error: new Error(`the COMMIT of the task's transaction got no answer (${(error as Error).message}); the worker's outcome is unknown`) };
    }
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
    // None between a task's two tries (#retry): requestCancel stopped the second from starting.
    if (!connection) return worker.whenTerminal;
    if (!connection.signalSafe) {
      // Behind a pooler, once its transaction is being ended: its COMMIT is on the way (an answer
      // within the connection's deadline), and the backend may already serve someone else.
      await worker.whenTerminal;
      return;
    }
    const deadline = Date.now() + graceMs;
    let terminated = false;
    if (graceMs > 0) await this.#requestCancel(worker, connection, deadline);
    if (!(await worker.waitTerminal(Math.max(0, deadline - Date.now())))) terminated = await this.#terminate(worker, connection);
    // The worker has ended; but a connection that broke without the server's answer (dropped
    // here or by the liveness check) proves no stop, unless our terminate reached the backend.
    const { error } = worker;
    if (worker.state === 'error' && error?.sqlstate === CONNECTION_FAILURE && !terminated) {
      throw new PgBackgroundError('PGBG_CANCEL_FAILED', `cancel() could not stop the worker: ${error.message}`, {
        pid: worker.pid,
        cookie: worker.cookie,
        label: worker.label,
        sqlstate: CONNECTION_FAILURE,
      });
    }
  }

  /**
   * Asks the server to cancel the worker's statement, by protocol request and else by
   * pg_cancel_backend on the control connection, again and again until one is delivered, the
   * worker ends or `deadline` passes.
   */
  async #requestCancel(worker: Worker, connection: WorkerConnection, deadline: number): Promise<void> {
    const target = connection.cancelTarget;
    const timeLeft = () => Math.min(deadline - Date.now(), this.#options.controlTimeoutMs);
    while (worker.active && timeLeft() > 0) {
      try {
        if (!target) throw new Error('no cancel key');
        return await sendCancelRequest(target, timeLeft());
      } catch {
        // Not delivered (a pooler, a proxy, a network fault): ask the server directly, only
        // while that pid is provably ours (see pooler.ts).
      }
      if (timeLeft() <= 0) return;
      if (connection.signalSafe) {
        try {
          await this.#control.query(`SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE pid = $1 AND ${BACKEND_STARTED_SQL} = $2`, [connection.pid, connection.started], timeLeft());
          return;
        } catch {
          // The control connection could not be had either: try both again shortly.
        }
      }
      await worker.waitTerminal(Math.max(0, Math.min(STOP_RETRY_MS, deadline - Date.now())));
    }
  }

  /**
   * Terminates the worker's backend (only that backend: pid and start time must match), trying
   * until the control deadline passes; then its connection is dropped, the outcome unknown.
   * True if the terminate reached the server (or the worker ended meanwhile).
   */
  async #terminate(worker: Worker, connection: WorkerConnection): Promise<boolean> {
    if (worker.active && !connection.signalSafe) {
      // Behind a pooler, its transaction already being ended (see #halt): wait for that answer.
      await worker.whenTerminal;
      return true;
    }
    const deadline = Date.now() + this.#options.controlTimeoutMs;
    let reached = false;
    while (worker.active && !reached && deadline - Date.now() > 0) {
      try {
        await this.#control.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = $1 AND ${BACKEND_STARTED_SQL} = $2`, [connection.pid, connection.started], deadline - Date.now());
        reached = true;
      } catch {
        await worker.waitTerminal(Math.max(0, Math.min(STOP_RETRY_MS, deadline - Date.now())));
      }
    }
    if (!worker.active) return reached;
    if (!reached) {
      connection.destroy(new Error('the server could not be reached to cancel or terminate the worker; the connection was dropped and the outcome is unknown'));
      await worker.whenTerminal;
      return false;
    }
    if (!(await worker.waitTerminal(this.#options.controlTimeoutMs))) {
      connection.destroy(new Error('the worker was terminated but its connection did not close; it was dropped and the outcome is unknown'));
      await worker.whenTerminal;
    }
    return true;
  }

  /** What the server says about backends (for the liveness monitor). */
  async #probe(backends: readonly BackendIdentity[]): Promise<BackendState[]> {
    const { rows } = await this.#control.query<{ pid: number; started: string; state: string | null; wait_event: string | null; state_ms: number | null }>(
      `SELECT pid, ${BACKEND_STARTED_SQL} AS started, state, wait_event,
              (extract(epoch FROM clock_timestamp() - state_change) * 1000)::float8 AS state_ms
         FROM pg_stat_activity WHERE pid = ANY($1::int[])`,
      [backends.map((b) => b.pid)],
    );
    return rows.map((row) => ({ pid: row.pid, started: row.started, state: row.state, waitEvent: row.wait_event, stateMs: row.state_ms }));
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
      const tooOld = error instanceof pg.DatabaseError && error.code === '42704' && /client_connection_check_interval/.test(error.message);
      // PgBouncer refuses the startup packet's `options` unless told to ignore them.
      const refused = error instanceof pg.DatabaseError && error.code === '08P01' && /unsupported startup parameter/i.test(error.message);
      if (!tooOld && !refused) throw error;
      if (this.#callerCheck === 'wanted') {
        this.#callerCheck = 'unsupported';
        process.emitWarning(
          tooOld
            ? "onCallerExit: 'rollback' needs PostgreSQL 14 or later (client_connection_check_interval); on this server, workers of a process that dies finish and commit"
            : `onCallerExit: 'rollback' did not take effect (${error.message}: a connection pooler refuses startup options); workers of a process that dies finish and commit`,
          { code: 'PGBG_CALLER_CHECK_UNSUPPORTED' },
        );
      }
      return WorkerConnection.open(config, timeoutMs);
    }
  }

  async #shutdown(cancel: boolean, timeoutMs: number | undefined): Promise<void> {
    // Every accepted launch runs, those still waiting for a slot or a connection too: a caller
    // who did not await its launch (fire and forget) expects the work done.
    const active = [...this.#registry.active];
    for (const worker of active) worker.discard('close');
    for (const worker of this.#registry.list()) worker.discard('close');
    // A stop that cannot be proven leaves its worker in 'error', outcome unknown; close goes on.
    const stopAll = () => Promise.allSettled(active.map((worker) => this.#stop(worker, 'close', this.#options.cancelGraceMs)));
    if (cancel) {
      await stopAll();
    } else {
      const all = Promise.all(active.map((worker) => worker.whenTerminal));
      if (timeoutMs !== undefined && !(await settlesWithin(all, timeoutMs))) await stopAll();
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

/** How TaskQuery writes `plan`: a Parse first, or one simple Query. */
function startsWithParse(plan: TaskPlan): boolean {
  // Parameters, or statements sent one Parse each (see TaskQuery.submit); else one simple Query.
  return plan.values !== null || plan.pieces !== null;
}

/** A task that ended before (or instead of) reaching the server. */
function failed(error: unknown): TaskOutcome {
  return { error: error instanceof Error ? error : new Error(String(error)), commandTag: null, rowCount: 0 };
}
