// A launch as the facade validated it: the task's plan and every option, frozen. The worker
// record keeps it for its whole life.
import type { Readable } from 'node:stream';
import type { RowMode, TypeParsers } from '../api/types.js';
import type { TaskPlan } from '../plan/task-plan.js';
import type { Worker } from './worker.js';

/** The longest pause between two tries, ms (launch's retry.backoffMs, and its doublings). */
export const MAX_BACKOFF_MS = 3_600_000;

/** Retries of transient failures (launch's `retry`), validated; only with more than one try. */
export interface RetryPolicy {
  /** Total tries, 2..100. */
  readonly attempts: number;
  /** The first pause between tries, ms (doubled each time, at most MAX_BACKOFF_MS). */
  readonly backoffMs: number;
  /** The SQLSTATEs that are retried. */
  readonly sqlstates: ReadonlySet<string>;
}

export interface LaunchPlan {
  readonly plan: TaskPlan;
  readonly submitted: boolean;
  readonly queueSize: number;
  readonly label: string | null;
  readonly signal: AbortSignal | null;
  /** The settings and role to set on the session before the task (one round trip), or null. */
  readonly session: { readonly text: string; readonly values: string[] } | null;
  /** The settings as name/value pairs (behind a pooler they go in the task's own transaction). */
  readonly settings: readonly (readonly [string, string])[];
  readonly role: string | null;
  readonly rowMode: RowMode;
  readonly types: TypeParsers | undefined;
  readonly timeoutMs: number;
  readonly fresh: boolean;
  /** The job's root, for a subtask launched with ctx.launch / ctx.submit. */
  readonly parent: Worker | null;
  /** A job's root (bg.job): no SQL and no connection of its own. */
  readonly job: boolean;
  /** Null: one try. */
  readonly retry: RetryPolicy | null;
  /** Cursor mode (results/cursor-task.ts): rows fetched `batchRows` at a time as they are read; null: off. */
  readonly cursor: { readonly batchRows: number } | null;
  /** A COPY with the client (results/copy-task.ts): bg.copyTo's export, or bg.copyFrom's load and its source; null: none. */
  readonly copy: { readonly direction: 'to' } | { readonly direction: 'from'; readonly source: Readable } | null;
}

/**
 * `launch` without its parameter values, once its worker finished: a worker kept for the
 * retention keeps its text (fullSql, the journal's preview), not the values (they could be
 * large buffers), which only a retry reads. The same object when it has none.
 */
export function withoutValues(launch: LaunchPlan): LaunchPlan {
  if (launch.plan.values === null) return launch;
  // A launch without options keeps the instance's on its prototype (api/options.ts launchPlan): kept.
  const plan = Object.freeze({ ...launch.plan, values: null });
  return Object.freeze(Object.assign(Object.create(Object.getPrototypeOf(launch) as object) as LaunchPlan, launch, { plan }));
}
