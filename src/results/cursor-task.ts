// A worker task in cursor mode (launch(sql, { cursor: { batchRows } })): its one statement runs
// in a pg-cursor portal inside the worker's own transaction block, and the worker fetches the
// next `batchRows` rows only while the bounded queue has room, so the server does only the work
// whose rows were fetched (per-row side effects, the row locks of SELECT ... FOR UPDATE). Between
// fetches the backend waits for us in ClientRead (pg_stat_activity says 'active': the run lasts
// until its Sync); nothing blocks there, so an early stop of the reader or a cancel acts at once,
// by our own next message.
//
// On the wire: BEGIN, Parse/Bind/Describe of the portal and the first Execute in one write, an
// Execute and Flush per batch, then Close and Sync (the block stays open), then a simple COMMIT
// or ROLLBACK. What the end means:
// - read to the end: COMMIT (`stopped`, the statement's commandTag, rowCount = rows fetched);
// - the reader stopped early (break, return, stream destroyed): the portal is closed at once and
//   the transaction COMMITs what the fetched rows did, as pg-cursor does on a plain client
//   (`stopped`, commandTag null: the statement never completed);
// - detach, close() or prune: nobody will read, but the worker runs to its end and commits, as in
//   the default path (rows are discarded as they come);
// - a cancel (cancel(), timeout, signal): the portal is closed and the block ROLLed BACK; our
//   COMMIT never went out, so nothing committed (`canceled`), whether the cancel request landed
//   on a fetch (57014) or found the backend waiting for us (where the server ignores it);
// - a server error: ROLLBACK, the error is the worker's; the session ended (FATAL, a lost
//   connection) before our COMMIT: that error, nothing committed. An error while the COMMIT is in
//   flight is read as the default path reads it (see task-query.ts #commitOutcome).
import pg from 'pg';
import { BEGIN_SQL, COMMIT_SQL, ROLLBACK_SQL } from '../catalog.js';
import type { CursorReader, CursorSink, WireField, WireReader, WireWriter } from '../pg/index.js';
import type { TaskPlan } from '../plan/task-plan.js';
import { CONNECTION_FAILURE, WorkerFailure } from './error-info.js';
import type { RowQueue } from './row-queue.js';
import type { ColumnSink, TaskOutcome } from './task-query.js';

/** What the worker wants of its cursor now: fetch on, close it early and commit, or cancel. */
export type CursorStop = 'read' | 'close' | 'cancel';

/** The worker's connection, as a cursor task uses it (WorkerConnection). */
export interface CursorConnection {
  runCursor(opening: string, text: string, values: readonly (string | Buffer | null)[] | null, sink: CursorSink): CursorReader;
  run(task: WireReader): void;
}

export class CursorTask {
  readonly done: Promise<TaskOutcome>;
  #resolve!: (outcome: TaskOutcome) => void;
  readonly #plan: TaskPlan;
  readonly #batchRows: number;
  readonly #queue: RowQueue;
  readonly #columns: ColumnSink;
  readonly #stop: () => CursorStop;
  #rows = 0;
  #described = false;
  #commandTag: string | null = null;
  #tagCount: number | null = null;
  /** How the cursor ended (undefined while it runs): null at its ReadyForQuery, else the error. */
  #cursorEnd: Error | null | undefined = undefined;
  #onCursorEnd: (() => void) | null = null;
  /** Wakes the fetch loop waiting for room in the queue (or for a stop). */
  #wake: (() => void) | null = null;

