// The end of a task pinned behind a connection pooler (see pool/pooler.ts): its transaction is
// ours to end, after the task's last answer.
import pg from 'pg';
import { COMMIT_SQL, ROLLBACK_SQL } from '../catalog.js';
import { PINNED_HINT } from '../pool/pooler.js';
import type { WorkerConnection } from '../pool/worker-connection.js';
import { WorkerFailure } from '../results/error-info.js';
import type { TaskOutcome } from '../results/task-query.js';
import type { Worker } from '../store/worker.js';

/**
 * Ends a pinned task's transaction (see pooler.ts): COMMIT after a task that succeeded and was
 * not cancelled; ROLLBACK after one that failed; after a cancel request the session is dropped
 * uncommitted, so the backend (a signal may be on its way to it) is never anyone else's.
 */
export async function endPinnedTask(worker: Worker, connection: WorkerConnection, outcome: TaskOutcome): Promise<TaskOutcome> {
  connection.onNotice = null;
  // Synchronously with the check below: a cancel from now on signals nothing.
  connection.unpin();
  if (connection.failure) return outcome;
  if (worker.cancelRequested) {
    connection.destroy(new Error('cancelled behind a connection pooler: the session was dropped before its transaction committed'));
    if (outcome.error) return outcome;
    return { ...outcome, error: new WorkerFailure('57014', 'canceling statement due to user request (the task had run but was never committed)') };
  }
  if (outcome.error) {
    await connection.query(ROLLBACK_SQL).catch(() => {});
    if (outcome.error instanceof pg.DatabaseError && outcome.error.code === '25001' && !outcome.error.hint) outcome.error.hint = PINNED_HINT;
    return outcome;
  }
  try {
    await connection.query(COMMIT_SQL);
    return outcome;
  } catch (error) {
    if (error instanceof pg.DatabaseError) return { ...outcome, error };
    return {
      ...outcome,
      error: new Error(`the COMMIT of the task's transaction got no answer (${(error as Error).message}); the worker's outcome is unknown`),
    };
  }
}
