// The journal writer: records the instance's workers in pg_background_journal, off the launch
// path. JournalStore (store/journal.ts) hands it each worker that changed; a timer armed by the
// first change writes the current rows of the workers whose first unwritten change is
// JOURNAL_HOLD_MS old as one multi-row upsert on the control connection, looking every
// JOURNAL_FLUSH_MS (so a burst of launches is a handful of writes, a worker that starts and ends
// within the hold is one row, and a change is in the table within a second unless the server
// is slow to take the write). A write that fails fails no worker: its
// rows are kept for the next write (retried every JOURNAL_RETRY_MS) and the failure is reported
// once, as a warning. Rows of workers finished longer ago than the retention are pruned, at most
// once per JOURNAL_PRUNE_INTERVAL_MS. Before the first launch, the launcher asks ready(): the
// journal must exist (PGBG_NOT_INSTALLED otherwise), checked once per instance.
// The proof of a worker's end is not written here: commitPiece() gives the launcher the
// statement its transaction ends with (see catalog.ts journalCommitSql), an insert into
// pg_background_journal_ends, only where the login may insert there (else the rows say
// `proven` false, and the view "outcome unknown" where it cannot know).
import { hostname } from 'node:os';
import { JOURNAL_LOCATE_SQL, journalCommitSql, journalPruneSql, journalWriteSql } from '../catalog.js';
import { PgBackgroundError } from '../errors.js';
import type { ControlConnection } from '../pool/control-connection.js';
import type { TaskPlan } from '../plan/task-plan.js';
import { JOURNAL_COLUMNS, journalBatch, type JournalOwner, type JournalSink } from '../store/journal.js';
import type { Worker } from '../store/worker.js';

/**
 * A changed worker's row waits this long after its first unwritten change before it is written
 * (so a worker that starts and ends within it is written once, as it ended); batches are looked
 * at every JOURNAL_FLUSH_MS: a change is in the table within HOLD + FLUSH (750 ms) of happening
 * unless the server is slow to take the write.
 */
export const JOURNAL_HOLD_MS = 500;
export const JOURNAL_FLUSH_MS = 250;
export const JOURNAL_RETRY_MS = 1000;
export const JOURNAL_PRUNE_INTERVAL_MS = 60_000;
/** Workers whose rows wait for a write that keeps failing: beyond this, the oldest are dropped (memory stays bounded). */
export const JOURNAL_MAX_PENDING = 100_000;

const UNIQUE_VIOLATION = '23505';

/** Counts of every writer of this process, for tests and diagnostics. */
export const journalCounts = { writes: 0, rows: 0, failures: 0, prunes: 0 };

export class JournalWriter implements JournalSink {
  readonly #control: ControlConnection;
  readonly #retentionMs: number;
  readonly #owner: JournalOwner;
  readonly #warn: (warning: PgBackgroundError) => void;
  /**
   * The instance tags its connections: a pending row whose owner is gone is judged by whether a
   * backend carries its tag. Untagged, a task sent just before the owner died runs unseen while
   * its row still says pending, so such a row cannot be called "nothing committed".
   */
  readonly #tagged: boolean;
  /**
   * Workers whose row is due, in the order of their first unwritten change (oldest first: the
   * hold is counted from it), with the time of their last (the row's updated_at).
   */
  #due = new Map<Worker, Due>();
  /**
   * Workers whose row is in the table and not yet in its final state, with the change it showed:
   * their next write is an update. Those rows name the control session that wrote them as their
   * owner's, so a new session writes them again.
   */
  readonly #written = new Map<Worker, number>();
  /** Workers whose transaction ends with the journal's record of their end. */
  readonly #proven = new WeakSet<Worker>();
  /** The journal's schema (quoted), once found. */
  #schema: string | null = null;
  /** The login may insert into pg_background_journal_ends: a transaction can prove its end. */
  #provable = false;
  /** The batch's upsert, and its plain INSERT (for workers never written), once the schema is known. */
  #writeSql: string | null = null;
  #insertSql: string | null = null;
  #locating: Promise<void> | null = null;
  #timer: NodeJS.Timeout | null = null;
  #writing: Promise<void> | null = null;
  #warned = false;
  #prunedAt = -Infinity;
  #closed = false;

