// PgBackground: pg_background's API for Node.js. Each worker runs its SQL on a dedicated
// PostgreSQL connection, in its own transaction; this class tracks workers by handle, hands
// out connections and slots, and turns what the connection reports into worker states.
import { EventEmitter } from 'node:events';
import { inspect } from 'node:util';
import pg from 'pg';
import { PgBackgroundError, type WorkerErrorInfo } from '../errors.js';
import { closeOptions, graceMs, installSchema, instanceOptions, jobPlan, launchPlan, waitOptions, type InstanceOptions } from './options.js';
import { eventRelay } from './event-relay.js';
import { installProgressFunction } from './progress-function.js';
import type { CancelOptions, CloseOptions, InstallOptions, LaunchOptions, PgBackgroundEvents, PgBackgroundOptions, ResultInfo, Row } from './types.js';
import type { RunOptions, RunOutcome, WaitManyOptions, WaitOptions, WorkerHandle, WorkerInfo, WorkerOutcome, WorkerRef } from './types.js';
import type { JobBody, JobOptions, WorkerProgress, WorkerSql, WorkerStats } from './types.js';
import { cancelWorkersByLabel, claimResult, drainWorkers, runWorker, waitAnyWorker, type HelperHost } from './worker-helpers.js';
import type { WorkerResult } from '../results/worker-result.js';
import { createRuntime, shutdown, type Runtime } from '../run/runtime.js';
import { outcomeOf } from '../store/outcome.js';
import type { Worker } from '../store/worker.js';
import { startJob, type JobHost } from '../jobs/job-runner.js';
import { pauseWorker, resumeWorker } from '../jobs/pausing.js';

