// The journal's side of the worker store: which workers changed since the last write, and what
// their row says. JournalStore wraps the instance's store (the registry) and hears every change
// Worker.apply made through `changed`, like the registry itself: it notes the worker and when,
// and tells the writer (control/journal-writer.ts) that a batch is due. No I/O here, and nothing
// on the launch path but a Map.set. journalRow() builds a worker's row from the worker record
// at the time of the write (so a burst of changes to one worker is one row of one batch).
import type { WorkerStats } from '../api/types.js';
import type { PriorFacts, WorkerChange } from './worker-change.js';
import type { WorkerStore } from './worker-store.js';
import type { Worker } from './worker.js';

/** The process that launched the workers, as every row of the instance names it. */
export interface JournalOwner {
  readonly host: string;
  readonly pid: number;
  readonly application: string | null;
}

/**
 * One row of pg_background_journal, keyed by column name, as JSON will carry it (int8 as text).
 * owner_control_pid and owner_control_started are not here: the write fills them in with the
 * backend of the control connection that writes (see catalog.ts journalSql.write).
 */
export interface JournalRow {
  cookie: string;
  pid: number;
  backend_started: string | null;
  label: string | null;
  scope: 'root' | 'subtask';
  parent: string | null;
  state: string;
  phase: string | null;
  fraction_completed: number | null;
  explicit_progress: boolean;
  sql_preview: string;
  user_name: string;
  owner_host: string;
  owner_pid: number;
  owner_application: string | null;
  attempts: number;
  launched_at: string;
  started_at: string | null;
  updated_at: string;
  finished_at: string | null;
  wait_event: string | null;
  blocked_by: readonly number[];
  sqlstate: string | null;
  error_message: string | null;
  command_tag: string | null;
  row_count: number | null;
  proven: boolean;
  /** A job's root (bg.job): no SQL and no backend of its own. */
  job: boolean;
}

/** The columns of a JournalRow, in the table's order (the write lists them). */
export const JOURNAL_ROW_COLUMNS = [
  'cookie',
  'pid',
  'backend_started',
  'label',
  'scope',
  'parent',
  'state',
  'phase',
  'fraction_completed',
  'explicit_progress',
  'sql_preview',
  'user_name',
  'owner_host',
  'owner_pid',
  'owner_application',
  'attempts',
  'launched_at',
  'started_at',
  'updated_at',
  'finished_at',
  'wait_event',
  'blocked_by',
  'sqlstate',
  'error_message',
  'command_tag',
  'row_count',
  'proven',
  'job',
] as const satisfies readonly (keyof JournalRow)[];

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/**
 * The row of `worker` now, without its null columns (JSON leaves them out; the write reads a
 * missing key as null). `changedAt`: its last change the journal heard of; `proven`: its
 * transaction ends with the journal's record of its end. Scope, parent and attempts come from
 * the worker; phase, fraction and wait as info() has them. Built for every changed worker of a batch, on the event loop: no copies.
 */
export function journalRow(worker: Worker, owner: JournalOwner, changedAt: number, proven: boolean): Partial<JournalRow> {
  const { error, progress, observed } = worker;
  const terminal = !worker.active;
  const row: Partial<JournalRow> = {
    cookie: worker.cookie.toString(),
    pid: worker.pid,
    scope: worker.scope,
    state: worker.state,
    explicit_progress: progress !== null,
    sql_preview: worker.sqlPreview,
    user_name: worker.user,
    owner_host: owner.host,
    owner_pid: owner.pid,
    attempts: worker.attempts,
    launched_at: iso(worker.launchedAt)!,
    updated_at: iso(worker.finishedAt ?? changedAt)!,
    blocked_by: observed?.blockedBy ?? [],
    proven,
    job: worker.launch.job,
  };
  if (worker.parent !== null) row.parent = worker.parent.cookie.toString();
  if (worker.backendStart !== null) row.backend_started = worker.backendStart;
  if (worker.label !== null) row.label = worker.label;
  // Progress the worker's SQL reported itself wins over the server's (as in info()).
  // A job's root: its body's ctx.status / ctx.progress.
  const phase = worker.phase ?? (progress?.message || (observed?.phase ?? null));
  if (phase !== null) row.phase = phase;
  const fraction = worker.fraction ?? (progress ? progress.pct / 100 : (observed?.fractionCompleted ?? null));
  if (fraction !== null) row.fraction_completed = fraction;
  if (owner.application !== null) row.owner_application = owner.application;
  if (worker.startedAt !== null) row.started_at = iso(worker.startedAt)!;
  if (worker.finishedAt !== null) row.finished_at = iso(worker.finishedAt)!;
  if (observed?.waitEvent) row.wait_event = observed.waitEvent;
  if (error) {
    row.sqlstate = error.sqlstate;
    row.error_message = error.message;
  }
  if (terminal && worker.commandTag !== null) row.command_tag = worker.commandTag;
  if (terminal || worker.startedAt !== null) row.row_count = worker.rowCount;
  return row;
}

/** The changes a row shows (tracking, reading and the wire's own steps are not journaled). */
const JOURNALED: ReadonlySet<WorkerChange['kind']> = new Set([
  'started',
  'progress',
  'observed',
  'paused',
  'resumed',
  'body-started',
  'status',
  'retrying',
  'cancel-requested',
  'finished',
]);

/** Where JournalStore hands the workers that changed (the writer takes them at its next batch). */
export interface JournalSink {
  /** `worker` changed at `at` (ms): its row is due in the next batch. */
  changed(worker: Worker, at: number): void;
}

export class JournalStore implements WorkerStore {
  readonly #inner: WorkerStore;
  readonly #sink: JournalSink;

  constructor(inner: WorkerStore, sink: JournalSink) {
    this.#inner = inner;
    this.#sink = sink;
  }

  add(worker: Worker): void {
    this.#inner.add(worker);
    this.#sink.changed(worker, worker.launchedAt);
  }

  changed(worker: Worker, change: WorkerChange, prior: PriorFacts): void {
    this.#inner.changed(worker, change, prior);
    if (JOURNALED.has(change.kind)) this.#sink.changed(worker, Date.now());
  }

  lookup(handle: unknown): Worker {
    return this.#inner.lookup(handle);
  }

  list(): Worker[] {
    return this.#inner.list();
  }

  get active(): ReadonlySet<Worker> {
    return this.#inner.active;
  }

  get activeRoots(): number {
    return this.#inner.activeRoots;
  }

  stats(maxWorkers: number): WorkerStats {
    return this.#inner.stats(maxWorkers);
  }

  purge(): number {
    return this.#inner.purge();
  }

  dispose(): void {
    this.#inner.dispose();
  }
}
