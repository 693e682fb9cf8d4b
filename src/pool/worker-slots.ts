// Admission: at most `maxWorkers` workers hold a slot at once; a slot is held from launch until
// the worker reaches a terminal state (not until its rows are read). With whenFull 'queue',
// launches wait in FIFO order (p-limit's queue) and an aborted wait gives its turn back at once.
// The launcher sees only the Admission interface: pending work can be held (pause) and, later,
// admission may ask a cluster-wide cap before it hands out a slot.
import pLimit, { type LimitFunction } from 'p-limit';

/** What waits for a slot: its signal (made only if the wait must queue) and whether it is aborted already. */
export interface Abortable {
  readonly signal: AbortSignal;
  readonly aborted: boolean;
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
    if (start.aborted) return Promise.reject(start.signal.reason);
    // A free slot is taken at once: no signal (and no listener) is made for a wait that cannot be.
    const free = !this.#paused && this.#limit.activeCount + this.#limit.pendingCount < this.#limit.concurrency;
    return new Promise<Slot>((resolve, reject) => {
      const signal = free ? null : start.signal;
      const onAbort = () => reject(start.signal.reason);
      signal?.addEventListener('abort', onAbort, { once: true });
      const enter = () =>
        void this.#limit(
          () =>
            new Promise<void>((release) => {
              signal?.removeEventListener('abort', onAbort);
              if (start.aborted) {
                // Aborted while queued (or in the microtask before a free slot): give the turn back at once.
                release();
                if (!signal) onAbort();
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
