// The backend monitor: what the server says about the backends of running workers, asked on the
// control connection. Two questions, each one query for all the workers it concerns:
// - liveness (pool/liveness-monitor.ts): is the backend of a silent connection still there?
// - observation (BackendObserver, below): what is each running backend doing? Its phase and
//   fraction done from pg_stat_progress_*, its wait event, the pids blocking it. list() shows the
//   answer; it reaches the worker record as an 'observed' change.
// The observation costs nothing until a worker has run for a second: a start arms at most one
// timer (none while one is armed), a tick that finds nothing running disarms it, and only a tick
// that finds a worker running for a second or more sends the query; then once a second.
import { OBSERVE_BACKENDS_SQL, PROBE_BACKENDS_SQL } from '../catalog.js';
import { CLIENT_WRITE, READER_PHASE, type Observation } from '../core/observation.js';
import type { ControlConnection } from '../pool/control-connection.js';
import { LivenessMonitor, type BackendState } from '../pool/liveness-monitor.js';
import type { BackendIdentity } from '../pool/worker-connection.js';
import type { Worker } from '../store/worker.js';
import type { WorkerStore } from '../store/worker-store.js';

interface ProbeRow {
  pid: number;
  started: string;
  state: string | null;
  wait_event: string | null;
  state_ms: number | null;
}

export function backendMonitor(livenessTimeoutMs: number, control: ControlConnection): LivenessMonitor {
  return new LivenessMonitor(livenessTimeoutMs, async (backends: readonly BackendIdentity[]): Promise<BackendState[]> => {
    const { rows } = await control.query<ProbeRow>(PROBE_BACKENDS_SQL, [backends.map((b) => b.pid)]);
    return rows.map((row) => ({ pid: row.pid, started: row.started, state: row.state, waitEvent: row.wait_event, stateMs: row.state_ms }));
  });
}

interface ObserveRow {
  pid: number;
  started: string;
  wait_event_type: string | null;
  wait_event: string | null;
  blocked_by: number[];
  phase: string | null;
  fraction: number | null;
}

/** How often running workers are observed, and how long one must have run before the first poll. */
export const OBSERVE_INTERVAL_MS = 1000;

/** Counts of every observer of this process, for tests and diagnostics. */
export const observerCounts = { ticks: 0, polls: 0, armed: 0 };

export class BackendObserver {
  readonly #control: ControlConnection;
  readonly #store: Pick<WorkerStore, 'active'>;
  /** A tick is scheduled or running (a start then has nothing to do). */
  #due = false;
  #timer: NodeJS.Timeout | null = null;
  #closed = false;

  constructor(control: ControlConnection, store: Pick<WorkerStore, 'active'>) {
    this.#control = control;
    this.#store = store;
  }

  /** A worker started: a tick is due within a second. No I/O; at most one timer per instance. */
  started(): void {
    if (this.#due || this.#closed) return;
    this.#due = true;
    observerCounts.armed++;
    this.#schedule(OBSERVE_INTERVAL_MS);
  }

  /** Stops polling (close()); a poll under way finishes on the control connection, which close() awaits. */
  close(): void {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    this.#idle();
  }

  #schedule(ms: number): void {
    this.#timer = setTimeout(() => void this.#tick(), ms);
    // Observing is no reason to keep the process alive (a running worker's connection is).
    this.#timer.unref();
  }

  #idle(): void {
    if (!this.#due) return;
    this.#due = false;
    observerCounts.armed--;
  }

  async #tick(): Promise<void> {
    this.#timer = null;
    observerCounts.ticks++;
    const now = Date.now();
    const running: Worker[] = [];
    let oldest = Infinity;
    // forEach, not for-of: this runs once a second, unoptimized, over every active worker (fire
    // and forget queues thousands), and an unoptimized for-of makes an iterator result per worker.
    this.#store.active.forEach((worker) => {
      if (worker.state === 'pending' || worker.startedAt === null || worker.backendStart === null) return;
      running.push(worker);
      oldest = Math.min(oldest, worker.startedAt);
    });
    if (running.length === 0) return this.#idle();
    // Nothing has run for a second yet: look again when the oldest will have.
    if (now - oldest < OBSERVE_INTERVAL_MS) return this.#schedule(oldest + OBSERVE_INTERVAL_MS - now);
    try {
      await this.#poll(running);
    } catch {
      // The server refused or did not answer: list() keeps the last answer; liveness acts on silence.
    }
    if (this.#closed) return this.#idle();
    this.#schedule(Math.max(0, OBSERVE_INTERVAL_MS - (Date.now() - now)));
  }

  async #poll(running: readonly Worker[]): Promise<void> {
    observerCounts.polls++;
    const { rows } = await this.#control.query<ObserveRow>(OBSERVE_BACKENDS_SQL, [running.map((w) => w.pid)]);
    const byPid = new Map(rows.map((row) => [row.pid, row]));
    for (const worker of running) {
      const row = byPid.get(worker.pid);
      // A backend gone, or a pid now another backend's (the worker moved on): nothing to say.
      if (!row || row.started !== worker.backendStart) continue;
      worker.apply({ kind: 'observed', observation: observation(row, worker.queue.paused) });
    }
  }
}

function observation(row: ObserveRow, queueFull: boolean): Observation {
  const waitEvent = row.wait_event_type && row.wait_event ? `${row.wait_event_type}:${row.wait_event}` : null;
  const reader = waitEvent === CLIENT_WRITE && queueFull;
  return {
    phase: row.phase ?? (reader ? READER_PHASE : null),
    fractionCompleted: row.fraction,
    waitEvent,
    blockedBy: row.blocked_by,
  };
}
