// pg_background 2.0's helpers, built on what PgBackground already does: run() is launch,
// read, wait and detach in one call; drain() and waitAny() wait on many workers at once,
// woken by their completion (never by polling); cancelByLabel() cancels by SQL LIKE pattern.
// PgBackground hands these functions a HelperHost: its own methods, nothing more.
import { PgBackgroundError, WorkerError, invalidArgument } from '../errors.js';
import { untilSettled } from '../core/abort.js';
import { likeMatcher } from '../util/like-pattern.js';
import { waitOptions } from './options.js';
import { outcomeOf } from '../store/outcome.js';
import type { CancelReason, LaunchOptions, RunOutcome, WorkerHandle, WorkerOutcome, WorkerRef, WorkerSql } from './types.js';
import { describe } from '../util/validate.js';
import type { Worker } from '../store/worker.js';
import { WorkerResult } from '../results/worker-result.js';

export interface HelperHost {
  launch(sql: WorkerSql, options?: LaunchOptions): Promise<WorkerHandle>;
  result<R>(handle: WorkerRef): WorkerResult<R>;
  /** The tracked worker a handle names (PGBG_UNKNOWN_WORKER, PGBG_COOKIE_MISMATCH otherwise). */
  lookup(handle: unknown): Worker;
  /** Tracked workers, newest first. */
  tracked(): Worker[];
  /** Cancels (or joins the cancel under way) and resolves once the worker is terminal. */
  stop(worker: Worker, reason: CancelReason, graceMs: number): Promise<void>;
  /** Stops them all, each to its end; then rejects with the first stop that could not be proven. */
  stopAll(workers: readonly Worker[], reason: CancelReason, graceMs: number): Promise<number>;
  detach(worker: Worker): void;
}

/**
 * Launches `sql`, reads all its rows, waits for the end and detaches. A timeout (`timeoutMs`)
 * cancels the worker and this waits until it has really stopped. Failures, cancels and
 * timeouts are outcomes; it rejects only for what launch rejects before a worker exists (bad
 * arguments, a closed instance, PGBG_MAX_WORKERS), for PGBG_CLOSED, and if the caller's own
 * type parser throws.
 */
export async function runWorker<R>(host: HelperHost, sql: WorkerSql, options: LaunchOptions | undefined): Promise<RunOutcome<R>> {
  let handle: WorkerHandle;
  try {
    handle = await host.launch(sql, options);
  } catch (error) {
    // A worker that was registered but never started (no connection, cancelled while it
    // waited for a slot) has an outcome like any other; it is still named by pid 0.
    const worker =
      error instanceof PgBackgroundError && (error.code === 'PGBG_CONNECTION_FAILED' || error.code === 'PGBG_ABORTED') ? unstarted(host, error.cookie) : null;
    if (!worker) throw error;
    host.detach(worker);
    return { ...outcomeOf(worker), rows: null };
  }
  const worker = host.lookup(handle);
  let rows: R[] | null = null;
  let thrown: unknown = null;
  try {
    rows = await host.result<R>(handle).toArray();
  } catch (error) {
    // The worker's failure or cancel is in its outcome; rows dropped by a cancel or a detach
    // leave `rows` null. Anything else (a closed instance, a type parser that threw) is thrown
    // once the worker has ended.
    const incomplete =
      error instanceof WorkerError || (error instanceof PgBackgroundError && (error.code === 'PGBG_RESULT_DISCARDED' || error.code === 'PGBG_DETACHED'));
    if (!incomplete) thrown = error;
  }
  await worker.whenTerminal;
  host.detach(worker);
  if (thrown !== null) throw thrown;
  return { ...outcomeOf(worker), rows };
}

function unstarted(host: HelperHost, cookie: bigint | undefined): Worker | null {
  if (cookie === undefined) return null;
  try {
    return host.lookup({ pid: 0, cookie });
  } catch {
    return null;
  }
}

/** Outcomes in input order once every worker is finished or the one shared budget is spent. */
export async function drainWorkers(host: HelperHost, handles: unknown, options: unknown): Promise<WorkerOutcome[]> {
  const { timeoutMs, signal } = waitOptions(options);
  const workers = lookupAll(host, handles, false);
  await untilSettled(Promise.all(workers.map((worker) => worker.whenTerminal)), timeoutMs, signal);
  const now = Date.now();
  return workers.map((worker) => outcomeOf(worker, now));
}

/** The first of `handles` whose worker is finished (input order breaks ties), or null on timeout. */
export async function waitAnyWorker<H extends WorkerRef>(host: HelperHost, handles: readonly H[], options: unknown): Promise<H | null> {
  const { timeoutMs, signal } = waitOptions(options);
  const workers = lookupAll(host, handles, true);
  const first = (): H | null => {
    const index = workers.findIndex((worker) => !worker.active);
    return index === -1 ? null : handles[index]!;
  };
  const done = first();
  if (done !== null) return done;
  await untilSettled(Promise.race(workers.map((worker) => worker.whenTerminal)), timeoutMs, signal);
  return first();
}

/** Cancels every tracked active worker whose label matches `pattern` (SQL LIKE); resolves with how many, once they have stopped. */
export async function cancelWorkersByLabel(host: HelperHost, pattern: unknown, graceMs: number): Promise<number> {
  const matches = likeMatcher(pattern);
  const targets = host.tracked().filter((worker) => worker.active && worker.label !== null && matches(worker.label));
  return host.stopAll(targets, 'cancel', graceMs);
}

function lookupAll(host: HelperHost, handles: unknown, nonEmpty: boolean): Worker[] {
  if (!Array.isArray(handles) || (nonEmpty && handles.length === 0)) {
    throw invalidArgument(
      `Expected \`handles\` to be ${nonEmpty ? 'a non-empty' : 'an'} array of worker handles, got ${Array.isArray(handles) ? 'an empty array' : describe(handles)}`,
    );
  }
  return handles.map((handle: unknown, index) => {
    try {
      return host.lookup(handle);
    } catch (error) {
      if (error instanceof PgBackgroundError && error.code === 'PGBG_INVALID_ARGUMENT') throw invalidArgument(`\`handles[${index}]\`: ${error.message}`);
      throw error;
    }
  });
}

/** The worker's result, claimed once: PGBG_RESULTS_DISABLED after submit(), PGBG_ALREADY_CONSUMED the second time. */
export function claimResult<R>(worker: Worker): WorkerResult<R> {
  const { pid, cookie, label } = worker;
  if (worker.launch.submitted) {
    throw new PgBackgroundError('PGBG_RESULTS_DISABLED', `Worker pid ${pid} was started with submit(): its rows are discarded`, { pid, cookie, label });
  }
  if (worker.resultClaimed) {
    throw new PgBackgroundError('PGBG_ALREADY_CONSUMED', `The result of worker pid ${pid} was already taken by an earlier result() call`, {
      pid,
      cookie,
      label,
    });
  }
  worker.apply({ kind: 'claimed' });
  return new WorkerResult<R>(worker);
}
