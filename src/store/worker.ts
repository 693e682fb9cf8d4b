// A worker as the caller sees it: its identity, its state machine (core/states.ts) and what it
// produced. Every fact about it changes in one place, apply(change) (the changes are in
// worker-change.ts); its fields are private and the store it belongs to hears every applied
// change. list(), stats(), wait() and events read from it, never from connection internals.
// Each worker owns one AbortController: a cancel request aborts its signal with the reason, and
// everything that waits for the worker's start (a slot, a connection) listens to that signal.
// A job's root (jobs/) is a Worker too, without a connection (pid 0): it has `children`, its
// subtasks, each of which names it as `parent`; its state is decided by the job's runner.
import { PgBackgroundError, WorkerError, type WorkerErrorInfo } from '../errors.js';
import { sameObservation, type Observation } from '../core/observation.js';
import { isActive, NEXT_STATES, type CancelReason, type TerminalState, type WorkerState } from '../core/states.js';
import { untilSettled, type AbortListener } from '../core/abort.js';
import { withoutValues, type LaunchPlan } from './launch-plan.js';
import { newCookie, preview } from './worker-identity.js';
import type { WorkerChange } from './worker-change.js';
import type { WorkerStore } from './worker-store.js';
import { RowParser, type ResultField } from '../results/row-parser.js';
import { RowQueue } from '../results/row-queue.js';
import type { DiscardReason } from '../results/worker-result.js';
import type { ResultInfo, WorkerHandle, WorkerInfo, WorkerProgress } from '../api/types.js';

export type { TerminalState };

/** Changes that count as a change of state or progress (WorkerInfo.updatedAt). */
const UPDATES: ReadonlySet<WorkerChange['kind']> = new Set([
  'started',
  'body-started',
  'paused',
  'resumed',
  'status',
  'progress',
  'observed',
  'retrying',
  'cancel-requested',
  'finished',
]);

/**
 * What few workers ever have: a cancel's AbortSignal, a second try's first pid, retries, progress,
 * a job's phase, the server's observation of a long run. One object, made when first needed, so
 * that every worker (thousands wait at once in fire and forget) is that much smaller.
 */
class WorkerExtras {
  /**
   * Aborted by the first cancel request, whatever the state; only a start still under way acts on
   * it. Made when first asked for (a wait for a slot or a connection): most starts never wait,
   * and an AbortController with its listeners costs more than the rest of a tiny task's bookkeeping.
   */
  abort: AbortController | null = null;
  abortReason: unknown = null;
  firstPid = 0;
  /** Tries that failed with a retryable error and were run again (launch's `retry`). */
  retries = 0;
  progress: WorkerProgress | null = null;
  /** A job's root: what its body said it is doing (ctx.status / ctx.progress). */
  phase: string | null = null;
  fraction: number | null = null;
  /** What the server last said its backend was doing (the backend monitor's poll). */
  observed: Observation | null = null;
}

/** #flags: listed and addressable by handle; its result claimed by a reader; its rows all read; failed with part of its work perhaps committed. */
const TRACKED = 1;
const CLAIMED = 2;
const CONSUMED = 4;
/** Failed with part of its work perhaps committed (the 'finished' change's `partial`). */
const PARTIAL = 8;

export class Worker {
  readonly cookie: bigint;
  /** The launch as validated; once finished, without its parameter values (see #finish). */
  #launch: LaunchPlan;
  readonly launchedAt = Date.now();
  /** The job's root, for a subtask. */
  readonly parent: Worker | null;
  /** A job's root: its subtasks, in launch order (null for a worker that runs SQL itself). */
  readonly children: Worker[] | null;
  readonly #store: Pick<WorkerStore, 'changed'>;
  #extras: WorkerExtras | null = null;
  /** The launch's own promise: a cancel before the start marks it handled (fire and forget). */
  #launching: Promise<unknown> | null = null;
  /** The one wait (a queued slot) that hears a cancel directly: see pool/worker-slots.ts. */
  #abortListener: AbortListener | null = null;
  #terminal: Promise<void> | null = null;
  #resolveTerminal: (() => void) | null = null;
  #handle: WorkerHandle | null = null;

