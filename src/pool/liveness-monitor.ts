// Notices a worker connection that has gone silent because the network or the server died. A
// silent connection is normal (a long VACUUM says nothing for minutes; a full queue stops our
// reading on purpose; a long statement over a slow link takes a while to arrive), so silence
// alone proves nothing: after `timeoutMs` without a byte we ask the server, on the control
// connection, about the worker's backend, and act only on what is proven:
// - The server says it no longer runs the backend: nothing new can come. A connection we were
//   reading is dropped (its task fails with 08006); one we had paused is drained instead,
//   because its last rows and its end may be sitting in the kernel's buffers (bounded: nothing
//   new can come), and it is checked again as a reading connection.
// - The backend is blocked sending to us, or went idle after we sent the task, while nothing
//   arrives although we read: its answer is lost, the connection is dropped. A backend idle
//   since before the task was sent is still reading it (our bytes are on their way): that is
//   activity, not loss.
// - The server refuses the check (any ErrorResponse: 53300 too many connections, 28000 refused
//   login, ...): it is alive and we learnt nothing about the backend; nothing is dropped.
// - The server does not answer at all: a connection we were reading is dropped (08006, outcome
//   unknown). A paused one keeps its budget (a live server would fill the queue without bound):
//   we write a Flush on it instead, which is harmless on a live session and fails on a socket
//   whose peer is gone, so that such a connection fails (08006) on its own.
// TCP keepalive alone cannot do this in bounded time (Node cannot set its probe interval).
import pg from 'pg';
import type { BackendIdentity, WorkerConnection } from './worker-connection.js';

/** How the monitor sees what reads a watched connection (the worker's row queue). */
export interface Watch {
  /** True while a full queue has paused reading on purpose. */
  readonly paused: boolean;
  /** Read on regardless of the budget (the server side is gone). */
  unbound(): void;
}

export interface BackendState extends BackendIdentity {
  readonly state: string | null;
  readonly waitEvent: string | null;
  /** How long the backend has been in its state, by the server's clock, in ms (null: unknown). */
  readonly stateMs: number | null;
}

/** A connection's watch: what reads it and when the watch began (null between its tasks). */
interface Watched {
  watch: Watch | null;
  since: number;
}

export class LivenessMonitor {
  readonly #timeoutMs: number;
  readonly #probe: (backends: readonly BackendIdentity[]) => Promise<BackendState[]>;
  /**
   * One record per connection ever watched and not yet found closed, reused from task to task
   * (watch null between tasks): a map whose entries come and go with every task makes V8 grow and
   * shrink its table, and a record per task is garbage. Records of failed connections are dropped
   * at the next check (a failed connection never serves again), and all of them at close().
   */
  readonly #records = new Map<WorkerConnection, Watched>();
  #timer: NodeJS.Timeout | null = null;
  #checking = false;

  constructor(timeoutMs: number, probe: (backends: readonly BackendIdentity[]) => Promise<BackendState[]>) {
    this.#timeoutMs = timeoutMs;
    this.#probe = probe;
  }

  watch(connection: WorkerConnection, watch: Watch): void {
    if (this.#timeoutMs === 0) return;
    let record = this.#records.get(connection);
    if (record === undefined) this.#records.set(connection, (record = { watch: null, since: 0 }));
    record.watch = watch;
    record.since = Date.now();
    if (!this.#timer) {
      this.#timer = setInterval(() => void this.#check(), Math.max(50, this.#timeoutMs / 2));
      this.#timer.unref();
    }
  }

  unwatch(connection: WorkerConnection): void {
    // The timer stays (unref'd, cheap) until close(): busy instances would churn it otherwise.
    const record = this.#records.get(connection);
    if (record !== undefined) record.watch = null;
  }

  /** Connections it keeps a record of (watched now, or since the last check): for tests and diagnostics. */
  get size(): number {
    return this.#records.size;
  }

  close(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    this.#records.clear();
  }

  async #check(): Promise<void> {
    if (this.#checking) return;
    const now = Date.now();
    const silent: [WorkerConnection, Watch, number][] = [];
    for (const [connection, { watch, since }] of this.#records) {
      if (watch === null) {
        if (connection.failure) this.#records.delete(connection); // it never serves again
        continue;
      }
      // Silence counts from the task's start: a warm connection may have idled for long before.
      if (!connection.failure && now - Math.max(connection.lastReceivedAt, since) >= this.#timeoutMs) silent.push([connection, watch, since]);
    }
    if (silent.length === 0) return;
    this.#checking = true;
    const asked = Date.now();
    const lost = (connection: WorkerConnection, watch: Watch, why: string) => {
      if (!watch.paused) connection.destroy(new Error(`lost the connection: ${why}; the worker's outcome is unknown`));
      else watch.unbound();
    };
    try {
      let states: BackendState[];
      try {
        states = await this.#probe(silent.map(([{ pid, started }]) => ({ pid, started })));
      } catch (error) {
        const answered = error instanceof pg.DatabaseError;
        for (const [connection, watch] of silent) {
          if (connection.failure || connection.lastReceivedAt >= asked) continue;
          if (watch.paused) connection.poke();
          else if (!answered)
            lost(connection, watch, `nothing arrived for ${this.#timeoutMs} ms and the server did not answer a check (${(error as Error).message})`);
        }
        return;
      }
      for (const [connection, watch, since] of silent) {
        if (connection.lastReceivedAt >= asked) continue; // it spoke meanwhile
        const backend = states.find((s) => s.pid === connection.pid && s.started === connection.started);
        if (!backend) {
          lost(connection, watch, `the server no longer runs backend ${connection.pid}`);
        } else if (!watch.paused && backend.waitEvent === 'ClientWrite') {
          lost(connection, watch, `backend ${connection.pid} is blocked sending to us but nothing has arrived for ${this.#timeoutMs} ms`);
        } else if (!watch.paused && backend.state === 'idle' && (backend.stateMs === null || asked - backend.stateMs > since)) {
          // Idle since after we sent the task (by the server's clock, measured back from before we
          // asked): the task ran, and its answer did not reach us.
          lost(connection, watch, `backend ${connection.pid} is idle but nothing has arrived for ${this.#timeoutMs} ms`);
        }
      }
    } finally {
      this.#checking = false;
    }
  }
}
