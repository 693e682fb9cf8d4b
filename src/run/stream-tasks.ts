// The task kinds beside the default one (results/task-query.ts), chosen per launch: cursor mode
// (results/cursor-task.ts) and COPY with the client (results/copy-task.ts). The launcher asks
// here once per start; null means the default task. Each kind runs on the worker connection,
// reports through the same TaskOutcome, and keeps the classification of its end (classify.ts).
import type { WorkerConnection } from '../pool/worker-connection.js';
import type { TaskPlan } from '../plan/task-plan.js';
import { CopyInTask, CopyOutTask } from '../results/copy-task.js';
import { CursorTask, type CursorStop } from '../results/cursor-task.js';
import type { ColumnSink, TaskOutcome } from '../results/task-query.js';
import type { Worker } from '../store/worker.js';

export interface StreamTask {
  readonly done: Promise<TaskOutcome>;
  readonly rowCount: number;
  start(connection: WorkerConnection): void;
}

/** The task for `worker`'s launch if it is not the default kind, and whether it opens with a Parse. */
export function streamTask(worker: Worker, plan: TaskPlan, columns: ColumnSink): { task: StreamTask; startsWithParse: boolean } | null {
  const { copy, cursor } = worker.launch;
  if (copy) {
    // One simple Query through pg-copy-streams: an export's chunks go through the byte-bounded
    // queue, a load reads the caller's stream and fails the COPY on a cancel (the worker's signal).
    const task = copy.direction === 'to' ? new CopyOutTask(plan.text, worker.queue) : new CopyInTask(plan.text, copy.source, worker.signal);
    return { task, startsWithParse: false };
  }
  if (cursor) {
    // One statement, fetched as the reader makes room, in its own BEGIN ... COMMIT (its first
    // message is BEGIN's Parse); the pool resets the connection after it.
    return { task: new CursorTask(plan, cursor.batchRows, worker.queue, columns, () => cursorStop(worker)), startsWithParse: true };
  }
  return null;
}

/** Why the launch's task kind cannot run behind a connection pooler, or null if it can. */
export function pooledRefusal(worker: Worker): string | null {
  // Cursor mode holds a transaction and a portal open between fetches, and a COPY streams beside
  // pg's query flow: behind a pooler both would run inside our pin (see pool/pooler.ts).
  const { copy, cursor } = worker.launch;
  if (cursor) return 'cursor mode is not supported behind a connection pooler';
  if (copy) return 'COPY with the client is not supported behind a connection pooler';
  return null;
}

/**
 * What a cursor-mode worker wants of its cursor: a cancel rolls back; a reader that stopped early
 * closes the portal (the rest is never computed); anything else (detach, close, prune) reads on,
 * discarding, to the statement's end, which commits as in the default path.
 */
function cursorStop(worker: Worker): CursorStop {
  if (worker.cancelRequested) return 'cancel';
  return worker.discardReason === 'consumer' ? 'close' : 'read';
}