  #state: WorkerState = 'pending';
  #pid = 0;
  #backendStart: string | null = null;
  #user: string;
  #startedAt: number | null = null;
  #finishedAt: number | null = null;
  #error: WorkerErrorInfo | null = null;
  #commandTag: string | null = null;
  #rowCount = 0;
  /** The task on the wire, for its live row count. */
  #task: { readonly rowCount: number } | null = null;
  /** Null until the first update: the launch time (no number box of its own while it waits). */
  #updatedAt: number | null = null;
  #canceledBy: CancelReason | null = null;
  #parser: RowParser | null = null;
  #discardReason: DiscardReason | null = null;
  /** Made at first use (see queue): a pending worker of fire and forget keeps none while it waits. */
  #queue: RowQueue | null = null;
  #flags = TRACKED;
  /** Links of the active workers' list (store/active-workers.ts writes them, nothing else). */
  activePrev: Worker | null = null;
  activeNext: Worker | null = null;

  constructor(launch: LaunchPlan, defaultUser: string, store: Pick<WorkerStore, 'changed'>) {
    this.cookie = newCookie();
    this.#launch = launch;
    this.#user = launch.role ?? defaultUser;
    this.#store = store;
    this.parent = launch.parent;
    this.children = launch.job ? [] : null;
    // Born discarding: that is what submit() means (a fact of the launch, not a change).
    if (launch.submitted) this.#discard('submit');
  }

