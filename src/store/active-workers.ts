// The workers not yet terminal, in launch order: a list linked through the workers themselves
// (Worker.activePrev / activeNext, written here and nowhere else). A Set of them rehashed its
// table as fire and forget grew it to thousands and emptied it again every round (~100 bytes
// of garbage per task, measured), and its delete was among the largest costs left on a task's end.
import type { Worker } from './worker.js';

/** What readers of the active workers see: how many, and each in turn (the one visited may leave; no other may while visiting). */
export interface ActiveWorkerList extends Iterable<Worker> {
  readonly size: number;
  forEach(visit: (worker: Worker) => void): void;
}

export class ActiveWorkers implements ActiveWorkerList {
  #head: Worker | null = null;
  #tail: Worker | null = null;
  #size = 0;

  get size(): number {
    return this.#size;
  }

  /** `worker` is in the list. */
  has(worker: Worker): boolean {
    return worker.activePrev !== null || this.#head === worker;
  }

  /** Adds `worker` last; false (nothing done) if it is in the list already. */
  add(worker: Worker): boolean {
    if (this.has(worker)) return false;
    const tail = this.#tail;
    worker.activePrev = tail;
    worker.activeNext = null;
    if (tail) tail.activeNext = worker;
    else this.#head = worker;
    this.#tail = worker;
    this.#size++;
    return true;
  }

  /** Takes `worker` out; false (nothing done) if it was not in the list. */
  delete(worker: Worker): boolean {
    if (!this.has(worker)) return false;
    const { activePrev: prev, activeNext: next } = worker;
    if (prev) prev.activeNext = next;
    else this.#head = next;
    if (next) next.activePrev = prev;
    else this.#tail = prev;
    worker.activePrev = null;
    worker.activeNext = null;
    this.#size--;
    return true;
  }

  // The next worker is taken before each visit: the visited one may leave the list meanwhile.
  forEach(visit: (worker: Worker) => void): void {
    for (let worker = this.#head; worker !== null;) {
      const next: Worker | null = worker.activeNext;
      visit(worker);
      worker = next;
    }
  }

  *[Symbol.iterator](): Iterator<Worker> {
    for (let worker = this.#head; worker !== null;) {
      const next: Worker | null = worker.activeNext;
      yield worker;
      worker = next;
    }
  }
}
