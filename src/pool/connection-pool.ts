// Worker connections, kept warm between tasks. Every task is followed on the wire by DISCARD ALL
// (written with it, so it costs no round trip of its own); the connection takes another task
// once the server has confirmed that reset. A task of plain DML defers its reset instead: the
// connection is available at once, and the next task carries the reset as its prefix (or runs it
// first); one left idle runs it a turn of the event loop later. One whose task never reached the server (refused
// SQL, failed settings) is reset explicitly. A connection that failed, was terminated, saw a
// cancel or hit a protocol error is never reused.
//
// Bound: workers hold at most `maxConnections` (the instance's maxWorkers) connections. A
// launch takes a ready connection if there is one; else it opens a new one while the sessions
// (in use, idle, being reset, opening, closing) are under the bound; else it waits for the next
// reset to finish (one round trip, where a new connection costs a fork and authentication), or,
// when only closing connections fill the bound, opens one anyway.
//
// A warm connection can die while it idles without our noticing: the server's FATAL or the end
// of the socket may sit unread while the event loop is busy, and a link a middlebox forgot
// sends nothing at all. One idle for CHECK_AFTER_IDLE_MS or more is checked with a round trip
// before it gets a task (a dead one is closed and a new connection opened instead), so such a
// task never goes into a dead connection; one used again sooner is not, so back-to-back tasks
// pay nothing. (A task that still meets a dead connection may run again: see the launch path.)
import { settlesWithin } from './deadline.js';
import type { WorkerConnection } from './worker-connection.js';

/** A warm connection that has heard nothing from the server this long is checked before use. */
export const CHECK_AFTER_IDLE_MS = 500;

export interface ConnectionPoolOptions {
  readonly maxConnections: number;
  /** Reset connections kept for reuse; 0 closes every connection after its task. */
  readonly maxIdle: number;
  /** Idle connections kept open whatever their age. */
  readonly minIdle: number;
  /** An idle connection older than this is closed (0: never). */
  readonly idleTimeoutMs: number;
  readonly connect: () => Promise<WorkerConnection>;
}

interface Waiter {
  readonly fresh: boolean;
  resolve(connection: WorkerConnection): void;
  reject(error: Error): void;
}

interface IdleEntry {
  readonly connection: WorkerConnection;
  readonly since: number;
}

