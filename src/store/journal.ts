// The journal's side of the worker store: which workers changed since the last write, and what
// their row says. JournalStore wraps the instance's store (the registry) and hears every change
// Worker.apply made through `changed`, like the registry itself: it notes the worker and when,
// and tells the writer (control/journal-writer.ts) that a batch is due. No I/O here, and nothing
// on the launch path but a Map.set. journalBatch() builds the rows of a batch from the worker
// records at the time of the write (so a burst of changes to one worker is one row of one batch),
// as one array per column (the write unnests them).
import type { WorkerStats } from '../api/types.js';
import type { WorkerChange } from './worker-change.js';
import type { WorkerState } from '../core/states.js';
import type { WorkerStore } from './worker-store.js';
import type { ActiveWorkerList } from './active-workers.js';
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

/** An element of an array literal: NULL, or the text quoted (a backslash or quote escaped). */
function element(text: string | null): string {
  if (text === null) return 'NULL';
  let escaped = text;
  if (text.includes('\\') || text.includes('"')) escaped = text.replace(/[\\"]/g, '\\$&');
  return `"${escaped}"`;
}

/**
 * element(), remembering the last text of each column: the rows of a batch mostly repeat their
 * SQL preview, user and label (a burst of one launch), and then share one quoted string.
 */
class Quoted {
  #text: string | null = null;
  #quoted = 'NULL';
  of(text: string | null): string {
    if (text !== this.#text) {
      this.#text = text;
      this.#quoted = element(text);
    }
    return this.#quoted;
  }
}

const number = (value: number | null) => (value === null ? 'NULL' : String(value));

/**
 * The parameters of one batch (catalog.ts journalWriteSql): an array literal per column of
 * JOURNAL_COLUMNS, one element per worker of `batch` (its last change the journal heard of), its
 * row as of now; then the owner's host, pid and application. Scope, parent and attempts come
 * from the worker; phase, fraction and wait as info() has them; `proven(worker)`: its transaction
 * ends (or will end) with the journal's record of its end. Built on the event loop for every
 * changed worker of a batch: the elements of each column joined once (no string per row and
 * column beyond the element itself, no object per row).
 */
export function journalBatch(batch: ReadonlyMap<Worker, number>, owner: JournalOwner, proven: (worker: Worker) => boolean): (string | null)[] {
  // One array per column, in JOURNAL_COLUMNS' order (the `columns` below).
  const cookies: string[] = [];
  const pids: string[] = [];
  const starts: string[] = [];
  const labels: string[] = [];
  const scopes: string[] = [];
  const parents: string[] = [];
  const states: string[] = [];
  const phases: string[] = [];
  const fractions: string[] = [];
  const explicit: string[] = [];
  const previews: string[] = [];
  const users: string[] = [];
  const attempts: string[] = [];
  const launched: string[] = [];
  const started: string[] = [];
  const updated: string[] = [];
  const finished: string[] = [];
  const waits: string[] = [];
  const blocked: string[] = [];
  const sqlstates: string[] = [];
  const messages: string[] = [];
  const tags: string[] = [];
  const counts: string[] = [];
  const proofs: string[] = [];
  const jobs: string[] = [];
  const label = new Quoted();
  const preview = new Quoted();
  const user = new Quoted();
  const phaseText = new Quoted();
  for (const [worker, changedAt] of batch) {
    const { error, progress, observed } = worker;
    const terminal = !worker.active;
    // Progress the worker's SQL reported itself wins over the server's (as in info()).
    // A job's root: its body's ctx.status / ctx.progress.
    const phase = worker.phase ?? (progress?.message || (observed?.phase ?? null));
    const fraction = worker.fraction ?? (progress ? progress.pct / 100 : (observed?.fractionCompleted ?? null));
    const blockedBy = observed?.blockedBy ?? [];
    cookies.push(worker.cookie.toString());
    pids.push(String(worker.pid));
    starts.push(worker.backendStart ?? 'NULL');
    labels.push(label.of(worker.label));
    scopes.push(worker.scope);
    parents.push(worker.parent === null ? 'NULL' : worker.parent.cookie.toString());
    states.push(worker.state);
    phases.push(phaseText.of(phase));
    fractions.push(number(fraction));
    explicit.push(progress !== null ? 't' : 'f');
    previews.push(preview.of(worker.sqlPreview));
    users.push(user.of(worker.user));
    attempts.push(String(worker.attempts));
    launched.push(String(worker.launchedAt));
    started.push(number(worker.startedAt));
    updated.push(String(worker.finishedAt ?? changedAt));
    finished.push(number(worker.finishedAt));
    waits.push(element(observed?.waitEvent || null));
    blocked.push(blockedBy.length === 0 ? 'NULL' : `"{${blockedBy.join(',')}}"`);
    sqlstates.push(element(error ? error.sqlstate : null));
    messages.push(element(error ? error.message : null));
    tags.push(element(terminal ? worker.commandTag : null));
    counts.push(terminal || worker.startedAt !== null ? String(worker.rowCount) : 'NULL');
    proofs.push(proven(worker) ? 't' : 'f');
    jobs.push(worker.launch.job ? 't' : 'f');
  }
  const columns = [
    cookies,
    pids,
    starts,
    labels,
    scopes,
    parents,
    states,
    phases,
    fractions,
    explicit,
    previews,
    users,
    attempts,
    launched,
    started,
    updated,
    finished,
    waits,
    blocked,
    sqlstates,
    messages,
    tags,
    counts,
    proofs,
    jobs,
  ];
  const values: (string | null)[] = columns.map((column) => `{${column.join(',')}}`);
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

  changed(worker: Worker, change: WorkerChange, priorState: WorkerState, priorPid: number, priorTracked: boolean): void {
    this.#inner.changed(worker, change, priorState, priorPid, priorTracked);
    if (JOURNALED.has(change.kind)) this.#sink.changed(worker, Date.now());
  }

  lookup(handle: unknown): Worker {
    return this.#inner.lookup(handle);
  }

  list(): Worker[] {
    return this.#inner.list();
  }

  get active(): ActiveWorkerList {
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
