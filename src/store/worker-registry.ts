// The instance's workers: those a handle can reach (tracked: launched here, not detached, not
// pruned), those still active (detached ones included, for close() and stats), the counters of
// stats(), and retention: a finished worker is forgotten `retentionMs` after it finished.
// The first WorkerStore: it keeps its indexes from the changes workers report (see changed()),
// and tells `onStarted` of each start (the backend monitor arms its poll: no I/O, no await).
// A job's tree is retained as one: a finished subtask stays while its root is tracked, and goes
// (detached or pruned) with it; maxRetained counts the tree once. `listener` hears every worker
// added and every change applied (the public events), after the registry's own bookkeeping.
import { PgBackgroundError, invalidArgument } from '../errors.js';
import type { WorkerHandle, WorkerStats } from '../api/types.js';
import { timedOut } from './outcome.js';
import { describe, MAX_TIMER_MS } from '../util/validate.js';
import type { Worker } from './worker.js';
import type { WorkerChange } from './worker-change.js';
import type { WorkerState } from '../core/states.js';
import type { WorkerStore } from './worker-store.js';
import { ActiveWorkers, type ActiveWorkerList } from './active-workers.js';

/** Hears every worker added and every change applied to one (the facade's events). */
export interface StoreListener {
  added(worker: Worker): void;
  changed(worker: Worker, change: WorkerChange, priorState: WorkerState): void;
}

export class WorkerRegistry implements WorkerStore {
  readonly #retentionMs: number;
  /** At most this many finished workers stay listed (the oldest go first). */
  readonly #maxRetained: number;
  /** Finished workers in #finished still tracked. */
  #retained = 0;
  readonly #onStarted: ((worker: Worker) => void) | null;
  readonly #tracked = new Map<bigint, Worker>(); // by cookie, oldest first
  readonly #pids = new Map<number, number>(); // tracked workers per pid (connections are reused)
  #pendingPids = 0; // tracked workers with pid 0 (not started, or a job's root)
  readonly #active = new ActiveWorkers();
  #activeRoots = 0;
  #finished: (Worker | null)[] = []; // in finishing order, for retention; read from #finishedHead (those before it are null)
  #finishedHead = 0;
  #timer: NodeJS.Timeout | null = null;
  #launched = 0;
  #completed = 0;
  #failed = 0;
  #canceled = 0;
  /** Finished workers that had started (had a connection): avgExecutionMs averages these. */
  #ran = 0;
  #timedOut = 0;
  #executionMs = 0;
  /** Tries made by started workers (one per start, one per retry), and the retries among them. */
  #attempts = 0;
  #retries = 0;
  readonly #listener: StoreListener | null;

  constructor(retentionMs: number, onStarted: ((worker: Worker) => void) | null = null, maxRetained = Infinity, listener: StoreListener | null = null) {
    this.#retentionMs = retentionMs;
    this.#onStarted = onStarted;
    this.#maxRetained = maxRetained;
    this.#listener = listener;
  }

  add(worker: Worker): void {
    this.prune();
    this.#launched++;
    this.#tracked.set(worker.cookie, worker);
    this.#countPid(worker.pid, 1);
    this.#active.add(worker);
    if (worker.children !== null) this.#activeRoots++;
    this.#listener?.added(worker);
  }

  changed(worker: Worker, change: WorkerChange, priorState: WorkerState, priorPid: number, priorTracked: boolean): void {
    this.#record(worker, change, priorPid, priorTracked);
    this.#listener?.changed(worker, change, priorState);
  }

