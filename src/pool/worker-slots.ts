// Admission: at most `maxWorkers` workers hold a slot at once; a slot is held from launch until
// the worker reaches a terminal state (not until its rows are read). With whenFull 'queue',
// launches wait in FIFO order and an aborted wait gives its turn back at once. The launcher sees
// only the Admission interface: pending work can be held, the whole queue (pause()) or one start
// at a time (a paused worker, whose `held` is true): a held start keeps its place in the queue
// while the starts behind it go on, and takes the next free slot once it is let go (reconsider()).
// The queue is ours, not p-limit's: p-limit cannot skip a held entry and keep its place.

import type { AbortListener } from '../core/abort.js';
import { SoonBatch } from '../core/soon-batch.js';

export type { AbortListener };

/**
 * What waits for a slot (a worker's start). A queued wait hears a cancel through one callback,
 * not an AbortSignal listener: fire and forget queues every launch, and an EventTarget listener
 * with its signal costs ~5 µs a launch there (measured), more than the rest of the queueing.
 */
export interface Abortable {
  readonly aborted: boolean;
  /** Why it was cancelled (a PGBG_ABORTED error), once aborted. */
  readonly abortReason: unknown;
  /** `listener.aborted` is called once if the start is cancelled while this waits; null clears it. */
  whenAborted(listener: AbortListener | null): void;
  /** The listener whenAborted set last (a queued start's: its place in the queue), or null. */
  readonly abortListener: AbortListener | null;
  /** Held where it is in the queue (a paused worker): it gets no slot until this is false again. */
  readonly held?: boolean;
}

export interface Slot {
  /** Gives the slot back; calling it more than once is harmless. */
  release(): void;
}

/**
 * Hears the end of one start's wait for a slot (request): an object, so that a start that
 * waits costs no promise, no closure and no async frame of its own. It is called a microtask
 * after the grant or the cancel, never inside the call that freed the slot or cancelled.
 */
export interface SlotWaiter {
  granted(slot: Slot): void;
  /** The start was cancelled first: `reason` is its abortReason. */
  refused(reason: unknown): void;
}

export interface Admission {
  /** Resolves with a slot, or rejects with the signal's reason if it aborts first. */
  acquire(start: Abortable): Promise<Slot>;
  /** acquire() without the promise: `waiter` hears the slot, or the cancel, a microtask later. */
  request(start: Abortable, waiter: SlotWaiter): void;
  /** Holds every start not admitted yet (those with a slot go on) until resume(). */
  pause(): void;
  resume(): void;
  readonly paused: boolean;
  /** The start waits in the queue for a slot (it has none yet, and is not cancelled). */
  waiting(start: Abortable): boolean;
  /** A start's `held` became false: it may take a free slot now, in its place. */
  reconsider(): void;
}

/** A start waiting for a slot; it hears the start's cancel itself (no closure per wait). */
class Entry implements AbortListener {
  readonly start: Abortable;
  readonly waiter: SlotWaiter;
  readonly slots: WorkerSlots;
  /** Once handed out (granted, or cancelled: null with `reason`), until its waiter hears it. */
  slot: Slot | null = null;
  reason: unknown = null;
  /** Came while the whole queue was paused: it waits for resume() (those before it go on). */
  heldByPause: boolean;
  /** Granted or cancelled: no longer waiting (left in the array, skipped). */
  gone = false;

  constructor(slots: WorkerSlots, start: Abortable, waiter: SlotWaiter, heldByPause: boolean) {
    this.slots = slots;
    this.start = start;
    this.waiter = waiter;
    this.heldByPause = heldByPause;
  }

  /** Cancelled while queued: its turn goes to the next at once. */
  aborted(reason: unknown): void {
    this.slots.left(this);
    this.reason = reason;
    this.slots.handOut(this);
    this.slots.reconsider();
  }
}

