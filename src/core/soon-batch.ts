// Hand-offs a microtask later, all of one turn in one: what an awaited promise's reaction would
// give each of them (never inside the call that made them due, and in order), without a promise,
// a reaction or a closure apiece. The slot queue's grants and cancels (pool/worker-slots.ts) and
// the tasks' ends (results/task-query.ts: never inside pg's parser) go through one each. A leaf:
// it imports nothing.

/** A promise reaction, not queueMicrotask (which makes an AsyncResource and a bound function per call). */
const SOON = Promise.resolve();

export class SoonBatch<T> {
  readonly #hear: (item: T) => void;
  /** Items due, in the order they became due; the array keeps its room (no backing store per batch). */
  readonly #due: (T | null)[] = [];
  #count = 0;
  readonly #deliver = (): void => {
    // An item that becomes due while these are heard is heard in this loop.
    const due = this.#due;
    for (let i = 0; i < this.#count; i++) {
      const item = due[i]!;
      due[i] = null;
      try {
        this.#hear(item);
      } catch (error) {
        // As an unhandled rejection of the promise it replaces would: loud, and the rest still hear theirs.
        void Promise.reject(error);
      }
    }
    this.#count = 0;
  };

  /** `hear` is called with each item, a microtask after it became due. */
  constructor(hear: (item: T) => void) {
    this.#hear = hear;
  }

  /** `item` is heard in the next microtask (with every other item due by then). */
  add(item: T): void {
    this.#due[this.#count] = item;
    if (this.#count++ === 0) void SOON.then(this.#deliver);
  }
}
