// Where workers are kept, behind one interface: the in-memory registry (worker-registry.ts) is
// the first implementation, a journal in the database will be the second (or wrap the first).
// A store hears every fact of a worker through `changed`, called by Worker.apply after each
// change it applied, and only then: launcher, stopper and facade never notify a store themselves.
import type { WorkerStats } from '../api/types.js';
import type { WorkerChange } from './worker-change.js';
import type { WorkerState } from '../core/states.js';
import type { Worker } from './worker.js';
import type { ActiveWorkerList } from './active-workers.js';

export interface WorkerStore {
  /** A new worker (pending, tracked): it counts as launched. */
  add(worker: Worker): void;
  /**
   * `change` was applied to `worker`, which was in `priorState`, on `priorPid` (0: none) and
   * tracked or not just before. Three arguments, not an object: apply runs several times per task.
   */
  changed(worker: Worker, change: WorkerChange, priorState: WorkerState, priorPid: number, priorTracked: boolean): void;
  /** The tracked worker a handle names, or PGBG_INVALID_ARGUMENT / PGBG_UNKNOWN_WORKER / PGBG_COOKIE_MISMATCH. */
  lookup(handle: unknown): Worker;
  /** Tracked workers, newest first. */
  list(): Worker[];
  /** Workers not yet terminal, detached ones included. */
  readonly active: ActiveWorkerList;
  /** How many of `active` are job roots (they hold no slot: maxWorkers counts the others). */
  readonly activeRoots: number;
  stats(maxWorkers: number): WorkerStats;
  /** Forgets every finished tracked worker now, as retention would later; returns how many. */
  purge(): number;
  /** Stops the store's own timers (close()). */
  dispose(): void;
}
