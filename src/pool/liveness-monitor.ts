// Notices a worker connection that has gone silent because the network or the server died. A
// silent connection is normal (a long VACUUM says nothing for minutes; a full queue stops our
// reading on purpose), so silence alone proves nothing: after `timeoutMs` without a byte we ask
// the server, on another connection, about the worker's backend.
// - The server cannot be reached, or the backend is gone: a connection we were reading is
//   dropped (its task fails with 08006); one we had paused is drained instead, because its
//   last rows and its end may be sitting in the kernel's buffers (they are bounded: nothing new
//   can come), and it is checked again as a reading connection.
// - The backend is idle, or blocked sending to us, while nothing arrives although we read: the
//   connection is dropped.
// TCP keepalive alone cannot do this in bounded time (Node cannot set its probe interval).
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
}

export class LivenessMonitor {
  readonly #timeoutMs: number;
  readonly #probe: (backends: readonly BackendIdentity[]) => Promise<BackendState[]>;
  /** Watched connections, with what reads them and when the watch began. */
  readonly #watched = new Map<WorkerConnection, { readonly watch: Watch; readonly since: number }>();
  #timer: NodeJS.Timeout | null = null;
  #checking = false;

  constructor(timeoutMs: number, probe: (backends: readonly BackendIdentity[]) => Promise<BackendState[]>) {
    this.#timeoutMs = timeoutMs;
    this.#probe = probe;
  }

  watch(connection: WorkerConnection, watch: Watch): void {
    if (this.#timeoutMs === 0) return;
    this.#watched.set(connection, { watch, since: Date.now() });
    if (!this.#timer) {
      this.#timer = setInterval(() => void this.#check(), Math.max(50, this.#timeoutMs / 2));
      this.#timer.unref();
    }
  }

  unwatch(connection: WorkerConnection): void {
    // The timer stays (unref'd, cheap) until close(): busy instances would churn it otherwise.
    this.#watched.delete(connection);
  }

  close(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
  }

  async #check(): Promise<void> {
    if (this.#checking || this.#watched.size === 0) return;
    const now = Date.now();
    // Silence counts from the task's start: a warm connection may have idled for long before.
    const silent = [...this.#watched]
      .filter(([connection, { since }]) => !connection.failure && now - Math.max(connection.lastReceivedAt, since) >= this.#timeoutMs)
      .map(([connection, { watch }]) => [connection, watch] as const);
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
        for (const [connection, watch] of silent) {
          if (connection.lastReceivedAt < asked) lost(connection, watch, `nothing arrived for ${this.#timeoutMs} ms and the server did not answer a check (${(error as Error).message})`);
        }
        return;
      }
      for (const [connection, watch] of silent) {
        if (connection.lastReceivedAt >= asked) continue; // it spoke meanwhile
        const backend = states.find((s) => s.pid === connection.pid && s.started === connection.started);
        if (!backend) {
          lost(connection, watch, `the server no longer runs backend ${connection.pid}`);
        } else if (!watch.paused && (backend.state === 'idle' || backend.waitEvent === 'ClientWrite')) {
          lost(connection, watch, `backend ${connection.pid} is ${backend.state === 'idle' ? 'idle' : 'blocked sending to us'} but nothing has arrived for ${this.#timeoutMs} ms`);
        }
      }
    } finally {
      this.#checking = false;
    }
  }
}