  /** `stop` is asked after every batch and whenever the queue lets the worker go on. */
  constructor(plan: TaskPlan, batchRows: number, queue: RowQueue, columns: ColumnSink, stop: () => CursorStop) {
    this.#plan = plan;
    this.#batchRows = batchRows;
    this.#queue = queue;
    this.#columns = columns;
    this.#stop = stop;
    this.done = new Promise((resolve) => (this.#resolve = resolve));
  }

  /** Rows fetched from the server so far. */
  get rowCount(): number {
    return this.#rows;
  }

  /** Starts the task on `connection`; `done` resolves with its outcome. */
  start(connection: CursorConnection): void {
    // The queue's budget works through the fetch loop, not the socket: a full queue stops fetching.
    this.#queue.attach({ pause: () => {}, resume: () => this.#wakeUp() });
    const sink: CursorSink = {
      rowDescription: (fields: WireField[]) => {
        this.#described = true;
        this.#columns.columns(fields);
      },
      dataRow: (fields, bytes) => {
        this.#rows++;
        this.#queue.push(fields, bytes);
      },
      commandComplete: (tag) => this.#completed(tag),
      ended: (error) => {
        // Also while the loop waits for room: a terminate or a lost connection ends it there.
        this.#cursorEnd = error;
        this.#onCursorEnd?.();
        this.#wakeUp();
      },
    };
    const { text, values } = this.#plan;
    const cursor = connection.runCursor(BEGIN_SQL, text, values, sink);
    void this.#fetch(cursor).then((stop) => this.#end(connection, stop));
  }

  /** Fetches batches while the reader makes room; resolves once the cursor is over. */
  async #fetch(cursor: CursorReader): Promise<CursorStop> {
    const ended = new Promise<void>((resolve) => (this.#onCursorEnd = resolve));
    for (;;) {
      // A read ends at PortalSuspended, or at the ReadyForQuery behind the statement's end (pg-
      // cursor closes and syncs at CommandComplete), or fails; an error after the Sync (a lost
      // connection) reaches only the sink, so the end is awaited too.
      await Promise.race([cursor.read(this.#batchRows).catch(() => {}), ended]);
      if (this.#cursorEnd !== undefined) return this.#stop();
      const stop = await this.#wanted();
      if (this.#cursorEnd !== undefined) return stop;
      if (stop !== 'read') {
        cursor.close().catch(() => {}); // its end comes to the sink
        await ended;
        return stop;
      }
    }
  }

  #wakeUp(): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }

  /** What to do next, once the queue has room, a stop was asked for or the cursor ended. */
  async #wanted(): Promise<CursorStop> {
    for (;;) {
      const stop = this.#stop();
      if (stop !== 'read' || !this.#queue.paused || this.#cursorEnd !== undefined) return stop;
      await new Promise<void>((resolve) => (this.#wake = resolve));
    }
  }

  /** After the cursor: COMMIT, ROLLBACK, or nothing more when the session is gone. */
  async #end(connection: CursorConnection, stop: CursorStop): Promise<void> {
    const failure = this.#cursorEnd ?? null;
    if (failure && !(failure instanceof pg.DatabaseError && failure.severity === 'ERROR')) {
      // The session ended (a terminate's FATAL 57P01, a lost connection) before our COMMIT was
      // sent: nothing committed. A lost connection confirms no stop, though: the backend may run
      // on (its locks held) until it notices. So no `canceled` (cancel() would resolve while it
      // runs): an error of the connection, as on the default path, that says what is known.
      if (stop === 'cancel' && !(failure instanceof pg.DatabaseError)) {
        return this.#finish(
          new WorkerFailure(
            CONNECTION_FAILURE,
            `the connection was lost during the cancel, before the transaction committed (${failure.message}): nothing of it committed, but its backend was not seen to stop`,
          ),
        );
      }
      return this.#finish(failure);
    }
    const rollback = failure !== null || stop === 'cancel';
    const answer = await endTransaction(connection, rollback ? ROLLBACK_SQL : COMMIT_SQL);
    if (failure) return this.#finish(failure);
    if (rollback)
      return this.#finish(new WorkerFailure('57014', 'canceling statement due to user request (the cursor was closed and its transaction rolled back)'));
    this.#finish(commitOutcome(answer));
  }

  #completed(tag: string): void {
    // 'SELECT 1000' -> SELECT, 1000; 'INSERT 0 5' -> INSERT, 5; 'CREATE TABLE' -> CREATE TABLE.
    const words = tag.split(' ');
    let end = words.length;
    while (end > 1 && /^\d+$/.test(words[end - 1]!)) end--;
    this.#commandTag = words.slice(0, end).join(' ');
    this.#tagCount = end < words.length ? Number(words.at(-1)) : null;
  }

  #finish(error: Error | null): void {
    this.#queue.detach();
    // A portal fetched in batches: its rows are what was fetched (the server's tag counts the last
    // Execute only); a statement without rows (an UPDATE) says its count in the tag.
    const rowCount = this.#described ? this.#rows : (this.#tagCount ?? this.#rows);
    this.#resolve({ error, commandTag: this.#commandTag, rowCount });
  }
}

interface EndAnswer {
  readonly tag: string | null;
  readonly error: Error | null;
}

/** Runs our COMMIT or ROLLBACK (a simple Query) and reports its tag and error. */
function endTransaction(connection: CursorConnection, text: string): Promise<EndAnswer> {
  return new Promise((resolve) => {
    let tag: string | null = null;
    connection.run({
      write: (wire: WireWriter) => wire.query(text),
      rowDescription() {},
      dataRow() {},
      commandComplete: (completed) => void (tag = completed),
      copyInRefusal: () => 'unexpected COPY',
      error: (error) => {
        resolve({ tag, error });
        return false;
      },
      readyForQuery: () => {
        resolve({ tag, error: null });
        return false;
      },
    });
  });
}

/**
 * What our COMMIT's answer means (as the default path reads it, task-query.ts #commitOutcome):
 * its CommandComplete 'COMMIT' committed, whatever came after; an ERROR (a deferred constraint,
 * a cancel) rolled back; a terminate (FATAL 57P01) or idle-in-transaction timeout (25P03) without
 * the CommandComplete came before the commit; anything else leaves the outcome unknown.
 */
function commitOutcome({ tag, error }: EndAnswer): Error | null {
  if (tag === 'COMMIT') return null;
  if (error instanceof pg.DatabaseError) {
    if (error.severity === 'ERROR') return error;
    if (error.severity === 'FATAL' && (error.code === '57P01' || error.code === '25P03')) return error;
  }
  if (error === null) return new WorkerFailure('25P02', `the worker's COMMIT answered ${tag ?? 'nothing'}: its transaction was rolled back`);
  return new WorkerFailure(
    CONNECTION_FAILURE,
    `outcome unknown: the connection ended while the worker's COMMIT was in flight (${error.message}); it may have committed`,
  );
}
