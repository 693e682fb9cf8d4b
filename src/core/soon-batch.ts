// Hand-offs a microtask later, all of one turn in one: what an awaited promise's reaction would
// give each of them (never inside the call that made them due, and in order), without a promise,
// a reaction or a closure apiece. The slot queue's grants and cancels (pool/worker-slots.ts) and
// the tasks' ends (results/task-query.ts: never inside pg's parser) go through one each. A leaf:
// it imports nothing.
//
// Every batch shares one list of due items, in the order they became due, and one reaction to
// drain it: an item that becomes due while others are heard (a task's end frees a slot, and the
// grant is due) is heard in the same drain, after the one that made it due, instead of costing a
// promise and a reaction of its own (one less per fire-and-forget task).

/** A promise reaction, not queueMicrotask (which makes an AsyncResource and a bound function per call). */
const SOON = Promise.resolve();

/** Items due, with who hears each; the arrays keep their room (no backing store per turn). */
const dueItems: unknown[] = [];
const dueHears: (((item: unknown) => void) | null)[] = [];
let dueCount = 0;

function deliver(): void {
  // An item that becomes due while these are heard is heard in this loop.
  for (let i = 0; i < dueCount; i++) {
    const item = dueItems[i];
    const hear = dueHears[i]!;
    dueItems[i] = null;
    dueHears[i] = null;
    try {
      hear(item);
    } catch (error) {
      // As an unhandled rejection of the promise it replaces would: loud, and the rest still hear theirs.
      void Promise.reject(error);
    }
  }
  dueCount = 0;
}

export class SoonBatch<T> {
  readonly #hear: (item: unknown) => void;

  /** `hear` is called with each item, a microtask after it became due. */
  constructor(hear: (item: T) => void) {
    this.#hear = hear as (item: unknown) => void;
  }

  /** `item` is heard in the next microtask (with every other item due by then, of any batch, in order). */
  add(item: T): void {
    dueItems[dueCount] = item;
    dueHears[dueCount] = this.#hear;
    if (dueCount++ === 0) void SOON.then(deliver);
  }
}
