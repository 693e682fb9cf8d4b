// What the server says a running worker's backend is doing, as one value: the phase and the
// fraction done from pg_stat_progress_*, the wait event, and the backends it waits for. The
// backend monitor (control/backend-monitor.ts) makes them, the worker record keeps the last one
// (an 'observed' change), list() shows it. A leaf: it imports nothing.

export interface Observation {
  /** The progress view's phase (COPY's command), or READER_PHASE; null when there is none. */
  readonly phase: string | null;
  /** 0..1: the counters that fit the phase (blocks, tuples, bytes); null when none do. */
  readonly fractionCompleted: number | null;
  /** `wait_event_type:wait_event`, such as 'Lock:relation' or 'Client:ClientWrite'; null when not waiting. */
  readonly waitEvent: string | null;
  /** pg_blocking_pids() of the backend: the pids holding the lock it waits for. */
  readonly blockedBy: readonly number[];
}

/** The phase of a worker whose backend is blocked sending rows because its queue is full. */
export const READER_PHASE = 'waiting for the reader';

/** The wait event of a backend blocked writing to its client (us). */
export const CLIENT_WRITE = 'Client:ClientWrite';

export function sameObservation(a: Observation | null, b: Observation | null): boolean {
  if (a === null || b === null) return a === b;
  return (
    a.phase === b.phase &&
    a.fractionCompleted === b.fractionCompleted &&
    a.waitEvent === b.waitEvent &&
    a.blockedBy.length === b.blockedBy.length &&
    a.blockedBy.every((pid, i) => pid === b.blockedBy[i])
  );
}
