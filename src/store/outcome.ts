// WorkerOutcome: one snapshot of everything a caller usually asks about a worker (state,
// result info, error, timing, whether a timeout stopped it), read from the worker itself and
// consuming nothing. run(), outcome(h) and drain() all answer with it.
import type { WorkerOutcome } from '../api/types.js';
import type { Worker } from './worker.js';

/**
 * Whether a timeout (workerTimeoutMs, a launch's or run's timeoutMs) passed before the worker
 * finished and its cancel is what ended it, or is ending it. A worker that committed before
 * that cancel reached it ('stopped') did not time out: its work is done and kept.
 */
export function timedOut(worker: Worker): boolean {
  return worker.canceledBy === 'timeout' && worker.state !== 'stopped';
}

export function outcomeOf(worker: Worker, now = Date.now()): WorkerOutcome {
  const { error, state } = worker;
  return {
    pid: worker.pid,
    cookie: worker.cookie,
    label: worker.label,
    state,
    consumed: worker.consumed,
    completed: !worker.active,
    hasError: state === 'error' || state === 'canceled',
    rowCount: worker.rowCount,
    commandTag: worker.commandTag,
    sqlstate: error?.sqlstate ?? null,
    errorMessage: error?.message ?? null,
    launchedAt: new Date(worker.launchedAt),
    elapsedMs: (worker.finishedAt ?? now) - worker.launchedAt,
    timedOut: timedOut(worker),
  };
}
