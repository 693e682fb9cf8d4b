// Outcome classification, as pure functions (offline unit tests in test/classify.test.ts): what
// a task's end means for its worker's state and its connection, and whether a failed task provably
// never ran. `canceled` only where the server confirmed the stop; a lost connection proves nothing.
import type { WorkerErrorInfo } from '../errors.js';
import type { TerminalState } from '../store/worker.js';
import { confirmsCancel, endsSession, errorInfo, provesNeverRan, WorkerFailure } from '../results/error-info.js';
import pg from 'pg';

export interface TaskEnd {
  /** The server's ErrorResponse, a connection error, or null on success. */
  readonly error: Error | null;
  /** A cancel (cancel(), timeout, signal, close) was asked for the worker. */
  readonly cancelRequested: boolean;
  /** Why the connection broke, if it did (ours to say when we dropped it). */
  readonly connectionFailure: Error | null;
  /** Behind a pooler: never reused (a reset of ours could land on another client's session). */
  readonly pooled: boolean;
  /**
   * The task's own statement failed, and it commits as it goes (CALL, DO, VACUUM, CREATE INDEX
   * CONCURRENTLY...: plan/commit-points.ts commitsOnItsOwn): part of it may have committed.
   */
  readonly partial: boolean;
}

export interface Classified {
  readonly state: TerminalState;
  readonly info: WorkerErrorInfo | null;
  /** The connection may serve another task (after its reset). */
  readonly reusable: boolean;
}

export function classify({ error, cancelRequested, connectionFailure, pooled, partial }: TaskEnd): Classified {
  // Without an ErrorResponse the connection broke: say why, if we broke it ourselves.
  let info = error && errorInfo(error instanceof pg.DatabaseError || error instanceof WorkerFailure ? error : (connectionFailure ?? error));
  let state: TerminalState = !error ? 'stopped' : cancelRequested && confirmsCancel(error) ? 'canceled' : 'error';
  // `canceled` says nothing committed. The server stopped a statement that commits as it goes
  // (a procedure's COMMIT, VACUUM table by table, CONCURRENTLY's first transactions): what it
  // committed before the cancel stays. (A WorkerFailure is ours: the task never reached the server.)
  if (state === 'canceled' && partial && error instanceof pg.DatabaseError) {
    state = 'error';
    info = { ...info!, message: `${info!.message}${PARTIAL}` };
  }
  // A connection that saw a cancel request is never reused: the request could still land on its
  // next task. One whose session ended (FATAL, terminate, lost socket) cannot be.
  const reusable = !cancelRequested && connectionFailure === null && !(error && endsSession(error)) && !pooled;
  return { state, info, reusable };
}

/** What a cancelled statement that commits on its own adds to the server's message. */
export const PARTIAL =
  ": the statement was stopped, but it commits as it goes (a procedure or DO block that commits, VACUUM, CONCURRENTLY and the like), so what it committed before the cancel stays: not 'canceled', its outcome is partial";

/** What was on the wire when the task ended: our settings round trip, or the task itself. */
export type Sent = { readonly kind: 'settings' } | { readonly kind: 'reset' } | { readonly kind: 'task'; readonly startsWithParse: boolean } | null;

/**
 * Nothing of the task reached a backend: its connection had died first (see provesNeverRan;
 * the settings round trip is ours, so its connection dying proves it too). Such a task may run
 * again on a new connection.
 */
export function neverRan(error: Error | null, sent: Sent, firstAnswer: number | null): error is Error {
  if (error === null || sent === null) return false;
  // The reset before a task is ours alone: whatever ended it, the task was not written yet.
  if (sent.kind === 'reset') return true;
  if (sent.kind === 'settings') return endsSession(error);
  return provesNeverRan(error, firstAnswer, sent.startsWithParse);
}