export class WorkerSlots implements Admission {
  readonly #max: number;
  #inUse = 0;
  /**
   * Starts waiting for a slot, in launch order, from #head on; held ones keep their place, and
   * entries that are gone are skipped (and compacted away), so a grant costs O(1) plus the held
   * entries ahead of it. The slots before #head are null: a started worker is not kept alive by
   * the queue it left (thousands wait and start in fire and forget, and every one kept would be
   * copied by the next scavenge).
   */
  #queue: (Entry | null)[] = [];
  #head = 0;
  /**
   * Entries still waiting (in the queue, not gone). A start finds its own entry as its
   * abortListener (see waiting()): no map from start to entry to keep up per launch.
   */
  #waiting = 0;
  #paused = false;
  /** Entries handed out (granted or cancelled): their waiters hear it a microtask later, in order. */
  readonly #due = new SoonBatch<Entry>((entry) => {
    if (entry.slot) entry.waiter.granted(entry.slot);
    else entry.waiter.refused(entry.reason);
  });

  constructor(maxWorkers: number) {
    this.#max = maxWorkers;
  }

  get paused(): boolean {
    return this.#paused;
  }

  acquire(start: Abortable): Promise<Slot> {
    if (start.aborted) return Promise.reject(start.abortReason);
    if (this.#freeFor(start)) {
      this.#inUse++;
      return Promise.resolve(this.#slot());
    }
    return new Promise<Slot>((resolve, reject) => this.request(start, { granted: resolve, refused: reject }));
  }

  request(start: Abortable, waiter: SlotWaiter): void {
    const entry = new Entry(this, start, waiter, this.#paused);
    if (start.aborted) {
      entry.reason = start.abortReason;
      this.handOut(entry);
      return;
    }
    if (this.#freeFor(start)) {
      this.#inUse++;
      entry.slot = this.#slot();
      this.handOut(entry);
      return;
    }
    start.whenAborted(entry);
    this.#queue.push(entry);
    this.#waiting++;
    this.#pump();
  }

  /** Nobody waits and a slot is free: what #pump would grant `start` at once, without queueing it. */
  #freeFor(start: Abortable): boolean {
    return this.#inUse < this.#max && this.#waiting === 0 && !this.#paused && start.held !== true;
  }

  /** The entry's waiter hears its slot (or its cancel) in the next microtask (see #due). */
  handOut(entry: Entry): void {
    this.#due.add(entry);
  }

  waiting(start: Abortable): boolean {
    const entry = start.abortListener;
    return !start.aborted && entry instanceof Entry && entry.slots === this && !entry.gone;
  }

  reconsider(): void {
    this.#pump();
  }

  pause(): void {
    this.#paused = true;
  }

  resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    for (let i = this.#head; i < this.#queue.length; i++) this.#queue[i]!.heldByPause = false;
    this.#pump();
  }

  /** A queued entry was cancelled (Entry.aborted). */
  left(entry: Entry): void {
    this.#leave(entry);
  }

  #leave(entry: Entry): void {
    if (entry.gone) return;
    entry.gone = true;
    this.#waiting--;
  }

  /** A slot just counted in #inUse. */
  #slot(): Slot {
    return new GrantedSlot(this);
  }

  /** A granted slot came back (GrantedSlot.release, once per slot). */
  freed(): void {
    this.#inUse--;
    this.#pump();
  }

  /** Hands free slots to the first starts that are not held, in order. */
  #pump(): void {
    while (this.#inUse < this.#max) {
      // Entries gone at the front go for good; held ones stay where they are.
      while (this.#head < this.#queue.length && this.#queue[this.#head]!.gone) this.#queue[this.#head++] = null;
      let next: Entry | null = null;
      for (let i = this.#head; i < this.#queue.length; i++) {
        const entry = this.#queue[i]!;
        if (entry.gone || entry.heldByPause || entry.start.held === true) continue;
        next = entry;
        break;
      }
      if (!next) break;
      this.#leave(next);
      next.start.whenAborted(null);
      this.#inUse++;
      next.slot = this.#slot();
      this.handOut(next);
    }
    if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
  }
}

/** One granted slot: an object with a flag, not a closure and its context, per worker. */
class GrantedSlot implements Slot {
  #owner: WorkerSlots | null;

  constructor(owner: WorkerSlots) {
    this.#owner = owner;
  }

  release(): void {
    const owner = this.#owner;
    if (owner === null) return;
    this.#owner = null;
    owner.freed();
  }
}