  /**
   * The one transition point: applies `change` and tells the store. False when it changes
   * nothing (a second cancel request, a second discard, anything after the end but tracking and
   * reading): the store hears only changes that happened.
   */
  apply(change: WorkerChange): boolean {
    const state = this.#state;
    const pid = this.#pid;
    const tracked = this.tracked;
    if (!this.#change(change)) return false;
    // A start and an end read the clock once, for their own time and this one.
    if (UPDATES.has(change.kind)) {
      const kind = change.kind;
      this.#updatedAt = kind === 'finished' ? this.#finishedAt! : kind === 'started' || kind === 'body-started' ? this.#startedAt! : Date.now();
    }
    this.#store.changed(this, change, state, pid, tracked);
    if (change.kind === 'cancel-requested') {
      // Last, once the facts are in place: listeners (a wait for a slot or a connection) see them.
      const message = this.children === null ? `worker was cancelled (${change.reason}) before it started` : `the job was cancelled (${change.reason})`;
      if (this.#startedAt === null) this.#launching?.catch(() => {});
      const reason = new PgBackgroundError('PGBG_ABORTED', message, { cookie: this.cookie, label: this.label });
      const extras = this.#more();
      extras.abortReason = reason;
      extras.abort?.abort(reason); // made only if a wait asked for it
      const listener = this.#abortListener;
      this.#abortListener = null;
      listener?.aborted(reason);
    } else if (change.kind === 'finished') {
      this.#resolveTerminal?.();
    }
    return true;
  }

  /** The result's fields, as the task describes them (a ColumnSink: no object of its own per task). */
  columns(fields: readonly ResultField[]): void {
    this.apply({ kind: 'described', fields });
  }

  #change(change: WorkerChange): boolean {
    switch (change.kind) {
      case 'started':
        if (!this.active) return false;
        // A second try (the first connection was dead): handles given out name the first pid.
        if (this.#pid !== 0) this.#more().firstPid = this.#pid;
        this.#startedAt = Date.now();
        this.#pid = change.pid;
        this.#backendStart = change.backendStart;
        this.#user = this.launch.role ?? change.user;
        this.#handle = null;
        if (this.#extras) this.#extras.observed = null; // that was another backend
        this.#step(this.cancelRequested ? 'cancelling' : 'running');
        return true;
      case 'paused':
        // A start not admitted yet, or a job's root (its subtasks are held by the job's runner).
        if (this.cancelRequested) return false;
        if (this.#state !== 'pending' && !(this.#state === 'running' && this.children !== null)) return false;
        this.#step('paused');
        return true;
      case 'resumed':
        if (this.#state !== 'paused') return false;
        this.#step(this.#startedAt === null ? 'pending' : 'running');
        return true;
      case 'body-started':
        if (this.children === null || this.#state !== 'pending') return false;
        this.#startedAt = Date.now();
        this.#step('running');
        return true;
      case 'status': {
        if (!this.active) return false;
        const extras = this.#more();
        extras.phase = change.phase;
        extras.fraction = change.fraction;
        // getProgress(root) answers as for a worker's SQL: percent and message.
        if (change.fraction !== null) extras.progress = { pct: change.fraction * 100, message: change.phase ?? '' };
        return true;
      }
      case 'subtask':
        if (this.children === null) return false;
        this.children.push(change.child);
        return true;
      case 'retrying':
        // Between two tries the state stays running; a cancel ends the worker instead.
        if (this.#state !== 'running') return false;
        this.#more().retries++;
        this.#task = null;
        return true;
      case 'sent':
        this.#task = change.task;
        return true;
      case 'described':
        if (this.launch.submitted) return false;
        this.#parser = new RowParser(change.fields, this.launch.rowMode, this.launch.types);
        return true;
      case 'progress':
        this.#more().progress = change.progress;
        return true;
      case 'observed':
        // Only of a running backend, and only when something changed: the store hears news alone.
        if (!this.active || this.#startedAt === null || sameObservation(this.observed, change.observation)) return false;
        this.#more().observed = change.observation;
        return true;
      case 'cancel-requested':
        if (this.cancelRequested || !this.active) return false;
        this.#canceledBy = change.reason;
        // A paused start stays paused until its wait ends (canceled); a paused root stops now.
        if (this.#state === 'running' || (this.#state === 'paused' && this.children !== null)) this.#step('cancelling');
        // Stop rows: a full queue would block the cancel.
        this.#discard('cancel');
        return true;
      case 'discarded':
        return this.#discard(change.reason);
      case 'claimed':
        if (this.#flags & CLAIMED) return false;
        this.#flags |= CLAIMED;
        return true;
      case 'consumed':
        if (this.#flags & CONSUMED) return false;
        this.#flags |= CONSUMED;
        return true;
      case 'untracked': {
        const tracked = this.tracked;
        this.#flags &= ~TRACKED;
        // A reader already holding a pruned result keeps its rows (they go when it does).
        const discarded = (change.reason === 'detach' || !this.resultClaimed) && this.#discard(change.reason);
        return tracked || discarded;
      }
      case 'finished': {
        if (!this.active) return false;
        this.#step(change.state);
        this.#error = change.error;
        this.#commandTag = change.commandTag;
        this.#rowCount = change.rowCount;
        if (change.partial) this.#flags |= PARTIAL;
        this.#task = null;
        this.#finishedAt = Date.now();
        // Its parameters were kept for a retry; nothing reads them now, and a tracked worker is
        // kept for the retention (a detached one is dropped, values and all).
        if (this.tracked) this.#launch = withoutValues(this.#launch);
        // A finished worker waits for nothing; its last phase and fraction say how far it got.
        const observed = this.#extras?.observed;
        if (observed) this.#extras!.observed = { ...observed, waitEvent: null, blockedBy: [] };
        this.#queue?.close();
        return true;
      }
    }
  }

  #step(next: WorkerState): void {
    if (next === this.#state) return; // a second start (see 'started')
    if (!NEXT_STATES[this.#state].includes(next)) throw new Error(`worker state ${this.#state} cannot become ${next}`);
    this.#state = next;
  }

  #discard(reason: DiscardReason): boolean {
    if (this.#discardReason !== null) return false;
    this.#discardReason = reason;
    this.#queue?.discard();
    return true;
  }

  /**
   * The worker's bounded row queue, made at first use (a start, a reader): until then a pending
   * worker keeps no queue alive (fire and forget queues thousands). Made discarding if the worker
   * discards its rows already, and closed if it has ended, as it would be had it existed all along.
   */
  get queue(): RowQueue {
    if (this.#queue === null) {
      const queue = new RowQueue(this.launch.queueSize);
      if (this.#discardReason !== null) queue.discard();
      if (!this.active) queue.close();
      this.#queue = queue;
    }
    return this.#queue;
  }

  get launch(): LaunchPlan {
    return this.#launch;
  }

  get label(): string | null {
    return this.launch.label;
  }
  /** 'subtask' when launched by a job's body (ctx.launch); every top-level worker is a root. */
  get scope(): 'root' | 'subtask' {
    return this.parent ? 'subtask' : 'root';
  }
  /** What list() shows of its SQL (its first 120 code points). */
  get sqlPreview(): string {
    return preview(this.launch.plan.text);
  }

  #more(): WorkerExtras {
    return (this.#extras ??= new WorkerExtras());
  }

  get state(): WorkerState {
    return this.#state;
  }
  get pid(): number {
    return this.#pid;
  }
  /** The pid of a connection its task never ran on, before it ran again elsewhere (else 0). */
  get firstPid(): number {
    return this.#extras?.firstPid ?? 0;
  }
  /** The backend's start time (with pid, its identity), once started. */
  get backendStart(): string | null {
    return this.#backendStart;
  }
  get user(): string {
    return this.#user;
  }
  /** When its connection was attached (null while pending, or if it never started). */
  get startedAt(): number | null {
    return this.#startedAt;
  }
  get finishedAt(): number | null {
    return this.#finishedAt;
  }
  /** Runs of its task asked for: 1, plus each retry (launch's `retry`) and each rerun on a new connection. */
  get attempts(): number {
    // A second try (the first connection had died before the task reached it) keeps the first pid.
    return 1 + this.retries + (this.firstPid === 0 ? 0 : 1);
  }
  /** Tries run again after a retryable error (launch's `retry`). */
  get retries(): number {
    return this.#extras?.retries ?? 0;
  }
  /** A job's root: its body's last phase (ctx.status, or ctx.progress's message). */
  get phase(): string | null {
    return this.#extras?.phase ?? null;
  }
  /** A job's root: its body's last fraction (ctx.progress), or null. */
  get fraction(): number | null {
    return this.#extras?.fraction ?? null;
  }
  /** The last change of state or progress; the finish time once terminal. */
  get updatedAt(): number {
    return this.#updatedAt ?? this.launchedAt;
  }
  get error(): WorkerErrorInfo | null {
    return this.#error;
  }
  /** It failed, and part of its work may have committed (see the 'finished' change). */
  get partial(): boolean {
    return (this.#flags & PARTIAL) !== 0;
  }
  get commandTag(): string | null {
    return this.#commandTag;
  }
  get rowCount(): number {
    return this.#task?.rowCount ?? this.#rowCount;
  }
  get progress(): WorkerProgress | null {
    return this.#extras?.progress ?? null;
  }
  /** What the server last said its backend was doing, or null (never polled). */
  get observed(): Observation | null {
    return this.#extras?.observed ?? null;
  }
  get canceledBy(): CancelReason | null {
    return this.#canceledBy;
  }
  get parser(): RowParser | null {
    return this.#parser;
  }
  get discardReason(): DiscardReason | null {
    return this.#discardReason;
  }
  get resultClaimed(): boolean {
    return (this.#flags & CLAIMED) !== 0;
  }
  get consumed(): boolean {
    return (this.#flags & CONSUMED) !== 0;
  }
  /** Listed and addressable by handle (false once detached or pruned). */
  get tracked(): boolean {
    return (this.#flags & TRACKED) !== 0;
  }

  /** Aborted (with a PGBG_ABORTED reason) by the first cancel request. */
  get signal(): AbortSignal {
    const extras = this.#more();
    if (!extras.abort) {
      extras.abort = new AbortController();
      if (extras.abortReason !== null) extras.abort.abort(extras.abortReason);
    }
    return extras.abort.signal;
  }

  /** Cancelled already (the signal would say aborted), without making the signal. */
  get aborted(): boolean {
    return this.cancelRequested;
  }

  /** The PGBG_ABORTED error of the cancel request, once there was one. */
  get abortReason(): unknown {
    return this.#extras?.abortReason ?? null;
  }

  /** The queued slot wait's callback for a cancel (one at a time; null clears it). */
  whenAborted(listener: AbortListener | null): void {
    this.#abortListener = listener;
  }

  get abortListener(): AbortListener | null {
    return this.#abortListener;
  }

  /**
   * The launch's promise: a caller who awaits it still sees PGBG_ABORTED for a cancel before the
   * start, but a fire-and-forget one must not get an unhandled rejection for it.
   */
  set launching(promise: Promise<unknown>) {
    this.#launching = promise;
  }

  get active(): boolean {
    return isActive(this.#state);
  }

  /** Paused: its wait for a slot keeps its place but takes no slot (pool/worker-slots.ts). */
  get held(): boolean {
    return this.#state === 'paused';
  }

  get cancelRequested(): boolean {
    return this.#canceledBy !== null;
  }

  /** Resolves once the worker is terminal. */
  get whenTerminal(): Promise<void> {
    if (!this.active) return Promise.resolve();
    this.#terminal ??= new Promise((resolve) => (this.#resolveTerminal = resolve));
    return this.#terminal;
  }

  get handle(): WorkerHandle {
    this.#handle ??= Object.freeze(this.label === null ? { pid: this.#pid, cookie: this.cookie } : { pid: this.#pid, cookie: this.cookie, label: this.label });
    return this.#handle;
  }

  /** True once terminal, false if `timeoutMs` passes first; rejects if `signal` aborts first. */
  waitTerminal(timeoutMs: number, signal?: AbortSignal | null): Promise<boolean> {
    if (!this.active) return Promise.resolve(true);
    return untilSettled(this.whenTerminal, timeoutMs, signal ?? null);
  }

  /** The error result(h) throws for this (terminal) worker, if any. */
  workerError(): WorkerError | null {
    return this.#error && new WorkerError(this.#error, { pid: this.#pid, cookie: this.cookie, label: this.label }, this.#state === 'canceled');
  }

  resultInfo(): ResultInfo {
    return {
      rowCount: this.rowCount,
      commandTag: this.#commandTag,
      completed: !this.active,
      hasError: this.#state === 'error' || this.#state === 'canceled',
      startedAt: this.#startedAt === null ? null : new Date(this.#startedAt),
      finishedAt: this.#finishedAt === null ? null : new Date(this.#finishedAt),
    };
  }

  info(now: number): WorkerInfo {
    // Progress the worker's SQL reported itself wins over the server's.
    const explicit = this.progress;
    const observed = this.observed;
    return {
      pid: this.#pid,
      cookie: this.cookie,
      label: this.label,
      launchedAt: new Date(this.launchedAt),
      startedAt: this.#startedAt === null ? null : new Date(this.#startedAt),
      finishedAt: this.#finishedAt === null ? null : new Date(this.#finishedAt),
      elapsedMs: (this.#finishedAt ?? now) - this.launchedAt,
      user: this.#user,
      queueSize: this.launch.queueSize,
      queuedBytes: this.#queue?.bytes ?? 0,
      state: this.#state,
      sqlPreview: this.sqlPreview,
      lastError: this.#state === 'error' ? this.#error!.message : null,
      consumed: this.consumed,
      progress: explicit && { ...explicit },
      phase: this.phase ?? (explicit?.message || (observed?.phase ?? null)),
      fractionCompleted: this.fraction ?? (explicit ? explicit.pct / 100 : (observed?.fractionCompleted ?? null)),
      waitEvent: observed?.waitEvent ?? null,
      blockedBy: observed ? [...observed.blockedBy] : [],
      submitted: this.launch.submitted,
      canceledBy: this.#canceledBy,
      scope: this.scope,
      parent: this.parent?.cookie ?? null,
      attempts: this.attempts,
      updatedAt: new Date(this.updatedAt),
    };
  }
}
