// Retries of transient failures (launch's `retry`), the rule alone: whether a try that just
// ended is run again, and after how long. The launcher's loop (launcher.ts #again) does the rest.
// A try is retried only when everything here proves that nothing of it committed and that no
// row of it reached the reader; every doubt ends the worker as without a retry.
import pg from 'pg';
import { MAX_BACKOFF_MS, type RetryPolicy } from '../store/launch-plan.js';
import type { Worker } from '../store/worker.js';

/** What the connection says about the try that ended (a subset of WorkerConnection). */
export interface TryConnection {
  /** Why the connection broke, if it did. */
  readonly failure: Error | null;
  /** Behind a pooler: the task runs in a transaction the pooler holds (never retried). */
  readonly pooled: boolean;
}

/**
 * The pause before the next try, or null when the try's error stands. Retried only for an
 * ErrorResponse of severity ERROR (the session lives on, its transaction rolled back) whose
 * SQLSTATE the policy names, on a connection that did not break, with tries left, no cancel
 * asked for, and no row of this try taken by the reader. A task that could commit on its own
 * (plan/commit-points.ts) never gets a policy: launch refuses one.
 */
export function retryDelay(worker: Worker, error: Error | null, connection: TryConnection): number | null {
  const policy: RetryPolicy | null = worker.launch.retry;
  if (policy === null || error === null) return null;
  if (worker.retries + 1 >= policy.attempts || worker.cancelRequested) return null;
  // The server's own answer, not a lost connection (which proves nothing about a commit).
  if (!(error instanceof pg.DatabaseError) || error.severity !== 'ERROR' || !policy.sqlstates.has(error.code ?? '')) return null;
  if (connection.failure !== null || connection.pooled) return null;
  // Rows of this try already read: the reader is told by this try's error, never by a mix of two tries.
  if (worker.queue.taken > 0) return null;
  return Math.min(policy.backoffMs * 2 ** worker.retries, MAX_BACKOFF_MS);
}