  constructor(control: ControlConnection, retentionMs: number, application: string | null, warn: (warning: PgBackgroundError) => void, tagged: boolean) {
    this.#control = control;
    this.#tagged = tagged;
    this.#retentionMs = retentionMs;
    this.#owner = Object.freeze({ host: hostname(), pid: process.pid, application });
    this.#warn = warn;
    // The view judges an unfinished row by its owner's control session (pid and start): once that
    // session is gone, the rows it wrote would read as orphaned (a pending worker "nothing
    // committed", while this process will still run it). They are written again at the next
    // batch, which opens the new session and names it.
    control.onSessionEnded(() => {
      const front = new Map<Worker, Due>();
      for (const [worker, at] of this.#written) {
        if (!this.#due.has(worker)) front.set(worker, { first: -Infinity, last: at }); // due at once, not after the hold
      }
      if (front.size > 0) this.#due = new Map([...front, ...this.#due]);
      if (this.#due.size > 0 && this.#timer === null && this.#writing === null && !this.#closed) this.#schedule(JOURNAL_FLUSH_MS);
    });
  }

  /**
   * Null once the journal was found (no await on the launch path); else the check, once per
   * instance: it rejects with PGBG_NOT_INSTALLED (and every launch after it, until install()).
   */
  ready(): Promise<void> | null {
    if (this.#schema !== null) return null;
    this.#locating ??= this.#locate();
    return this.#locating;
  }

  /**
   * A worker's proof was refused at its end (the task failed, nothing committed): the right to
   * the insert is looked at again, once at a time, so that a login that lost it (INSERT revoked,
   * a database made read-only, the table dropped) runs its later workers unproven, not failed.
   */
  proofRefused(): void {
    if (this.#closed || this.#rechecking) return;
    this.#rechecking = true;
    this.#control
      .query<{ provable: boolean }>(JOURNAL_LOCATE_SQL)
      .then(
        ({ rows }) => {
          this.#provable = rows[0]?.provable ?? false;
        },
        () => {
          // No answer (the control connection failed): as it was; the next refusal asks again.
        },
      )
      .finally(() => {
        this.#rechecking = false;
      });
  }

  #rechecking = false;

  /** install() ran: a failed check is made again at the next launch. */
  reset(): void {
    if (this.#schema === null) this.#locating = null;
  }

  /**
   * The statement a worker's transaction ends with, for a plan that can run in a transaction
   * block; null for one that cannot (its end is then only written by the batches).
   */
  commitPiece(worker: Worker, plan: TaskPlan): string | null {
    if (!this.#provesEnd(worker, plan)) return null;
    this.#proven.add(worker);
    return journalCommitSql(this.#schema!, worker.cookie);
  }

  /** Whether `worker`'s transaction will end with the insert that proves its commit. */
  #provesEnd(worker: Worker, plan: TaskPlan): boolean {
    // Under another role (`role`) the insert would need that role's right: checked for the login only.
    if (plan.transactional !== true || this.#schema === null || !this.#provable || worker.launch.role !== null) return false;
    // A read-only transaction refuses the insert (25006), failing the work: such a worker goes unproven.
    if (worker.launch.settings.some(readOnly)) return false;
    // So does one the SQL makes read-only (SET TRANSACTION READ ONLY; ...): only a statement ahead of
    // the last can, so a single statement is not searched (a false match only costs the proof).
    if (plan.pieces !== null && READ_ONLY_SQL.test(plan.text)) return false;
    // SQL that switches role (SET [LOCAL] ROLE, SET SESSION AUTHORIZATION, their set_config forms),
    // a single statement too: the insert would run as that role, and be refused (42501).
    return !ROLE_SQL.test(plan.text);
  }

  /**
   * A row's `proven`: its task went with the proof; or, not sent yet (pending, paused), it will
   * (so the view may say "nothing committed" of it once its owner is gone: had it run and
   * committed, its own insert would say so).
   */
  readonly #willProveFn = (worker: Worker) => this.#willProve(worker);

  #willProve(worker: Worker): boolean {
    if (this.#proven.has(worker)) return true;
    return (
      this.#tagged &&
      (worker.state === 'pending' || worker.state === 'paused') &&
      !worker.launch.job &&
      !worker.launch.cursor &&
      !worker.launch.copy &&
      this.#provesEnd(worker, worker.launch.plan)
    );
  }

  changed(worker: Worker, at: number): void {
    const due = this.#due.get(worker);
    if (due === undefined) this.#due.set(worker, { first: at, last: at });
    else due.last = at;
    if (this.#timer === null && this.#writing === null && !this.#closed) this.#schedule(JOURNAL_FLUSH_MS);
  }

  /** Writes what is due, then stops: close() calls it once every worker has ended. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    await this.#writing;
    if (this.#due.size > 0) await this.#write(0); // every row, however young
    this.#written.clear();
  }

  async #locate(): Promise<void> {
    let schema: string | undefined;
    let provable = false;
    try {
      ({ schema, provable = false } = (await this.#control.query<{ schema: string; provable: boolean }>(JOURNAL_LOCATE_SQL)).rows[0] ?? {});
    } catch (error) {
      this.#locating = null; // not an answer: ask again at the next launch
      const message = error instanceof Error ? error.message : String(error);
      throw new PgBackgroundError('PGBG_CONNECTION_FAILED', `Could not check for the journal: ${message}`, { cause: error });
    }
    if (schema === undefined) {
      throw new PgBackgroundError(
        'PGBG_NOT_INSTALLED',
        'journal: true, but this database has no pg_background_journal on the search_path: run install({ journal: true }) first',
      );
    }
    this.#schema = schema;
    this.#provable = provable;
    this.#writeSql = journalWriteSql(schema, JOURNAL_COLUMNS);
    this.#insertSql = journalWriteSql(schema, JOURNAL_COLUMNS, false);
  }

  #schedule(ms: number): void {
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#writing = this.#write().finally(() => {
        this.#writing = null;
        if (this.#due.size > 0 && !this.#closed && this.#timer === null) this.#schedule(this.#failing ? JOURNAL_RETRY_MS : JOURNAL_FLUSH_MS);
      });
    }, ms);
    // Journaling is no reason to keep the process alive: close() writes what is left.
    this.#timer.unref();
  }

  #failing = false;

  /** Writes the rows of the workers whose first unwritten change came `holdMs` ago or earlier. */
  async #write(holdMs = JOURNAL_HOLD_MS): Promise<void> {
    const schema = this.#schema;
    if (schema === null || this.#due.size === 0) return;
    const cut = Date.now() - holdMs;
    const taken = new Map<Worker, Due>();
    for (const [worker, due] of this.#due) {
      if (due.first > cut) break; // oldest first: the rest are younger still
      taken.set(worker, due);
    }
    if (taken.size === 0) return;
    // Each worker's row as of its last change.
    const batch = new Map<Worker, number>();
    for (const [worker, due] of taken) {
      this.#due.delete(worker);
      batch.set(worker, due.last);
    }
    // A worker never written goes in a plain INSERT (no ON CONFLICT: ~1/3 less server time per
    // row); one written before, in the upsert.
    let fresh: Map<Worker, number> | null = null;
    let known: Map<Worker, number> | null = null;
    for (const [worker, at] of batch) {
      if (this.#written.has(worker)) (known ??= new Map()).set(worker, at);
      else (fresh ??= new Map()).set(worker, at);
    }
    try {
      journalCounts.writes++;
      if (fresh !== null) {
        try {
          await this.#control.query(this.#insertSql!, journalBatch(fresh, this.#owner, this.#willProveFn));
        } catch (error) {
          if ((error as { code?: unknown } | null)?.code !== UNIQUE_VIOLATION) throw error;
          // A row is there already (a write that failed here may have committed all the same):
          // the whole batch goes as the upsert.
          known = batch;
        }
      }
      if (known !== null) await this.#control.query(this.#writeSql!, journalBatch(known, this.#owner, this.#willProveFn));
      journalCounts.rows += batch.size;
      this.#failing = false;
      // Its next row is an update, unless this one was its last (a worker that ended since is
      // due again: it stays known until that row is written).
      for (const [worker, at] of batch) {
        if (worker.active || this.#due.has(worker)) this.#written.set(worker, at);
        else this.#written.delete(worker);
      }
    } catch (error) {
      journalCounts.failures++;
      this.#failing = true;
      // Keep the rows for the next write, ahead of those due since (their first change is
      // older); a worker that changed again meanwhile keeps that first change and its newest
      // last. Oldest first: past JOURNAL_MAX_PENDING, those go.
      const kept = new Map<Worker, Due>();
      for (const [worker, due] of taken) {
        const newer = this.#due.get(worker);
        kept.set(worker, newer === undefined ? due : { first: due.first, last: newer.last });
      }
      for (const [worker, due] of this.#due) if (!kept.has(worker)) kept.set(worker, due);
      this.#due = kept;
      for (const worker of this.#due.keys()) {
        if (this.#due.size <= JOURNAL_MAX_PENDING) break;
        this.#due.delete(worker);
        this.#written.delete(worker);
      }
      this.#report(error);
      return;
    }
    await this.#prune(schema).catch((error: unknown) => this.#report(error));
  }

  async #prune(schema: string): Promise<void> {
    const now = Date.now();
    if (now - this.#prunedAt < JOURNAL_PRUNE_INTERVAL_MS) return;
    this.#prunedAt = now;
    journalCounts.prunes++;
    await this.#control.query(journalPruneSql(schema), [this.#retentionMs]);
  }

  /** The first failure of this instance's journal writes, as a warning (the rest are retried quietly). */
  #report(error: unknown): void {
    if (this.#warned) return;
    this.#warned = true;
    const message = error instanceof Error ? error.message : String(error);
    const sqlstate = typeof (error as { code?: unknown })?.code === 'string' ? (error as { code: string }).code : undefined;
    this.#warn(
      new PgBackgroundError(
        'PGBG_JOURNAL_WRITE_FAILED',
        `pg-background could not write the journal (${message}); no worker is affected, the rows are kept and retried (reported once)`,
        { sqlstate, cause: error },
      ),
    );
  }
}

/** A worker's unwritten changes: when the first and the last came (ms). */
interface Due {
  readonly first: number;
  last: number;
}

/** Words of SQL that may make its own transaction read-only. */
const READ_ONLY_SQL = /read[ \t\n\r\f\v]+only|transaction_read_only/i;
/**
 * A statement that switches role (SET [SESSION | LOCAL] ROLE, SET SESSION AUTHORIZATION: at the
 * start of the text or after a `;`) or set_config of either. `UPDATE t SET role = ...` and a
 * column or literal named role are not. (A function that switches role is not found: its proof is
 * refused, and the worker fails saying so.)
 */
const ROLE_SQL =
  /(?:^|;)\s*set\s+(?:(?:session|local)\s+)?(?:"?role"?|"?session_authorization"?|session\s+authorization)(?:\s|=|$)|set_config\s*\(\s*'(?:role|session_authorization)'/i;

/** A setting that makes the worker's transaction read-only (PostgreSQL's booleans: on, true, yes, 1, and prefixes). */
function readOnly([name, value]: readonly [string, string]): boolean {
  if (name.toLowerCase() !== 'default_transaction_read_only') return false;
  return /^(on|t|tr|tru|true|y|ye|yes|1)$/i.test(value.trim());
}
