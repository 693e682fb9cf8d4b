// A worker as the caller sees it: its identity, its state machine
//   pending → running → cancelling → stopped | canceled | error   (pending may end directly)
// and what it produced. Every transition happens here; list(), stats(), wait() and events
// read from it, never from connection internals.
import { getRandomValues } from 'node:crypto';
import { PgBackgroundError, WorkerError, type WorkerErrorInfo } from '../errors.js';
import type { LaunchPlan } from './launch-plan.js';
import { RowParser, type ResultField } from '../results/row-parser.js';
import { RowQueue } from '../results/row-queue.js';
import type { DiscardReason } from '../results/worker-result.js';
import type { CancelReason, ResultInfo, WorkerHandle, WorkerInfo, WorkerProgress, WorkerState } from '../api/types.js';

const PREVIEW_CODE_POINTS = 120;

export type TerminalState = 'stopped' | 'canceled' | 'error';


export class Worker {
  readonly cookie: bigint;
  readonly launch: LaunchPlan;
  readonly label: string | null;
  readonly sqlPreview: string;
  readonly launchedAt = Date.now();
  readonly queue: RowQueue;
  /**
   * Set by the first cancel request (cancel, timeout, close, caller's signal), whatever the
   * state; only a start still under way (waiting for a slot or a connection) acts on it.
   */
  #startCancelled: PgBackgroundError | null = null;
  #startListeners: ((reason: PgBackgroundError) => void)[] | null = null;
  #terminal: Promise<void> | null = null;
  #resolveTerminal: (() => void) | null = null;

  pid = 0;
  /** The pid of a connection its task never ran on, before it ran again elsewhere (else 0). */
  firstPid = 0;
  /** When its connection was attached (null while pending, or if it never started). */
  startedAt: number | null = null;
  user: string;
  state: WorkerState = 'pending';
  finishedAt: number | null = null;
  error: WorkerErrorInfo | null = null;
  commandTag: string | null = null;
  #rowCount = 0;
  /** The task on the wire, for its live row count. */
  #task: { readonly rowCount: number } | null = null;
  progress: WorkerProgress | null = null;
  canceledBy: CancelReason | null = null;
  parser: RowParser | null = null;
  discardReason: DiscardReason | null = null;
  resultClaimed = false;
  consumed = false;
  /** Listed and addressable by handle (false once detached or pruned). */
  tracked = true;
  /** Set by the first cancel; later cancels join it. */
  stopping: Promise<void> | null = null;
  /** What launch() or submit() returned for this worker (see requestCancel). */
  launching: Promise<WorkerHandle> | null = null;
  #handle: WorkerHandle | null = null;

  constructor(launch: LaunchPlan, defaultUser: string) {
    this.cookie = newCookie();
    this.launch = launch;
    this.label = launch.label;
    this.sqlPreview = preview(launch.plan.text);
    this.queue = new RowQueue(launch.queueSize);
    this.user = launch.role ?? defaultUser;
    if (launch.submitted) this.discard('submit');
  }

  /** Why the worker must not start after all, or null. */
  get startCancelled(): PgBackgroundError | null {
    return this.#startCancelled;
  }

