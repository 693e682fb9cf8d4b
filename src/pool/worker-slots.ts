// Admission: at most `maxWorkers` workers hold a slot at once; a slot is held from launch until
// the worker reaches a terminal state (not until its rows are read). With whenFull 'queue',
// launches wait in FIFO order (p-limit's queue) and an aborted wait gives its turn back at once.
// The launcher sees only the Admission interface: pending work can be held (pause) and, later,
// admission may ask a cluster-wide cap before it hands out a slot.
import pLimit, { type LimitFunction } from 'p-limit';

/**
 * What waits for a slot (a worker's start). A queued wait hears a cancel through one callback,
 * not an AbortSignal listener: fire and forget queues every launch, and an EventTarget listener
 * with its signal costs ~5 µs a launch there (measured), more than the rest of the queueing.
 */
export interface Abortable {
  readonly aborted: boolean;
  /** Why it was cancelled (a PGBG_ABORTED error), once aborted. */
  readonly abortReason: unknown;
  /** `listener` is called once if the start is cancelled while this waits; null clears it. */
  whenAborted(listener: ((reason: unknown) => void) | null): void;
}

export interface Slot {
  /** Gives the slot back; calling it more than once is harmless. */
  release(): void;
}

export interface Admission {
  /** Resolves with a slot, or rejects with the signal's reason if it aborts first. */
  acquire(start: Abortable): Promise<Slot>;
  /** Holds every start not admitted yet (those with a slot go on) until resume(). */
  pause(): void;
  resume(): void;
  readonly paused: boolean;
}

export class WorkerSlots implements Admission {
  readonly #limit: LimitFunction;
  /** Starts that came while paused, in order; they join p-limit's queue on resume(). */
  #held: (() => void)[] = [];
  #paused = false;

  constructor(maxWorkers: number) {
    this.#limit = pLimit(maxWorkers);
  }

  get paused(): boolean {
    return this.#paused;
  }

  acquire(start: Abortable): Promise<Slot> {
    if (start.aborted) return Promise.reject(start.abortReason);
    return new Promise<Slot>((resolve, reject) => {
      start.whenAborted(reject);
      const enter = () =>
        void this.#limit(
          () =>
            new Promise<void>((release) => {
              start.whenAborted(null);
              if (start.aborted) {
                // Aborted while queued: give the turn back at once (the wait was already rejected).
                release();
                reject(start.abortReason);
                return;
              }
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
      if (this.#paused) this.#held.push(enter);
      else enter();
    });
  }

  pause(): void {
    this.#paused = true;
  }

  resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    // An aborted held start enters too and gives its turn back at once: the order stays FIFO.
    for (const enter of this.#held.splice(0)) enter();
  }
}
