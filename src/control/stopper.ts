// Stopping a worker: a cancel request first (by protocol, else pg_cancel_backend), then after
// `graceMs` its backend is terminated, always named by pid and start time, retried until the
// control deadline. `cancel()` resolves only once the work has stopped; when no path reached the
// backend it rejects with PGBG_CANCEL_FAILED and the worker says outcome unknown. Behind a pooler
// a pid is signalled only while it is provably ours (see pool/pooler.ts). A job's root has no
// backend: its stop is the stop of every active subtask (with the same grace), then its own end.
import { BACKEND_EXISTS_SQL, CANCEL_BACKEND_SQL, TERMINATE_BACKEND_SQL } from '../catalog.js';
import { PgBackgroundError } from '../errors.js';
import type { CancelReason } from '../api/types.js';
import { sendCancelRequest } from '../pg/index.js';
import type { ControlConnection } from '../pool/control-connection.js';
import type { WorkerConnection } from '../pool/worker-connection.js';
import { CONNECTION_FAILURE } from '../results/error-info.js';
import type { Worker } from '../store/worker.js';

/** Pause between attempts to reach a backend to cancel or terminate (unless it ends first). */
const STOP_RETRY_MS = 100;
/** First pause before a delivered cancel request is sent again (it doubles each time). */
const CANCEL_RESEND_MS = 200;

export interface StopperDeps {
  /** The connection of each worker past its start (between attach and completion). */
  readonly running: ReadonlyMap<Worker, WorkerConnection>;
  readonly control: ControlConnection;
  /** Deadline of every control request (and of a terminate's effect). */
  readonly controlTimeoutMs: number;
}

export class Stopper {
  readonly #deps: StopperDeps;
  /** The stop under way for each worker: later calls join the first. */
  readonly #stopping = new WeakMap<Worker, Promise<void>>();

  constructor(deps: StopperDeps) {
    this.#deps = deps;
  }

  /** Cancels a worker (once; later calls join the first) and resolves when it is terminal. */
  stop(worker: Worker, reason: CancelReason, graceMs: number): Promise<void> {
    if (!worker.active) return Promise.resolve();
    worker.apply({ kind: 'cancel-requested', reason });
    let stopping = this.#stopping.get(worker);
    if (!stopping) this.#stopping.set(worker, (stopping = this.#halt(worker, graceMs)));
    return stopping;
  }

  /**
   * Stops every one of `workers`; every stop runs to its end, then the first that could not be
   * proven (PGBG_CANCEL_FAILED) is the rejection. Resolves with how many.
   */
  async stopAll(workers: readonly Worker[], reason: CancelReason, graceMs: number): Promise<number> {
    const stops = await Promise.allSettled(workers.map((worker) => this.stop(worker, reason, graceMs)));
    const failure = stops.find((stop) => stop.status === 'rejected');
    if (failure) throw failure.reason;
    return workers.length;
  }