  /** Calls `listener` if the start is cancelled; returns the unsubscribe function. */
  onStartCancelled(listener: (reason: PgBackgroundError) => void): () => void {
    (this.#startListeners ??= []).push(listener);
    return () => {
      const listeners = this.#startListeners;
      const index = listeners ? listeners.indexOf(listener) : -1;
      if (index !== -1) listeners!.splice(index, 1);
    };
  }

  /** Resolves once the worker is terminal. */
  get whenTerminal(): Promise<void> {
    if (!this.active) return Promise.resolve();
    this.#terminal ??= new Promise((resolve) => (this.#resolveTerminal = resolve));
    return this.#terminal;
  }

  get handle(): WorkerHandle {
    this.#handle ??= Object.freeze(this.label === null ? { pid: this.pid, cookie: this.cookie } : { pid: this.pid, cookie: this.cookie, label: this.label });
    return this.#handle;
  }

  get active(): boolean {
    return this.state === 'pending' || this.state === 'running' || this.state === 'cancelling';
  }

  get cancelRequested(): boolean {
    return this.canceledBy !== null;
  }

  get rowCount(): number {
    return this.#task?.rowCount ?? this.#rowCount;
  }

  /** The connection is attached: the worker runs as backend `pid`. */
  start(pid: number, user: string): void {
    this.startedAt = Date.now();
    this.pid = pid;
    this.user = this.launch.role ?? user;
    this.#handle = null;
    this.state = this.cancelRequested ? 'cancelling' : 'running';
  }

  /** Its SQL is on the wire as `task`. */
  sent(task: { readonly rowCount: number }): void {
    this.#task = task;
  }

  columns(fields: readonly ResultField[]): void {
    if (!this.launch.submitted) this.parser = new RowParser(fields, this.launch.rowMode, this.launch.types);
  }

  /** First cancel request: stop rows (a full queue would block the cancel), or stop the start. */
  requestCancel(reason: CancelReason): void {
    if (this.cancelRequested || !this.active) return;
    this.canceledBy = reason;
    // A start cancelled now rejects its launch with PGBG_ABORTED: a caller who awaits it still
    // sees that, but a fire-and-forget one must not get an unhandled rejection for a cancel.
    if (this.state === 'pending') this.launching?.catch(() => {});
    if (this.state === 'running') this.state = 'cancelling';
    this.discard('cancel');
    this.#startCancelled = new PgBackgroundError('PGBG_ABORTED', `worker was cancelled (${reason}) before it started`, { cookie: this.cookie, label: this.label });
    for (const listener of this.#startListeners?.splice(0) ?? []) listener(this.#startCancelled);
  }

  discard(reason: DiscardReason): void {
    if (this.queue.discarding) return;
    this.discardReason = reason;
    this.queue.discard();
  }

  /** The terminal transition; false if the worker was already terminal (nothing changes). */
  finish(state: TerminalState, error: WorkerErrorInfo | null, commandTag: string | null, rowCount: number): boolean {
    if (!this.active) return false;
    this.state = state;
    this.error = error;
    this.commandTag = commandTag;
    this.#rowCount = rowCount;
    this.#task = null;
    this.finishedAt = Date.now();
    this.queue.close();
    this.#resolveTerminal?.();
    return true;
  }

  /** True once terminal, false if `timeoutMs` passes first. */
  waitTerminal(timeoutMs: number, signal?: AbortSignal | null): Promise<boolean> {
    if (!this.active) return Promise.resolve(true);
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise((resolve, reject) => {
      const done = (value: boolean) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        resolve(value);
      };
      const onAbort = () => {
        clearTimeout(timer);
        reject(signal!.reason);
      };
      const timer = timeoutMs === Infinity ? undefined : setTimeout(() => done(false), timeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      void this.whenTerminal.then(() => done(true));
    });
  }

  /** The error result(h) throws for this (terminal) worker, if any. */
  workerError(): WorkerError | null {
    return this.error && new WorkerError(this.error, { pid: this.pid, cookie: this.cookie, label: this.label }, this.state === 'canceled');
  }

  resultInfo(): ResultInfo {
    return {
      rowCount: this.rowCount,
      commandTag: this.commandTag,
      completed: !this.active,
      hasError: this.state === 'error' || this.state === 'canceled',
      startedAt: this.startedAt === null ? null : new Date(this.startedAt),
      finishedAt: this.finishedAt === null ? null : new Date(this.finishedAt),
    };
  }

  info(now: number): WorkerInfo {
    return {
      pid: this.pid,
      cookie: this.cookie,
      label: this.label,
      launchedAt: new Date(this.launchedAt),
      startedAt: this.startedAt === null ? null : new Date(this.startedAt),
      finishedAt: this.finishedAt === null ? null : new Date(this.finishedAt),
      elapsedMs: (this.finishedAt ?? now) - this.launchedAt,
      user: this.user,
      queueSize: this.launch.queueSize,
      queuedBytes: this.queue.bytes,
      state: this.state,
      sqlPreview: this.sqlPreview,
      lastError: this.state === 'error' ? this.error!.message : null,
      consumed: this.consumed,
      progress: this.progress && { ...this.progress },
      submitted: this.launch.submitted,
      canceledBy: this.canceledBy,
    };
  }
}

// Cookies are drawn from the CSPRNG in batches: one call per 256 workers, not one per worker.
const cookies = new BigInt64Array(256);
let nextCookie = cookies.length;

/** 64 random bits as a signed bigint (fits PostgreSQL's int8), never 0. */
function newCookie(): bigint {
  for (;;) {
    if (nextCookie === cookies.length) {
      getRandomValues(cookies);
      nextCookie = 0;
    }
    const cookie = cookies[nextCookie++]!;
    if (cookie !== 0n) return cookie;
  }
}

/** The first 120 code points, never cutting one in half. */
export function preview(text: string): string {
  let end = 0;
  for (let count = 0; count < PREVIEW_CODE_POINTS && end < text.length; count++) {
    end += text.codePointAt(end)! > 0xffff ? 2 : 1;
  }
  return text.slice(0, end);
}
