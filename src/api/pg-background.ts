// PgBackground: pg_background's API for Node.js. Each worker runs its SQL on a dedicated
// PostgreSQL connection, in its own transaction; this class tracks workers by handle, hands
// out connections and slots, and turns what the connection reports into worker states.
import { EventEmitter } from 'node:events';
import { inspect } from 'node:util';
import pg from 'pg';
import { PgBackgroundError, type WorkerErrorInfo } from '../errors.js';
import {
  closeOptions,
  copyPlan,
  jobPlan,
  graceMs,
  installOptions,
  instanceOptions,
  launchPlan,
  MAX_GRACE_MS,
  waitOptions,
  type InstanceOptions,
} from './options.js';
import { eventRelay } from './event-relay.js';
import { installProgressFunction } from './progress-function.js';
import type { CancelOptions, CloseOptions, InstallOptions, LaunchOptions, PgBackgroundEvents, PgBackgroundOptions, ResultInfo, Row } from './types.js';
import type { RunOptions, RunOutcome, WaitManyOptions, WaitOptions, WorkerHandle, WorkerInfo, WorkerOutcome, WorkerRef } from './types.js';
import type { CopyFromOptions, CopyToOptions, JobBody, JobOptions, WorkerProgress, WorkerSql, WorkerStats } from './types.js';
import type { Readable } from 'node:stream';
import type { LaunchPlan } from '../store/launch-plan.js';
import { cancelWorkersByLabel, claimResult, drainWorkers, runWorker, waitAnyWorker, type HelperHost } from './worker-helpers.js';
import type { WorkerResult } from '../results/worker-result.js';
import type { ControlActions } from '../control/remote-control.js';
import { createRuntime, shutdown, type Runtime } from '../run/runtime.js';
import { outcomeOf } from '../store/outcome.js';
import type { Worker } from '../store/worker.js';
import { startJob, type JobHost } from '../jobs/job-runner.js';
import { pauseWorker, resumeWorker } from '../jobs/pausing.js';