  #record(worker: Worker, change: WorkerChange, priorPid: number, priorTracked: boolean): void {
    switch (change.kind) {
      case 'retrying':
        this.#attempts++;
        this.#retries++;
        return;
      case 'started':
        this.#attempts++;
        // Its handle now names that backend pid (a handle given out before names the first).
        if (priorTracked) {
          this.#countPid(priorPid, -1);
          this.#countPid(worker.pid, 1);
        }
        this.#onStarted?.(worker);
        return;
      case 'untracked':
        if (!priorTracked) return;
        if (!worker.active && this.#queuesFinished && worker.parent === null) {
          this.#retained--;
          this.#compactFinished();
        }
        this.#tracked.delete(worker.cookie);
        this.#countPid(worker.pid, -1);
        // A tree goes as one: its subtasks with their root (running ones keep running, untracked).
        for (const child of worker.children ?? []) child.apply({ kind: 'untracked', reason: change.reason });
        return;
      case 'finished':
        return this.#ended(worker);
    }
  }

  #ended(worker: Worker): void {
    this.#active.delete(worker);
    if (worker.children !== null) this.#activeRoots--;
    if (worker.state === 'stopped') this.#completed++;
    else if (worker.state === 'canceled') this.#canceled++;
    else this.#failed++;
    if (timedOut(worker)) this.#timedOut++;
    // Execution time: from the connection's attach, not counting a wait for a slot; a worker
    // that never started did not execute at all (it is no 0 ms run).
    if (worker.startedAt !== null && worker.children === null) {
      this.#ran++;
      this.#executionMs += worker.finishedAt! - worker.startedAt;
    }
    // A subtask is retained as part of its root, never on its own.
    if (worker.tracked && this.#queuesFinished && worker.parent === null) {
      this.#finished.push(worker);
      this.#retained++;
      if (this.#retained > this.#maxRetained) this.prune();
      this.#schedulePrune();
    }
  }

  /** The tracked worker a handle names, or PGBG_UNKNOWN_WORKER / PGBG_COOKIE_MISMATCH. */
  lookup(handle: unknown): Worker {
    if (handle === null || typeof handle !== 'object') {
      throw invalidArgument(`Expected a worker handle { pid, cookie }, got ${describe(handle)}`);
    }
    let pid: unknown, cookie: unknown;
    try {
      ({ pid, cookie } = handle as Partial<WorkerHandle>);
    } catch (error) {
      // A getter or a proxy of the caller's threw: still a bad argument, never their raw error.
      throw invalidArgument(`Expected a worker handle { pid, cookie }, but reading it threw: ${error instanceof Error ? error.message : describe(error)}`);
    }
    if (typeof pid !== 'number' || !Number.isInteger(pid) || pid < 0 || pid > 2 ** 31 - 1) {
      throw invalidArgument(`Expected the handle's \`pid\` to be an integer from 0 to 2147483647, got ${describe(pid)}`);
    }
    if (typeof cookie !== 'bigint') {
      throw invalidArgument(`Expected the handle's \`cookie\` to be a bigint, got ${describe(cookie)}`);
    }
    this.prune();
    const worker = this.#tracked.get(cookie);
    // A handle taken while the worker was pending (pid 0) still names it once it runs.
    if (worker && (worker.pid === pid || pid === 0 || worker.firstPid === pid)) return worker;
    if (pid === 0 ? this.#pendingPids > 0 : this.#pids.has(pid)) {
      throw new PgBackgroundError('PGBG_COOKIE_MISMATCH', `Cookie mismatch for worker pid ${pid}: the handle is stale (that pid now runs another worker)`, {
        pid,
        cookie,
      });
    }
    throw new PgBackgroundError(
      'PGBG_UNKNOWN_WORKER',
      `No worker with pid ${pid} is tracked by this instance (never launched here, detached, or pruned after retentionMs)`,
      { pid, cookie },
    );
  }

  /** Tracked workers, newest first. */
  list(): Worker[] {
    this.prune();
    return [...this.#tracked.values()].reverse();
  }

  /** Workers not yet terminal, detached ones included. */
  get active(): ActiveWorkerList {
    return this.#active;
  }

  get activeRoots(): number {
    return this.#activeRoots;
  }

  stats(maxWorkers: number): WorkerStats {
    return {
      workersLaunched: this.#launched,
      workersCompleted: this.#completed,
      workersFailed: this.#failed,
      workersCanceled: this.#canceled,
      workersTimedOut: this.#timedOut,
      workersActive: this.#active.size,
      attempts: this.#attempts,
      retries: this.#retries,
      avgExecutionMs: this.#ran === 0 ? 0 : this.#executionMs / this.#ran,
      maxWorkers,
    };
  }

  /** Forgets every finished tracked worker now, as retention would later; returns how many. */
  purge(): number {
    let count = 0;
    for (const worker of this.#tracked.values()) {
      // A subtask goes with its root (or alone, once its root is gone).
      if (worker.active || worker.parent?.tracked) continue;
      worker.apply({ kind: 'untracked', reason: 'prune' });
      count++;
    }
    return count;
  }

  /** Forgets finished workers older than retentionMs, with their unread rows. */
  prune(now?: number): void {
    // Nothing waits to be pruned (every launch and lookup asks): no clock to read.
    if (this.#finishedHead === this.#finished.length) return;
    now ??= Date.now();
    while (this.#finishedHead < this.#finished.length) {
      const worker = this.#finished[this.#finishedHead]!;
      if (worker.tracked && now - worker.finishedAt! < this.#retentionMs && this.#retained <= this.#maxRetained) break;
      this.#finished[this.#finishedHead++] = null;
      // A reader already holding the result keeps its rows (they go when it does).
      if (worker.tracked) worker.apply({ kind: 'untracked', reason: 'prune' });
    }
    if (this.#finishedHead > 1024 && this.#finishedHead * 2 > this.#finished.length) {
      this.#finished = this.#finished.slice(this.#finishedHead);
      this.#finishedHead = 0;
    }
  }

  /**
   * A worker detached after it finished stays in #finished, where prune() reaches it only once
   * every older one went (one kept handle of a retained worker would hold all later ones, with
   * their SQL, for the retention; forever with retentionMs Infinity and maxRetained). When most
   * entries are such, the list is rebuilt without them: it copies the retained ones, once per as
   * many entries gone, and never holds more such entries than retained workers.
   */
  #compactFinished(): void {
    const entries = this.#finished.length - this.#finishedHead;
    if (entries - this.#retained <= this.#retained) return;
    const kept: Worker[] = [];
    for (let i = this.#finishedHead; i < this.#finished.length; i++) {
      const worker = this.#finished[i];
      if (worker?.tracked) kept.push(worker);
    }
    this.#finished = kept;
    this.#finishedHead = 0;
  }

  dispose(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
  }

  /** Finished workers are queued for pruning when either limit is finite. */
  get #queuesFinished(): boolean {
    return this.#retentionMs !== Infinity || this.#maxRetained !== Infinity;
  }

  #schedulePrune(): void {
    if (this.#timer || this.#finishedHead === this.#finished.length || this.#retentionMs === Infinity) return;
    const due = this.#finished[this.#finishedHead]!.finishedAt! + this.#retentionMs - Date.now();
    this.#timer = setTimeout(
      () => {
        this.#timer = null;
        this.prune();
        this.#schedulePrune();
      },
      Math.min(Math.max(due, 0), MAX_TIMER_MS),
    );
    // Pruning frees memory; it is no reason to keep the process alive.
    this.#timer.unref();
  }

  #countPid(pid: number, delta: number): void {
    if (pid === 0) {
      // Pending workers (and job roots): a count of their own, not two Map writes per launch.
      this.#pendingPids += delta;
      return;
    }
    const count = (this.#pids.get(pid) ?? 0) + delta;
    if (count > 0) this.#pids.set(pid, count);
    else this.#pids.delete(pid);
  }
}