export class ConnectionPool {
  readonly #options: ConnectionPoolOptions;
  readonly #open = new Set<WorkerConnection>();
  /** Connections being reset, with the reset under way. */
  readonly #resetting = new Map<WorkerConnection, Promise<void>>();
  readonly #closing = new Set<Promise<void>>();
  /** Connections being opened (close() waits for them: none may outlive it). */
  readonly #opening = new Set<Promise<WorkerConnection>>();
  #idle: IdleEntry[] = []; // most recently used last
  #waiters: Waiter[] = [];
  #timer: NodeJS.Timeout | null = null;
  #closed = false;
  /** Connections parked with a deferred reset since the last turn (see #park). */
  #toReset: WorkerConnection[] = [];
  /** The other list, swapped in while one is being reset: no array per turn. */
  #spare: WorkerConnection[] = [];
  readonly #resetParked = (): void => {
    const parked = this.#toReset;
    this.#toReset = this.#spare;
    for (let i = 0; i < parked.length; i++) this.#resetIdle(parked[i]!);
    parked.length = 0;
    this.#spare = parked;
  };

  /** An idle connection broke: it leaves the idle set (one function for all, not a closure per park). */
  readonly #idleFailed = (_error: Error, connection: WorkerConnection): void => {
    this.#idle = this.#idle.filter((entry) => entry.connection !== connection);
    void this.#close(connection);
  };

  constructor(options: ConnectionPoolOptions) {
    this.#options = options;
  }

  /** Connections open now: running a task, resetting, or idle. */
  get size(): number {
    return this.#open.size;
  }

  /** Idle connections, ready for a task. */
  get idle(): number {
    return this.#idle.length;
  }

  /** A warm connection right now, or null (then use acquire(), which also checks idle ones). */
  take(): WorkerConnection | null {
    if (this.#closed) return null;
    for (let entry = this.#idle.at(-1); entry; entry = this.#idle.at(-1)) {
      if (!entry.connection.failure && needsCheck(entry.connection)) return null;
      this.#idle.pop();
      if (!entry.connection.failure) return this.#checkout(entry.connection);
      void this.#close(entry.connection);
    }
    return null;
  }

  /**
   * The most recently used idle connection once a round trip proved it alive, or null (none, or
   * it was dead: it is closed; the others, older, are checked when their turn comes).
   */
  async #takeChecked(): Promise<WorkerConnection | null> {
    const entry = this.#idle.pop();
    if (!entry) return null;
    const { connection } = entry;
    connection.onFailure = null;
    connection.ref(); // the launch waits for this check
    try {
      await connection.check();
    } catch {
      void this.#close(connection);
      return null;
    }
    if (this.#closed) {
      void this.#close(connection);
      throw new Error('connection pool closed');
    }
    return this.#checkout(connection);
  }

  async acquire(fresh = false): Promise<WorkerConnection> {
    if (this.#closed) throw new Error('connection pool closed');
    if (fresh) {
      // A fresh connection replaces an idle one rather than exceed the bound.
      if (this.#sessions >= this.#options.maxConnections && this.#idle.length) void this.#close(this.#idle.shift()!.connection);
    } else {
      const warm = this.take() ?? (await this.#takeChecked());
      if (warm) return warm;
      if (this.#closed) throw new Error('connection pool closed');
    }
    if (this.#sessions >= this.#options.maxConnections && this.#resetting.size > this.#waiters.length) {
      return new Promise((resolve, reject) => this.#waiters.push({ fresh, resolve, reject }));
    }
    return this.#connect();
  }

  /** Server sessions of ours: in use, idle, being reset, opening or closing. */
  get #sessions(): number {
    return this.#open.size + this.#opening.size + this.#closing.size;
  }

  async #connect(): Promise<WorkerConnection> {
    const opening = this.#options.connect();
    this.#opening.add(opening);
    let connection: WorkerConnection;
    try {
      connection = await opening;
    } finally {
      this.#opening.delete(opening);
    }
    if (this.#closed) {
      this.#open.add(connection);
      void this.#close(connection);
      throw new Error('connection pool closed');
    }
    this.#open.add(connection);
    return this.#checkout(connection);
  }

  /** Takes back a connection after its task; `reusable` false closes it. */
  release(connection: WorkerConnection, reusable: boolean): void {
    // A connection is released once per checkout; a second release must not park it twice.
    if (!connection.lent) return;
    connection.lent = false;
    if (!reusable || this.#closed || connection.failure || this.#options.maxIdle === 0) {
      void this.#close(connection);
      return;
    }
    if (connection.ready) return this.#available(connection);
    this.#resetThenAvailable(connection);
  }

  /** Resets the connection (it is neither idle nor checked out meanwhile), then makes it available. */
  #resetThenAvailable(connection: WorkerConnection): void {
    const reset = connection.reset();
    this.#resetting.set(
      connection,
      reset.catch(() => {}),
    );
    void reset.then(
      () => {
        this.#resetting.delete(connection);
        this.#available(connection);
      },
      () => {
        this.#resetting.delete(connection);
        void this.#close(connection);
        // Whoever waited for this connection opens a new one instead.
        const waiter = this.#waiters.shift();
        if (waiter) this.#connect().then(waiter.resolve, waiter.reject);
      },
    );
  }

  /** A clean connection: to the first waiter, else to the idle set (or closed if that is full). */
  #available(connection: WorkerConnection): void {
    const waiter = this.#waiters.shift();
    if (waiter?.fresh) {
      void this.#close(connection);
      void this.#connect().then(waiter.resolve, waiter.reject);
    } else if (waiter) {
      waiter.resolve(this.#checkout(connection));
    } else if (this.#closed || this.#idle.length >= this.#options.maxIdle) {
      void this.#close(connection);
    } else {
      this.#park(connection);
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    for (const waiter of this.#waiters.splice(0)) waiter.reject(new Error('connection pool closed'));
    // Let resets in flight finish (one round trip) so their connections close politely, with a
    // Terminate, rather than as a dropped socket the server only notices later.
    await settlesWithin(Promise.all(this.#resetting.values()), 5000);
    // Connections still being opened are closed as soon as they are (see #connect).
    await Promise.allSettled([...this.#opening]);
    this.#idle = [];
    for (const connection of this.#open) void this.#close(connection);
    while (this.#closing.size) await Promise.all(this.#closing);
  }

  #checkout(connection: WorkerConnection): WorkerConnection {
    connection.onFailure = null;
    connection.ref();
    connection.checkedOut();
    connection.lent = true; // only a connection lent out (running a task) can be released
    return connection;
  }

  /** Idle connections do not keep the process alive; one that breaks while idle is dropped. */
  #park(connection: WorkerConnection): void {
    connection.unref();
    connection.onFailure = this.#idleFailed;
    this.#idle.push({ connection, since: Date.now() });
    this.#scheduleSweep();
    // A reset the last task deferred (worker-connection.ts) waits one turn of the event loop
    // for a next task to carry it as its prefix; then the idle connection runs it itself, so
    // that nothing of the last task (a lock, a LISTEN, its tag) outlives it for long.
    // One immediate for every connection parked in this turn, not one (and a closure) each.
    if (connection.needsReset) {
      this.#toReset.push(connection);
      if (this.#toReset.length === 1) setImmediate(this.#resetParked);
    }
  }

  #resetIdle(connection: WorkerConnection): void {
    if (this.#closed || !connection.needsReset) return;
    const index = this.#idle.findIndex((entry) => entry.connection === connection);
    if (index === -1) return; // taken meanwhile: its task carries the reset
    this.#idle.splice(index, 1);
    connection.onFailure = null;
    this.#resetThenAvailable(connection);
  }

  #scheduleSweep(): void {
    const { idleTimeoutMs, minIdle } = this.#options;
    if (this.#timer || idleTimeoutMs === 0 || this.#idle.length <= minIdle) return;
    const oldest = this.#idle[0]!.since;
    this.#timer = setTimeout(
      () => {
        this.#timer = null;
        const now = Date.now();
        while (this.#idle.length > minIdle && now - this.#idle[0]!.since >= idleTimeoutMs) {
          void this.#close(this.#idle.shift()!.connection);
        }
        if (this.#idle.length) this.#scheduleSweep();
      },
      Math.max(0, oldest + idleTimeoutMs - Date.now()) + 5,
    );
    this.#timer.unref();
  }

  #close(connection: WorkerConnection): Promise<void> {
    this.#open.delete(connection);
    connection.onFailure = null;
    const closing = connection.close();
    this.#closing.add(closing);
    void closing.finally(() => this.#closing.delete(closing));
    return closing;
  }
}

/** Idle long enough to have died unnoticed (see the top of this file). */
function needsCheck(connection: WorkerConnection): boolean {
  return Date.now() - connection.lastReceivedAt >= CHECK_AFTER_IDLE_MS;
}
