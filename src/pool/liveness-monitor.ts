// Notices a worker connection that has gone silent because the network died. A silent
// connection is normal (a long VACUUM says nothing for minutes), so silence alone proves
// nothing: after `timeoutMs` without a byte we ask the server, on another connection, about the
// worker's backend. If the server cannot be reached, or the backend is gone, or it is idle or
// blocked writing to us while nothing arrives, the connection is dropped and its task fails.
// TCP keepalive alone cannot do this in bounded time (Node cannot set its probe interval).
import type { BackendIdentity, WorkerConnection } from './worker-connection.js';

export interface BackendState extends BackendIdentity {
  readonly state: string | null;
  readonly waitEvent: string | null;
}

export class LivenessMonitor {
  readonly #timeoutMs: number;
  readonly #probe: (backends: readonly BackendIdentity[]) => Promise<BackendState[]>;
  /** Watched connections, with whether we are reading them (a full queue pauses reading). */
  readonly #watched = new Map<WorkerConnection, () => boolean>();
  #timer: NodeJS.Timeout | null = null;
  #checking = false;

  constructor(timeoutMs: number, probe: (backends: readonly BackendIdentity[]) => Promise<BackendState[]>) {
    this.#timeoutMs = timeoutMs;
    this.#probe = probe;
  }

  watch(connection: WorkerConnection, reading: () => boolean): void {
    if (this.#timeoutMs === 0) return;
    this.#watched.set(connection, reading);
    if (!this.#timer) {
      this.#timer = setInterval(() => void this.#check(), Math.max(50, this.#timeoutMs / 2));
      this.#timer.unref();
    }
  }

  unwatch(connection: WorkerConnection): void {
    this.#watched.delete(connection);
    if (this.#watched.size === 0) this.close();
  }

  close(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
  }

  async #check(): Promise<void> {
    if (this.#checking) return;
    const now = Date.now();
    const silent = [...this.#watched].filter(([connection, reading]) => reading() && !connection.failure && now - connection.lastReceivedAt >= this.#timeoutMs).map(([connection]) => connection);
    if (silent.length === 0) return;
    this.#checking = true;
    const asked = Date.now();
    try {
      let states: BackendState[];
      try {
        states = await this.#probe(silent.map(({ pid, started }) => ({ pid, started })));
      } catch (error) {
        for (const connection of silent) {
          if (connection.lastReceivedAt < asked) {
            connection.destroy(new Error(`lost contact with the server: nothing arrived for ${this.#timeoutMs} ms and the server did not answer a check (${(error as Error).message}); the worker's outcome is unknown`));
          }
        }
        return;
      }
      for (const connection of silent) {
        if (connection.lastReceivedAt >= asked) continue; // it spoke meanwhile
        const backend = states.find((s) => s.pid === connection.pid && s.started === connection.started);
        if (!backend) {
          connection.destroy(new Error(`lost the connection: the server no longer runs backend ${connection.pid}; the worker's outcome is unknown`));
        } else if (backend.state === 'idle' || backend.waitEvent === 'ClientWrite') {
          connection.destroy(new Error(`lost the connection: backend ${connection.pid} is ${backend.state === 'idle' ? 'idle' : 'blocked sending to us'} but nothing has arrived for ${this.#timeoutMs} ms; the worker's outcome is unknown`));
        }
      }
    } finally {
      this.#checking = false;
    }
  }
}