export class PgBackground extends EventEmitter<PgBackgroundEvents> {
  readonly #options: InstanceOptions;
  readonly #runtime: Runtime;
  #closing: Promise<void> | null = null;
  /** What the pg_background 2.0 helpers (worker-helpers.ts) may use of this instance. */
  readonly #helpers: HelperHost = {
    launch: (sql, options) => this.launch(sql, options),
    result: (handle) => this.result(handle),
    lookup: (handle) => this.#store.lookup(handle),
    tracked: () => this.#store.list(),
    stop: (worker, reason, grace) => this.#runtime.stopper.stop(worker, reason, grace),
    stopAll: (workers, reason, grace) => this.#runtime.stopper.stopAll(workers, reason, grace),
    detach: (worker) => this.#detach(worker),
  };

  /** What the job runner (jobs/job-runner.ts) may use of this instance. */
  readonly #jobs: JobHost;

  constructor(options?: PgBackgroundOptions) {
    super();
    this.#options = instanceOptions(options);
    const events = eventRelay(this);
    this.#runtime = createRuntime(this.#options, events);
    const { store, stopper } = this.#runtime;
    this.#jobs = {
      options: this.#options,
      store,
      stopper,
      events,
      launch: (sql, launchOptions, submitted, root) => this.#launch(sql, launchOptions, submitted, root),
    };
  }

  get #store() {
    return this.#runtime.store;
  }

  /** Starts a worker running `sql`; resolves with its handle once the SQL is on its way. */
  launch(sql: WorkerSql, options?: LaunchOptions): Promise<WorkerHandle> {
    return this.#launch(sql, options, false);
  }

  /** Like launch, but the worker's rows are discarded as they arrive: it never blocks. */
  submit(sql: WorkerSql, options?: LaunchOptions): Promise<WorkerHandle> {
    return this.#launch(sql, options, true);
  }

  /**
   * Starts a job: a root (pid 0, found by its cookie) whose body launches subtasks with
   * ctx.launch / ctx.submit; resolves with the root's handle at once. The root is running
   * while the body runs or any subtask is active, then stopped, error (a failed subtask is
   * named in lastError) or canceled. wait, cancel, detach, pause, resume, info, outcome and
   * errorInfo take the root's handle; cancel and detach act on the whole tree.
   */
  async job(body: JobBody, options?: JobOptions): Promise<WorkerHandle> {
    this.#assertOpen();
    const launch = jobPlan(body, options);
    if (launch.signal?.aborted) {
      throw new PgBackgroundError('PGBG_ABORTED', 'The job was aborted before it started', { cause: launch.signal.reason });
    }
    return startJob(this.#jobs, body, launch);
  }

  /**
   * Holds a pending worker that waits for a slot (it keeps its place in the queue), or a job's
   * root (its unstarted subtasks, and those launched while paused). True if it changed
   * something; false if it is running, terminal, or already paused.
   */
  async pause(handle: WorkerRef): Promise<boolean> {
    this.#assertOpen();
    return pauseWorker(this.#store.lookup(handle), this.#runtime.slots);
  }

  /** Lets a paused worker (or job) go on; true if it was paused. */
  async resume(handle: WorkerRef): Promise<boolean> {
    this.#assertOpen();
    return resumeWorker(this.#store.lookup(handle), this.#runtime.slots);
  }

  /** Pauses every tracked worker and job that can be paused; resolves with how many changed. */
  async pauseAll(): Promise<number> {
    this.#assertOpen();
    let count = 0;
    for (const worker of this.#store.list().reverse()) if (pauseWorker(worker, this.#runtime.slots)) count++;
    return count;
  }

  /** Resumes every paused tracked worker and job; resolves with how many changed. */
  async resumeAll(): Promise<number> {
    this.#assertOpen();
    let count = 0;
    for (const worker of this.#store.list().reverse()) if (resumeWorker(worker, this.#runtime.slots)) count++;
    return count;
  }

  /** The worker's rows (the last statement's), as an async iterable that can be read once. */
  result<R = Record<string, unknown>>(handle: WorkerRef): WorkerResult<R> {
    this.#assertOpen();
    return claimResult<R>(this.#store.lookup(handle));
  }

  async resultInfo(handle: WorkerRef): Promise<ResultInfo> {
    this.#assertOpen();
    return this.#store.lookup(handle).resultInfo();
  }

  async errorInfo(handle: WorkerRef): Promise<WorkerErrorInfo | null> {
    this.#assertOpen();
    const { error } = this.#store.lookup(handle);
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
    const worker = this.#store.lookup(handle);
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
    await this.#runtime.stopper.stop(this.#store.lookup(handle), 'cancel', grace);
  }

  /** Stops tracking the worker; it keeps running and commits. */
  async detach(handle: WorkerRef): Promise<void> {
    this.#assertOpen();
    this.#detach(this.#store.lookup(handle));
  }

  /** Detaches every tracked worker; resolves with how many. */
  async detachAll(): Promise<number> {
    this.#assertOpen();
    const workers = this.#store.list();
    for (const worker of workers) this.#detach(worker);
    return workers.length;
  }

  /** Cancels every tracked active worker and waits for them; resolves with how many. */
  async cancelAll(options?: CancelOptions): Promise<number> {
    this.#assertOpen();
    const grace = graceMs(options, this.#options);
    return this.#runtime.stopper.stopAll(
      this.#store.list().filter((worker) => worker.active),
      'cancel',
      grace,
    );
  }

  /** What list() says about one worker. */
  async info(handle: WorkerRef): Promise<WorkerInfo> {
    this.#assertOpen();
    return this.#store.lookup(handle).info(Date.now());
  }

  /** Tracked workers, newest first. */
  async list(): Promise<WorkerInfo[]> {
    this.#assertOpen();
    const now = Date.now();
    return this.#store.list().map((worker) => worker.info(now));
  }

  async stats(): Promise<WorkerStats> {
    this.#assertOpen();
    return this.#store.stats(this.#options.maxWorkers);
  }

  /** The last progress the worker's SQL reported with pg_background_progress(), or null. */
  async getProgress(handle: WorkerRef): Promise<WorkerProgress | null> {
    this.#assertOpen();
    const { progress } = this.#store.lookup(handle);
    return progress && { ...progress };
  }

  /** Creates pg_background_progress(pct, msg) in `schema` (default 'public'); idempotent. */
  async install(options?: InstallOptions): Promise<void> {
    this.#assertOpen();
    await installProgressFunction(this.#runtime.control, installSchema(options), pg.escapeIdentifier);
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
    return outcomeOf(this.#store.lookup(handle));
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
    return this.#store.purge();
  }

  /** The worker's whole SQL text (`sqlPreview` is its first 120 code points). */
  async fullSql(handle: WorkerRef): Promise<string> {
    this.#assertOpen();
    return this.#store.lookup(handle).launch.plan.text;
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
    this.#closing = shutdown(this.#runtime, cancel, timeoutMs);
    return this.#closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  [inspect.custom](): string {
    const stats = this.#store.stats(this.#options.maxWorkers);
    return `PgBackground { maxWorkers: ${stats.maxWorkers}, active: ${stats.workersActive}, launched: ${stats.workersLaunched}, connections: ${this.#runtime.pool.size}, idle: ${this.#runtime.pool.idle}, closed: ${this.#closing !== null} }`;
  }

  override toString(): string {
    return this[inspect.custom]();
  }

  // ---- launching (run/launcher.ts) -----------------------------------------------------------

  /** The launcher's promise itself: a cancel before the start marks it handled (see Worker). */
  #launch(sql: WorkerSql, options: LaunchOptions | undefined, submitted: boolean, parent: Worker | null = null): Promise<WorkerHandle> {
    try {
      this.#assertOpen();
      return this.#runtime.launcher.launch(launchPlan(sql, options, this.#options, submitted, parent));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  #detach(worker: Worker): void {
    // A held worker nobody could resume any more would never end: detached, it goes on.
    for (const held of [worker, ...(worker.children ?? [])]) resumeWorker(held, this.#runtime.slots);
    worker.apply({ kind: 'untracked', reason: 'detach' });
  }

  #assertOpen(): void {
    if (this.#closing) throw new PgBackgroundError('PGBG_CLOSED', 'This PgBackground instance is closed');
  }
}
