// PgBackground: pg_background's API for Node.js. Each worker runs its SQL on a dedicated
// PostgreSQL connection, in its own transaction; this class tracks workers by handle, hands
// out connections and slots, and turns what the connection reports into worker states.
import { EventEmitter } from 'node:events';
import { inspect } from 'node:util';
import pg from 'pg';
import { PgBackgroundError, type WorkerErrorInfo } from '../errors.js';
import { closeOptions, graceMs, installSchema, instanceOptions, launchPlan, waitOptions, type InstanceOptions } from './options.js';
import { eventRelay } from './event-relay.js';
import { installProgressFunction } from './progress-function.js';
import type {
  CancelOptions,
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
import { cancelWorkersByLabel, drainWorkers, runWorker, waitAnyWorker, type HelperHost } from './worker-helpers.js';
import { backendMonitor } from '../control/backend-monitor.js';
import { Stopper } from '../control/stopper.js';
import { ConnectionPool } from '../pool/connection-pool.js';
import { WorkerConnector } from '../pool/connector.js';
import { settlesWithin } from '../pool/deadline.js';
import { ControlConnection } from '../pool/control-connection.js';
import type { LivenessMonitor } from '../pool/liveness-monitor.js';
import type { WorkerConnection } from '../pool/worker-connection.js';
import { WorkerSlots } from '../pool/worker-slots.js';
import { WorkerResult } from '../results/worker-result.js';
import { Launcher } from '../run/launcher.js';
import { outcomeOf } from '../store/outcome.js';
import type { Worker } from '../store/worker.js';
import { WorkerRegistry } from '../store/worker-registry.js';
import type { WorkerStore } from '../store/worker-store.js';

export class PgBackground extends EventEmitter<PgBackgroundEvents> {
  readonly #options: InstanceOptions;
  readonly #registry: WorkerStore;
  readonly #pool: ConnectionPool;
  readonly #control: ControlConnection;
  readonly #liveness: LivenessMonitor;
  readonly #stopper: Stopper;
  readonly #launcher: Launcher;
  #closing: Promise<void> | null = null;
  /** What the pg_background 2.0 helpers (worker-helpers.ts) may use of this instance. */
  readonly #helpers: HelperHost = {
    launch: (sql, options) => this.launch(sql, options),
    result: (handle) => this.result(handle),
    lookup: (handle) => this.#registry.lookup(handle),
    tracked: () => this.#registry.list(),
    stop: (worker, reason, grace) => this.#stopper.stop(worker, reason, grace),
    detach: (worker) => this.#detach(worker),
  };

  constructor(options?: PgBackgroundOptions) {
    super();
    const resolved = (this.#options = instanceOptions(options));
    const { connection, maxWorkers, controlTimeoutMs } = resolved;
    const connector = new WorkerConnector(connection, controlTimeoutMs, resolved.onCallerExit);
    const { maxIdle, minIdle, idleTimeoutMs } = resolved;
    this.#registry = new WorkerRegistry(resolved.retentionMs);
    this.#pool = new ConnectionPool({ maxConnections: maxWorkers, maxIdle, minIdle, idleTimeoutMs, connect: () => connector.open() });
    this.#control = new ControlConnection({ ...connection, application_name: 'pg-background control' }, controlTimeoutMs);
    this.#liveness = backendMonitor(resolved.livenessTimeoutMs, this.#control);
    const running = new Map<Worker, WorkerConnection>();
    this.#stopper = new Stopper({ running, control: this.#control, controlTimeoutMs });
    this.#launcher = new Launcher({
      ...{ options: resolved, registry: this.#registry, slots: new WorkerSlots(maxWorkers), pool: this.#pool, control: this.#control },
      ...{ liveness: this.#liveness, stopper: this.#stopper, running },
      events: eventRelay(this),
    });
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
    worker.apply({ kind: 'claimed' });
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
    await this.#stopper.stop(this.#registry.lookup(handle), 'cancel', grace);
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
    const stops = await Promise.allSettled(active.map((worker) => this.#stopper.stop(worker, 'cancel', grace)));
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

  // ---- launching (run/launcher.ts) -----------------------------------------------------------

  /** The launcher's promise itself: a cancel before the start marks it handled (see Worker). */
  #launch(sql: WorkerSql, options: LaunchOptions | undefined, submitted: boolean): Promise<WorkerHandle> {
    try {
      this.#assertOpen();
      return this.#launcher.launch(launchPlan(sql, options, this.#options, submitted));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  // ---- stopping ----------------------------------------------------------------------------

  #detach(worker: Worker): void {
    worker.apply({ kind: 'untracked', reason: 'detach' });
  }

  async #shutdown(cancel: boolean, timeoutMs: number | undefined): Promise<void> {
    // Every accepted launch runs, those still waiting for a slot or a connection too: a caller
    // who did not await its launch (fire and forget) expects the work done.
    const active = [...this.#registry.active];
    for (const worker of active) worker.apply({ kind: 'discarded', reason: 'close' });
    for (const worker of this.#registry.list()) worker.apply({ kind: 'discarded', reason: 'close' });
    // A stop that cannot be proven leaves its worker in 'error', outcome unknown; close goes on.
    const stopAll = () => Promise.allSettled(active.map((worker) => this.#stopper.stop(worker, 'close', this.#options.cancelGraceMs)));
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
