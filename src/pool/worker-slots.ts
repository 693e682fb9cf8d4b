// At most `maxWorkers` workers hold a slot at once; a slot is held from launch until the worker
// reaches a terminal state (not until its rows are read). With whenFull 'queue', launches wait
// in FIFO order (p-limit's queue) and an aborted wait gives its turn back at once.
import pLimit, { type LimitFunction } from 'p-limit';

export interface Slot {
  /** Gives the slot back; calling it more than once is harmless. */
  release(): void;
}

export class WorkerSlots {
  readonly #limit: LimitFunction;

  constructor(maxWorkers: number) {
    this.#limit = pLimit(maxWorkers);
  }

  /** Resolves with a slot, or rejects with the reason if the start is cancelled first. */
  acquire(start: StartCancellation): Promise<Slot> {
    return new Promise<Slot>((resolve, reject) => {
      if (start.startCancelled) {
        reject(start.startCancelled);
        return;
      }
      let waiting = true;
      const unsubscribe = start.onStartCancelled((reason) => {
        waiting = false;
        reject(reason);
      });
      void this.#limit(
        () =>
          new Promise<void>((release) => {
            unsubscribe();
            if (!waiting) return release(); // cancelled while queued: give the turn back at once
            let released = false;
            resolve({
              release() {
                if (released) return;
                released = true;
                release();
              },
            });
          }),
      );
    });
  }
}

/** What can cancel a start while it waits (a Worker). */
export interface StartCancellation {
  readonly startCancelled: Error | null;
  onStartCancelled(listener: (reason: Error) => void): () => void;
}
