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
  /** request() where the waiter is its own wait (a SlotRequest): no object of the queue's per start. */
  enqueue(request: SlotRequest): void;
  /** Holds every start not admitted yet (those with a slot go on) until resume(). */
  pause(): void;
  resume(): void;
  readonly paused: boolean;
  /** The start waits in the queue for a slot (it has none yet, and is not cancelled). */
  waiting(start: Abortable): boolean;
  /** A start's `held` became false: it may take a free slot now, in its place. */
  reconsider(): void;
}

/**
 * A start's wait for a slot, which is also its waiter: it hears the start's cancel itself (no
 * closure per wait). The launcher's start extends it, so that a queued start is one object, not
 * a start and an entry of the queue's (thousands wait at once in fire and forget, and every byte
 * of each is copied by the scavenges that come while they wait).
 */
export abstract class SlotRequest implements AbortListener, SlotWaiter {
  readonly start: Abortable;
  /** The queue it was requested from (set by enqueue). */
  slots: WorkerSlots | null = null;
  /** Once handed out (granted, or cancelled: null with `reason`), until it hears it. */
  slot: Slot | null = null;
  reason: unknown = null;
  /** Came while the whole queue was paused: it waits for resume() (those before it go on). */
  heldByPause = false;
  /** Granted or cancelled: no longer waiting (left in the array, skipped). */
  gone = false;

  constructor(start: Abortable) {
    this.start = start;
  }

  abstract granted(slot: Slot): void;
  abstract refused(reason: unknown): void;

  /** Cancelled while queued: its turn goes to the next at once. */
  aborted(reason: unknown): void {
    const slots = this.slots!;
    slots.left(this);
    this.reason = reason;
    slots.handOut(this);
    slots.reconsider();
  }
}

/** request()'s wait: a SlotRequest that passes what it hears to its waiter. */
class Entry extends SlotRequest {
  readonly #waiter: SlotWaiter;

  constructor(start: Abortable, waiter: SlotWaiter) {
    super(start);
    this.#waiter = waiter;
  }

  granted(slot: Slot): void {
    this.#waiter.granted(slot);
  }

  refused(reason: unknown): void {
    this.#waiter.refused(reason);
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
  #queue: (SlotRequest | null)[] = [];
  #head = 0;
  /**
   * Entries still waiting (in the queue, not gone). A start finds its own entry as its
   * abortListener (see waiting()): no map from start to entry to keep up per launch.
   */
  #waiting = 0;
  #paused = false;
  /** Entries handed out (granted or cancelled): their waiters hear it a microtask later, in order. */
  readonly #due = new SoonBatch<SlotRequest>((entry) => {
    if (entry.slot) entry.granted(entry.slot);
    else entry.refused(entry.reason);
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
    this.enqueue(new Entry(start, waiter));
  }

  enqueue(entry: SlotRequest): void {
    const { start } = entry;
    entry.slots = this;
    entry.heldByPause = this.#paused;
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
  handOut(entry: SlotRequest): void {
    this.#due.add(entry);
  }

  waiting(start: Abortable): boolean {
    const entry = start.abortListener;
    return !start.aborted && entry instanceof SlotRequest && entry.slots === this && !entry.gone;
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
  left(entry: SlotRequest): void {
    this.#leave(entry);
  }

  #leave(entry: SlotRequest): void {
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
      let next: SlotRequest | null = null;
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