  async #halt(worker: Worker, graceMs: number): Promise<void> {
    if (worker.children !== null) return this.#haltTree(worker, graceMs);
    const connection = worker.state === 'pending' ? undefined : this.#deps.running.get(worker);
    if (!connection?.signalSafe) {
      // Nothing to signal: a pending start (the cancel request ends its wait for a slot or a
      // connection), the gap between a task's two tries (the cancel stops the second), or a
      // pinned task whose transaction is being ended behind a pooler (its COMMIT is on the way
      // within the connection's deadline, and the backend may already serve someone else).
      await worker.whenTerminal;
      return;
    }
    const deadline = Date.now() + graceMs;
    let terminated = false;
    if (graceMs > 0) await this.#requestCancel(worker, connection, deadline);
    if (!(await worker.waitTerminal(Math.max(0, deadline - Date.now())))) terminated = await this.#terminate(worker, connection);
    // The worker has ended; but a connection that broke without the server's answer (dropped
    // here or by the liveness check) proves no stop, unless our terminate reached the backend.
    const { error } = worker;
    if (worker.state === 'error' && error?.sqlstate === CONNECTION_FAILURE && !terminated) {
      throw new PgBackgroundError('PGBG_CANCEL_FAILED', `cancel() could not stop the worker: ${error.message}`, {
        pid: worker.pid,
        cookie: worker.cookie,
        label: worker.label,
        sqlstate: CONNECTION_FAILURE,
      });
    }
  }

  /**
   * A job's root: its cancel request (already applied) aborted ctx.signal and refuses new
   * subtasks; every active subtask is stopped for the same reason and grace, and the root ends
   * once they all are terminal (the job's runner decides its state). A subtask whose stop could
   * not be proven makes this reject like its own cancel would.
   */
  async #haltTree(root: Worker, graceMs: number): Promise<void> {
    const reason = root.canceledBy ?? 'cancel';
    const subtasks = root.children!.filter((child) => child.active);
    const stops = await Promise.allSettled(subtasks.map((child) => this.stop(child, reason, graceMs)));
    await root.whenTerminal;
    const failure = stops.find((stop) => stop.status === 'rejected');
    if (failure) throw failure.reason;
  }

  /**
   * Asks the server to cancel the worker's statement, by protocol request and else by
   * pg_cancel_backend on the control connection, until the worker ends or `deadline` passes. A
   * cancel that reaches the backend before its statement started (behind a pooler, or while the
   * task is still on its way) cancels nothing, so a delivered one is sent again after a pause
   * that doubles each time. Harmless: a connection that saw a cancel request never serves again.
   */
  async #requestCancel(worker: Worker, connection: WorkerConnection, deadline: number): Promise<void> {
    const target = connection.cancelTarget;
    const timeLeft = () => Math.min(deadline - Date.now(), this.#deps.controlTimeoutMs);
    let pause = CANCEL_RESEND_MS;
    while (worker.active && timeLeft() > 0 && connection.signalSafe) {
      let delivered = false;
      try {
        if (!target) throw new Error('no cancel key');
        await sendCancelRequest(target, timeLeft());
        delivered = true;
      } catch {
        // Not delivered (a pooler, a proxy, a network fault): ask the server directly, only
        // while that pid is provably ours (see pooler.ts).
      }
      if (!delivered && timeLeft() > 0 && connection.signalSafe) {
        try {
          await this.#deps.control.query(CANCEL_BACKEND_SQL, [connection.pid, connection.started], timeLeft());
          delivered = true;
        } catch {
          // The control connection could not be had either: try both again shortly.
        }
      }
      const wait = delivered ? pause : STOP_RETRY_MS;
      if (delivered) pause *= 2;
      await worker.waitTerminal(Math.max(0, Math.min(wait, deadline - Date.now())));
    }
  }

  /**
   * Terminates the worker's backend (only that backend: pid and start time must match), trying
   * until the control deadline passes; then its connection is dropped, the outcome unknown.
   * True if the terminate reached the server (or the worker ended meanwhile).
   */
  async #terminate(worker: Worker, connection: WorkerConnection): Promise<boolean> {
    if (worker.active && !connection.signalSafe) {
      // Behind a pooler, its transaction already being ended (see #halt): wait for that answer.
      await worker.whenTerminal;
      return true;
    }
    const { controlTimeoutMs } = this.#deps;
    const deadline = Date.now() + controlTimeoutMs;
    let reached = false;
    while (worker.active && !reached && deadline - Date.now() > 0) {
      try {
        await this.#deps.control.query(TERMINATE_BACKEND_SQL, [connection.pid, connection.started], deadline - Date.now());
        reached = true;
      } catch {
        await worker.waitTerminal(Math.max(0, Math.min(STOP_RETRY_MS, deadline - Date.now())));
      }
    }
    if (!worker.active) return reached;
    if (!reached) {
      connection.destroy(new Error('the server could not be reached to cancel or terminate the worker; the connection was dropped and the outcome is unknown'));
      await worker.whenTerminal;
      return false;
    }
    if (!(await worker.waitTerminal(controlTimeoutMs))) {
      connection.destroy(new Error('the worker was terminated but its connection did not close; it was dropped and the outcome is unknown'));
      await worker.whenTerminal;
      // Stopped only if the server says its backend is gone (the signal may not have taken).
      return this.#backendGone(connection);
    }
    return true;
  }

  /** The server says the backend (pid and start time) no longer exists; false if it cannot be asked. */
  async #backendGone(connection: WorkerConnection): Promise<boolean> {
    try {
      const { rows } = await this.#deps.control.query(BACKEND_EXISTS_SQL, [connection.pid, connection.started]);
      return rows.length === 0;
    } catch {
      return false;
    }
  }
}
