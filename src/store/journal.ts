// The journal's side of the worker store: which workers changed since the last write, and what
// their row says. JournalStore wraps the instance's store (the registry) and hears every change
// Worker.apply made through `changed`, like the registry itself: it notes the worker and when,
// and tells the writer (control/journal-writer.ts) that a batch is due. No I/O here, and nothing
// on the launch path but a Map.set. journalBatch() builds the rows of a batch from the worker
// records at the time of the write (so a burst of changes to one worker is one row of one batch),
// as one array per column (the write unnests them).
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
 * The columns a batch writes, in order, each with the SQL type of its array (`ms`: a timestamptz
 * sent as epoch milliseconds, float8). The owner's host, pid and application are the same in
 * every row of an instance: they go once per batch, as three more parameters; owner_control_pid
 * and owner_control_started are filled in by the write with the backend of the control
 * connection that writes (see catalog.ts journalWriteSql).
 */
export const JOURNAL_COLUMNS = [
  ['cookie', 'int8'],
  ['pid', 'int4'],
  ['backend_started', 'int8'],
  ['label', 'text'],
  ['scope', 'text'],
  ['parent', 'int8'],
  ['state', 'text'],
  ['phase', 'text'],
  ['fraction_completed', 'float8'],
  ['explicit_progress', 'bool'],
  ['sql_preview', 'text'],
  ['user_name', 'text'],
  ['attempts', 'int4'],
  ['launched_at', 'ms'],
  ['started_at', 'ms'],
  ['updated_at', 'ms'],
  ['finished_at', 'ms'],
  ['wait_event', 'text'],
  ['blocked_by', 'int4[]'],
  ['sqlstate', 'text'],
  ['error_message', 'text'],
  ['command_tag', 'text'],
  ['row_count', 'int8'],
  ['proven', 'bool'],
  ['job', 'bool'],
] as const satisfies readonly (readonly [string, 'int8' | 'int4' | 'text' | 'float8' | 'bool' | 'ms' | 'int4[]'])[];

const COLUMN_COUNT = JOURNAL_COLUMNS.length;

/** An element of an array literal: NULL, or the text quoted (a backslash or quote escaped). */
function element(text: string | null): string {
  if (text === null) return 'NULL';
  let escaped = text;
  if (text.includes('\\') || text.includes('"')) escaped = text.replace(/[\\"]/g, '\\$&');
  return `"${escaped}"`;
}

const number = (value: number | null) => (value === null ? 'NULL' : String(value));

/**
 * The parameters of one batch (catalog.ts journalWriteSql): an array literal per column of
 * JOURNAL_COLUMNS, one element per worker of `batch` (its last change the journal heard of), its
 * row as of now; then the owner's host, pid and application. Scope, parent and attempts come
 * from the worker; phase, fraction and wait as info() has them; `proven(worker)`: its transaction
 * ends (or will end) with the journal's record of its end. Built on the event loop for every
 * changed worker of a batch: one string per column, no object per row.
 */
export function journalBatch(batch: ReadonlyMap<Worker, number>, owner: JournalOwner, proven: (worker: Worker) => boolean): (string | null)[] {
  const columns: string[] = new Array<string>(COLUMN_COUNT).fill('');
  const row: string[] = new Array<string>(COLUMN_COUNT);
  let separator = '';
  for (const [worker, changedAt] of batch) {
    const { error, progress, observed } = worker;
    const terminal = !worker.active;
    // Progress the worker's SQL reported itself wins over the server's (as in info()).
    // A job's root: its body's ctx.status / ctx.progress.
    const phase = worker.phase ?? (progress?.message || (observed?.phase ?? null));
    const fraction = worker.fraction ?? (progress ? progress.pct / 100 : (observed?.fractionCompleted ?? null));
    const blocked = observed?.blockedBy ?? [];
    row[0] = worker.cookie.toString();
    row[1] = String(worker.pid);
    row[2] = worker.backendStart ?? 'NULL';
    row[3] = element(worker.label);
    row[4] = worker.scope;
    row[5] = worker.parent === null ? 'NULL' : worker.parent.cookie.toString();
    row[6] = worker.state;
    row[7] = element(phase);
    row[8] = number(fraction);
    row[9] = progress !== null ? 't' : 'f';
    row[10] = element(worker.sqlPreview);
    row[11] = element(worker.user);
    row[12] = String(worker.attempts);
    row[13] = String(worker.launchedAt);
    row[14] = number(worker.startedAt);
    row[15] = String(worker.finishedAt ?? changedAt);
    row[16] = number(worker.finishedAt);
    row[17] = element(observed?.waitEvent || null);
    row[18] = blocked.length === 0 ? 'NULL' : `"{${blocked.join(',')}}"`;
    row[19] = element(error ? error.sqlstate : null);
    row[20] = element(error ? error.message : null);
    row[21] = element(terminal ? worker.commandTag : null);
    row[22] = terminal || worker.startedAt !== null ? String(worker.rowCount) : 'NULL';
    row[23] = proven(worker) ? 't' : 'f';
    row[24] = worker.launch.job ? 't' : 'f';
    for (let i = 0; i < COLUMN_COUNT; i++) columns[i] += separator + row[i]!;
    separator = ',';
  }
  const values: (string | null)[] = columns.map((column) => `{${column}}`);
  values.push(owner.host, String(owner.pid), owner.application);
  return values;
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