/**
 * Background workers on one PostgreSQL database: each runs its SQL on a dedicated connection, in
 * its own transaction, while the caller goes on.
 *
 * @example
 * ```ts
 * await using bg = new PgBackground({ connectionString: process.env.DATABASE_URL, maxWorkers: 8 });
 * const h = await bg.launch('SELECT count(*) AS n FROM big_table');
 * const [{ n }] = await bg.result<{ n: string }>(h).toArray();
 * ```
 */
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

  /**
   * Checks the options (nothing connects yet: the first launch opens the first connection).
   *
   * @example
   * ```ts
   * const bg = new PgBackground({ connectionString, maxWorkers: 16, whenFull: 'queue' });
   * bg.on('finished', ({ handle, state }) => console.log(handle.pid, state));
   * ```
   */
  constructor(options?: PgBackgroundOptions) {
    super();
    this.#options = instanceOptions(options);
    const events = eventRelay(this);
    this.#runtime = createRuntime(this.#options, events, this.#controlActions());
    const { store, stopper } = this.#runtime;
    this.#jobs = {
      options: this.#options,
      store,
      stopper,
      events,
      launch: (sql, launchOptions, submitted, root) => this.#launch(sql, launchOptions, submitted, root),
    };
  }

  /**
   * What a control request from SQL (pg_background_cancel_worker and the others, heard on the
   * control connection) does to a worker this instance tracks: what cancel, pause and resume do
   * (a job's root included: cancel cascades, pause holds its unstarted subtasks).
   */
  #controlActions(): ControlActions {
    const tracked = (cookie: bigint) => this.#store.list().find((worker) => worker.cookie === cookie && worker.active);
    return {
      owns: (cookie) => !this.#closing && tracked(cookie) !== undefined,
      backendPid: (cookie) => tracked(cookie)?.pid ?? 0,
      cancel: async (cookie, grace) => {
        const worker = tracked(cookie);
        if (worker) await this.cancel(worker.handle, { graceMs: Math.min(grace, MAX_GRACE_MS) });
      },
      pause: async (cookie) => {
        const worker = tracked(cookie);
        return worker !== undefined && (await this.pause(worker.handle));
      },
      resume: async (cookie) => {
        const worker = tracked(cookie);
        return worker !== undefined && (await this.resume(worker.handle));
      },
    };
  }

  get #store() {
    return this.#runtime.store;
  }

  /**
   * Starts a worker running `sql`; resolves with its handle once the SQL is on its way.
   *
   * @example
   * ```ts
   * const h = await bg.launch('SELECT id, total FROM orders', { label: 'report/daily' });
   * // or with parameters, and in cursor mode (rows fetched only as they are read):
   * const c = await bg.launch({ text: 'SELECT * FROM events WHERE at > $1', values: [since] }, { cursor: { batchRows: 1000 } });
   * ```
   */
  launch(sql: WorkerSql, options?: LaunchOptions): Promise<WorkerHandle> {
    return this.#launch(sql, options, false);
  }

  /**
   * Like launch, but the worker's rows are discarded as they arrive: it never blocks.
   *
   * @example
   * ```ts
   * const h = await bg.submit('INSERT INTO audit SELECT * FROM staging');
   * await bg.wait(h);
   * ```
   */
  submit(sql: WorkerSql, options?: LaunchOptions): Promise<WorkerHandle> {
    return this.#launch(sql, options, true);
  }

  /**
   * Starts a job: a root (pid 0, found by its cookie) whose body launches subtasks with
   * ctx.launch / ctx.submit; resolves with the root's handle at once. The root is running
   * while the body runs or any subtask is active, then stopped, error (a failed subtask is
   * named in lastError) or canceled. wait, cancel, detach, pause, resume, info, outcome and
   * errorInfo take the root's handle; cancel and detach act on the whole tree.
   *
   * @example
   * ```ts
   * const job = await bg.job(async (ctx) => {
   *   ctx.status('copying');
   *   const parts = await Promise.all(tables.map((t) => ctx.launch(`INSERT INTO copy_${t} SELECT * FROM ${t}`, { label: t })));
   *   await Promise.all(parts.map((h) => bg.wait(h)));
   *   ctx.progress(0.9, 'finalizing');
   * }, { label: 'reshard' });
   * await bg.wait(job);
   * ```
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
   *
   * @example
   * ```ts
   * const h = await bg.launch('VACUUM big_table'); // waiting for a slot
   * if (await bg.pause(h)) console.log('held until resume');
   * ```
   */
  async pause(handle: WorkerRef): Promise<boolean> {
    this.#assertOpen();
    return pauseWorker(this.#store.lookup(handle), this.#runtime.slots);
  }

  /**
   * Lets a paused worker (or job) go on; true if it was paused.
   *
   * @example
   * ```ts
   * await bg.resume(h); // it starts when a slot is free, in its old place in the queue
   * ```
   */
  async resume(handle: WorkerRef): Promise<boolean> {
    this.#assertOpen();
    return resumeWorker(this.#store.lookup(handle), this.#runtime.slots);
  }

  /**
   * Pauses every tracked worker and job that can be paused; resolves with how many changed.
   *
   * @example
   * ```ts
   * const held = await bg.pauseAll(); // e.g. during a maintenance window
   * ```
   */
  async pauseAll(): Promise<number> {
    this.#assertOpen();
    let count = 0;
    for (const worker of this.#store.list().reverse()) if (pauseWorker(worker, this.#runtime.slots)) count++;
    return count;
  }

  /**
   * Resumes every paused tracked worker and job; resolves with how many changed.
   *
   * @example
   * ```ts
   * const released = await bg.resumeAll();
   * ```
   */
  async resumeAll(): Promise<number> {
    this.#assertOpen();
    let count = 0;
    for (const worker of this.#store.list().reverse()) if (resumeWorker(worker, this.#runtime.slots)) count++;
    return count;
  }

  /**
   * Starts a worker exporting one `COPY ... TO STDOUT`: `result(h)` (and `result(h).stream()`)
   * yields its data as Buffer chunks, through the worker's byte-bounded queue (`queueSize`), so
   * an export never holds more than that while the caller is slow. `resultInfo(h).rowCount` is
   * the COPY's row count once it finished.
   *
   * @example
   * ```ts
   * const h = await bg.copyTo('COPY orders TO STDOUT (FORMAT csv, HEADER)');
   * await pipeline(bg.result(h).stream(), createWriteStream('orders.csv'));
   * ```
   */
  copyTo(sql: string, options?: CopyToOptions): Promise<WorkerHandle> {
    return this.#launchPlanned(() => copyPlan(sql, 'to', undefined, options, this.#options));
  }

  /**
   * Starts a worker loading `source` (a Node Readable of COPY data) with one `COPY ... FROM
   * STDIN`, in the worker's own transaction: all of it commits, or nothing (a bad row, the
   * source's error, a cancel). Resolves once the COPY is on its way; `wait(h)` for its end.
   *
   * @example
   * ```ts
   * const h = await bg.copyFrom('COPY staging FROM STDIN (FORMAT csv)', createReadStream('day.csv'));
   * await bg.wait(h);
   * const { rowCount, hasError } = await bg.resultInfo(h);
   * ```
   */
  copyFrom(sql: string, source: Readable, options?: CopyFromOptions): Promise<WorkerHandle> {
    return this.#launchPlanned(() => copyPlan(sql, 'from', source, options, this.#options));
  }

  /**
   * The worker's rows (the last statement's), as an async iterable that can be read once.
   *
   * @example
   * ```ts
   * for await (const row of bg.result<{ id: number }>(h)) console.log(row.id);
   * // or as a Readable in object mode, with its backpressure:
   * await pipeline(bg.result(h2).stream(), toCsv, createWriteStream('out.csv'));
   * ```
   */
  result<R = Record<string, unknown>>(handle: WorkerRef): WorkerResult<R> {
    this.#assertOpen();
    return claimResult<R>(this.#store.lookup(handle));
  }

  /**
   * The last statement's `rowCount` and `commandTag`, and whether the worker has finished; consumes nothing.
   *
   * @example
   * ```ts
   * await bg.wait(h);
   * const { rowCount, commandTag, hasError } = await bg.resultInfo(h); // e.g. 1000, 'SELECT', false
   * ```
   */
  async resultInfo(handle: WorkerRef): Promise<ResultInfo> {
    this.#assertOpen();
    return this.#store.lookup(handle).resultInfo();
  }

  /**
   * The worker's error (the server's fields: sqlstate, message, detail, hint, context), or null; consumes nothing.
   *
   * @example
   * ```ts
   * await bg.wait(h);
   * const error = await bg.errorInfo(h);
   * if (error) console.error(error.sqlstate, error.message);
   * ```
   */
  async errorInfo(handle: WorkerRef): Promise<WorkerErrorInfo | null> {
    this.#assertOpen();
    const { error } = this.#store.lookup(handle);
    return error && { ...error };
  }

  /**
   * Waits until the worker is finished (stopped, error or canceled).
   *
   * @example
   * ```ts
   * await bg.wait(h);
   * const finished = await bg.wait(h, { timeoutMs: 5000 }); // false if still running
   * ```
   */
  wait(handle: WorkerRef): Promise<void>;
  /** Waits at most `timeoutMs`: true if the worker finished, false on timeout. */
  wait(handle: WorkerRef, options: WaitOptions & { timeoutMs: number }): Promise<boolean>;
  wait(handle: WorkerRef, options?: WaitOptions): Promise<void | boolean>;
  wait(handle: WorkerRef, options?: WaitOptions): Promise<void | boolean> {
    // No deadline, no signal: the worker's own promise (it only resolves, with nothing), without
    // a race or an async frame around it. Whatever fails (a closed instance, a bad handle, a
    // call without its instance) rejects, as from an async method; it never throws.
    try {
      if (options !== undefined) return this.#waitWithin(handle, options);
      this.#assertOpen();
      return this.#store.lookup(handle).whenTerminal;
    } catch (error) {
      return Promise.reject(error);
    }
  }

  async #waitWithin(handle: WorkerRef, options: WaitOptions): Promise<void | boolean> {
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
   *
   * @example
   * ```ts
   * await bg.cancel(h); // cancel request, then a terminate after 5 s
   * await bg.cancel(h, { graceMs: 0 }); // terminate at once
   * (await bg.info(h)).state; // 'canceled' (nothing committed), or 'stopped' if it had committed
   * ```
   */
  async cancel(handle: WorkerRef, options?: CancelOptions): Promise<void> {
    this.#assertOpen();
    const grace = graceMs(options, this.#options);
    await this.#runtime.stopper.stop(this.#store.lookup(handle), 'cancel', grace);
  }

  /**
   * Stops tracking the worker; it keeps running and commits.
   *
   * @example
   * ```ts
   * await bg.detach(h); // it runs on and commits; list() no longer shows it
   * ```
   */
  async detach(handle: WorkerRef): Promise<void> {
    this.#assertOpen();
    this.#detach(this.#store.lookup(handle));
  }

  /**
   * Detaches every tracked worker; resolves with how many.
   *
   * @example
   * ```ts
   * const n = await bg.detachAll();
   * ```
   */
  async detachAll(): Promise<number> {
    this.#assertOpen();
    const workers = this.#store.list();
    for (const worker of workers) this.#detach(worker);
    return workers.length;
  }

  /**
   * Cancels every tracked active worker and waits for them; resolves with how many.
   *
   * @example
   * ```ts
   * const n = await bg.cancelAll({ graceMs: 1000 });
   * ```
   */
  async cancelAll(options?: CancelOptions): Promise<number> {
    this.#assertOpen();
    const grace = graceMs(options, this.#options);
    return this.#runtime.stopper.stopAll(
      this.#store.list().filter((worker) => worker.active),
      'cancel',
      grace,
    );
  }

  /**
   * What list() says about one worker.
   *
   * @example
   * ```ts
   * const { state, elapsedMs, queuedBytes } = await bg.info(h);
   * ```
   */
  async info(handle: WorkerRef): Promise<WorkerInfo> {
    this.#assertOpen();
    return this.#store.lookup(handle).info(Date.now());
  }

  /**
   * Tracked workers, newest first.
   *
   * @example
   * ```ts
   * for (const w of await bg.list()) console.log(w.pid, w.label, w.state, w.sqlPreview);
   * ```
   */
  async list(): Promise<WorkerInfo[]> {
    this.#assertOpen();
    const now = Date.now();
    return this.#store.list().map((worker) => worker.info(now));
  }

  /**
   * Counts of every launched worker by outcome, the active ones, and the average execution time.
   *
   * @example
   * ```ts
   * const { workersLaunched, workersActive, avgExecutionMs } = await bg.stats();
   * ```
   */
  async stats(): Promise<WorkerStats> {
    this.#assertOpen();
    return this.#store.stats(this.#options.maxWorkers);
  }

  /**
   * The last progress the worker's SQL reported with pg_background_progress(), or null.
   *
   * @example
   * ```ts
   * const h = await bg.launch("SELECT pg_background_progress(50, 'halfway'); SELECT pg_sleep(10)");
   * const progress = await bg.getProgress(h); // { pct: 50, message: 'halfway' } once reported
   * ```
   */
  async getProgress(handle: WorkerRef): Promise<WorkerProgress | null> {
    this.#assertOpen();
    const { progress } = this.#store.lookup(handle);
    return progress && { ...progress };
  }

  /**
   * Creates pg_background_progress(pct, msg) and the pg_background_workers view in `schema`
   * (default 'public'), and with `journal: true` the journal; idempotent.
   *
   * @example
   * ```ts
   * await bg.install({ schema: 'app', journal: true }); // then, in a worker's SQL: SELECT app.pg_background_progress(10, 'loading')
   * ```
   */
  async install(options?: InstallOptions): Promise<void> {
    this.#assertOpen();
    const { schema, journal } = installOptions(options);
    try {
      await installProgressFunction(this.#runtime.control, schema, pg.escapeIdentifier, journal);
    } finally {
      this.#runtime.journal?.reset();
    }
  }

  // ---- pg_background 2.0's helpers (worker-helpers.ts) ------------------------------------

  /**
   * Launches `sql`, reads its rows, waits for its end and detaches it. With `timeoutMs` the
   * worker is cancelled once that passes, and this resolves only after it has stopped
   * (`timedOut: true`). A failed, cancelled or timed-out worker is an outcome, not a rejection.
   *
   * @example
   * ```ts
   * const { rows, hasError, sqlstate } = await bg.run<{ n: number }>('SELECT count(*)::int AS n FROM t', { timeoutMs: 10_000 });
   * ```
   */
  async run<R = Row>(sql: WorkerSql, options?: RunOptions): Promise<RunOutcome<R>> {
    this.#assertOpen();
    return runWorker<R>(this.#helpers, sql, options);
  }

  /**
   * State, result info and error of a worker in one snapshot; consumes nothing.
   *
   * @example
   * ```ts
   * const { state, rowCount, error } = await bg.outcome(h);
   * ```
   */
  async outcome(handle: WorkerRef): Promise<WorkerOutcome> {
    this.#assertOpen();
    return outcomeOf(this.#store.lookup(handle));
  }

  /**
   * The outcomes of `handles`, in input order, once all finished or `timeoutMs` (one budget for all) passed.
   *
   * @example
   * ```ts
   * const outcomes = await bg.drain([h1, h2, h3], { timeoutMs: 60_000 });
   * ```
   */
  async drain(handles: readonly WorkerRef[], options?: WaitManyOptions): Promise<WorkerOutcome[]> {
    this.#assertOpen();
    return drainWorkers(this.#helpers, handles, options);
  }

  /**
   * The first of `handles` to finish (the caller's own object), or null if `timeoutMs` passes first.
   *
   * @example
   * ```ts
   * const first = await bg.waitAny([h1, h2], { timeoutMs: 1000 }); // h1, h2 or null
   * ```
   */
  async waitAny<H extends WorkerRef>(handles: readonly H[], options?: WaitManyOptions): Promise<H | null> {
    this.#assertOpen();
    return waitAnyWorker(this.#helpers, handles, options);
  }

  /**
   * Cancels the tracked active workers whose label matches the SQL LIKE `pattern`; resolves with how many, once they stopped.
   *
   * @example
   * ```ts
   * const n = await bg.cancelByLabel('etl/%');
   * ```
   */
  async cancelByLabel(pattern: string, options?: CancelOptions): Promise<number> {
    this.#assertOpen();
    return cancelWorkersByLabel(this.#helpers, pattern, graceMs(options, this.#options));
  }

  /**
   * Stops tracking every finished worker (running ones stay); resolves with how many.
   *
   * @example
   * ```ts
   * const forgotten = await bg.purge();
   * ```
   */
  async purge(): Promise<number> {
    this.#assertOpen();
    return this.#store.purge();
  }

  /**
   * The worker's whole SQL text (`sqlPreview` is its first 120 code points).
   *
   * @example
   * ```ts
   * const sql = await bg.fullSql(h);
   * ```
   */
  async fullSql(handle: WorkerRef): Promise<string> {
    this.#assertOpen();
    return this.#store.lookup(handle).launch.plan.text;
  }

  /**
   * Waits for running workers (detached ones too) and accepted launches not started yet to
   * finish and commit, discarding rows nobody will read, then closes every connection.
   * `{ cancel: true }` cancels them instead;
   * `{ timeoutMs }` waits that long before cancelling. Later calls reject with PGBG_CLOSED.
   *
   * @example
   * ```ts
   * await bg.close(); // waits for running workers to commit
   * await other.close({ cancel: true }); // or cancels them
   * ```
   */
  close(options?: CloseOptions): Promise<void> {
    if (this.#closing) return this.#closing;
    const { cancel, timeoutMs } = closeOptions(options);
    this.#closing = shutdown(this.#runtime, cancel, timeoutMs);
    return this.#closing;
  }

  /**
   * close(), for `await using`.
   *
   * @example
   * ```ts
   * {
   *   await using bg = new PgBackground({ connectionString });
   *   await bg.wait(await bg.launch('VACUUM big_table'));
   * } // closed here
   * ```
   */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /**
   * A one-line summary for util.inspect and console.log.
   *
   * @example
   * ```ts
   * console.log(bg); // PgBackground { maxWorkers: 16, active: 2, launched: 10, ... }
   * ```
   */
  [inspect.custom](): string {
    const stats = this.#store.stats(this.#options.maxWorkers);
    return `PgBackground { maxWorkers: ${stats.maxWorkers}, active: ${stats.workersActive}, launched: ${stats.workersLaunched}, connections: ${this.#runtime.pool.size}, idle: ${this.#runtime.pool.idle}, closed: ${this.#closing !== null} }`;
  }

  /**
   * The same summary as a string.
   *
   * @example
   * ```ts
   * logger.info(`${bg}`);
   * ```
   */
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

  #launchPlanned(plan: () => LaunchPlan): Promise<WorkerHandle> {
    try {
      this.#assertOpen();
      return this.#runtime.launcher.launch(plan());
    } catch (error) {
      return Promise.reject(error);
    }
  }

  #detach(worker: Worker): void {
    // A held worker nobody could resume any more would never end: detached, it goes on.
    resumeWorker(worker, this.#runtime.slots);
    for (const child of worker.children ?? []) resumeWorker(child, this.#runtime.slots);
    worker.apply({ kind: 'untracked', reason: 'detach' });
  }

  #assertOpen(): void {
    if (this.#closing) throw new PgBackgroundError('PGBG_CLOSED', 'This PgBackground instance is closed');
  }
}
