// The worker's state vocabulary, once: every type that names a state or a cancel reason is
// derived from these constants (api/types.ts's public WorkerState too), and a journal's SQL
// enum or CHECK will be generated from them. A leaf: it imports nothing.
//   pending → running → cancelling → stopped | canceled | error   (pending may end directly)
//   pending ⇄ paused (held before its start); a job's root: running ⇄ paused (its subtasks held)

export const WORKER_STATES = Object.freeze(['pending', 'paused', 'running', 'cancelling', 'stopped', 'canceled', 'error'] as const);
export type WorkerState = (typeof WORKER_STATES)[number];

/** States a worker leaves again: it holds (or waits for, or is held before) a slot. */
export const ACTIVE_STATES = Object.freeze(['pending', 'paused', 'running', 'cancelling'] as const satisfies readonly WorkerState[]);
export type ActiveState = (typeof ACTIVE_STATES)[number];

/** Final states: nothing of the worker changes any more but its tracking and its result's reading. */
export const TERMINAL_STATES = Object.freeze(['stopped', 'canceled', 'error'] as const satisfies readonly WorkerState[]);
export type TerminalState = (typeof TERMINAL_STATES)[number];

/** Why a worker was cancelled: cancel(), a timeout, the caller's AbortSignal, close(). */
export const CANCEL_REASONS = Object.freeze(['cancel', 'timeout', 'signal', 'close'] as const);
export type CancelReason = (typeof CANCEL_REASONS)[number];

/** Which state may follow which (the worker record refuses any other step). */
export const NEXT_STATES: Readonly<Record<WorkerState, readonly WorkerState[]>> = Object.freeze({
  pending: ['paused', 'running', 'cancelling', ...TERMINAL_STATES],
  // Back to pending on resume; a root goes back to running, or on to cancelling.
  paused: ['pending', 'running', 'cancelling', ...TERMINAL_STATES],
  // Only a job's root pauses while running (worker.ts refuses it for a worker on a connection).
  running: ['paused', 'cancelling', ...TERMINAL_STATES],
  cancelling: TERMINAL_STATES,
  stopped: [],
  canceled: [],
  error: [],
});

export function isActive(state: WorkerState): state is ActiveState {
  return state === 'pending' || state === 'paused' || state === 'running' || state === 'cancelling';
}
