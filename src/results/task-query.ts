// One worker task on the wire: a WireReader (src/pg runs it as a node-postgres Submittable) that
// sends the worker's SQL in a single round trip and routes what comes back. Rows of every statement but the last are
// dropped unparsed; the last statement's rows go into the bounded queue, whose budget pauses
// the socket. The task is over at ReadyForQuery (success) or at the first ErrorResponse or
// connection error, which covers errors raised at COMMIT after all rows were sent.
// A tagged connection's tag (a SET application_name, see store/worker-identity.ts) goes ahead of
// the statements in the same write: under the task's own Sync, in its transaction, where the SQL
// allows (plain DML, our BEGIN ... COMMIT, the caller's transaction behind a pooler); else under a
// Sync of its own just before the task (VACUUM and the like refuse to follow it in a pipeline).
import pg from 'pg';
import { BEGIN_SQL, COMMIT_SQL, RESET_SQL } from '../catalog.js';
import { encodeExtended, encodeStatement, statementText, type OwnStatement, type WireReader, type WireWriter } from '../pg/index.js';
import { SoonBatch } from '../core/soon-batch.js';
import type { TaskPlan } from '../plan/task-plan.js';
import { CONNECTION_FAILURE, WorkerFailure } from './error-info.js';
import type { ResultField } from './row-parser.js';
import type { Flow, RowQueue } from './row-queue.js';

export interface TaskOutcome {
  /** The server's ErrorResponse, a connection error, or null on success. */
  readonly error: Error | null;
  /** The last statement's command, such as 'SELECT' or 'CREATE TABLE' (null if it never completed). */
  readonly commandTag: string | null;
  /** Rows the last statement returned or affected. */
  readonly rowCount: number;
  /**
   * The previous task's reset, sent as this task's prefix, failed: the server skipped the task
   * behind it (everything up to the Sync), so it never ran, and the session is not clean.
   */
  readonly resetFailed?: boolean;
  /**
   * Every statement of the task ran; the journal's proof behind them (the last statement of its
   * transaction) was refused, so nothing committed (see control/journal-writer.ts proofRefused).
   */
  readonly proofRefused?: boolean;
}

/** Where the last statement's column descriptions go (the worker). */
export interface ColumnSink {
  columns(fields: readonly ResultField[]): void;
}

/**
 * Where the task's result goes (the worker): its columns, and its row queue, asked for at the
 * first row only (a worker's queue is made at first use: a task of DML without RETURNING, the
 * common fire-and-forget task, then never makes one).
 */
export interface ResultSink extends ColumnSink {
  readonly queue: RowQueue;
}

/**
 * The connection, as a task sees it when the connection will be kept for another task. A task of
 * plain DML (TaskPlan.inBlock) defers the reset: the next task carries it as its prefix (see
 * TaskQuery's `resetFirst`), or the connection runs it before any other task or once idle.
 * Every other task writes the reset right behind itself (the trailer).
 */
export interface TaskSession {
  /**
   * SQL to send right behind the task in the same write (the connection's reset). Its answers
   * come after the task's ReadyForQuery; `taskEnded` must put a reader in place for them.
   */
  readonly trailer: string;
  /**
   * The task is over (called once, from pg's message handlers): at its ReadyForQuery, or
   * earlier, at an error, with the ReadyForQuery still to come.
   */
  taskEnded(): void;
  /** As taskEnded, for a task that wrote no trailer: the session needs its reset before the next task. */
  resetDeferred(): void;
}

/** The deferred reset as a task's prefix: Parse, Bind, Execute, encoded once (pg/wire-bytes.ts). */
const RESET_PREFIX = encodeStatement(RESET_SQL);

const COPY_IN_REFUSAL = 'COPY FROM STDIN is not supported in pg-background workers';

/** SQLSTATE read_only_sql_transaction. */
const READ_ONLY_TRANSACTION = '25006';
const JOURNAL_READ_ONLY_HINT =
  "The worker's SQL ran, then the journal's record of its end (an insert into pg_background_journal_ends, in the same transaction) was refused: " +
  'the SQL made its transaction read-only where its text does not show it (SET TRANSACTION READ ONLY in a function, say), so nothing committed. ' +
  "Launch it with settings: { default_transaction_read_only: 'on' } (it then runs without the proof), or from an instance without the journal.";

/**
 * What refuses the proof's insert itself: the right to it (42501), a read-only transaction
 * (25006), the table or its schema gone (42P01, 3F000). Anything else at that point (a cancel,
 * a timeout, a serialization failure) is the transaction's, not the proof's.
 */
const PROOF_REFUSALS: ReadonlySet<string> = new Set(['42501', READ_ONLY_TRANSACTION, '42P01', '3F000']);
const JOURNAL_REFUSED_HINT =
  "The worker's SQL ran, then the journal's record of its end (an insert into pg_background_journal_ends, in the same transaction) was refused, so nothing committed. " +
  'The instance checks its right to that insert again: if the login lost it, its later workers run without the proof. The refusal was';

/** Hears a task's end (TaskQuery.whenDone): an object, so that the end costs no promise. */
export interface TaskEnd {
  ended(outcome: TaskOutcome): void;
}

/**
 * Tasks whose end is due, heard a microtask later, in order: never inside pg's parser, which is
 * where a task's last answer arrives (a 'finished' listener must not run there).
 */
const dueEnds = new SoonBatch<TaskQuery>((query) => query.hearEnd());

/** The last command tag parsed, and what it gave: tags repeat ('INSERT 0 1' task after task). */
const parsedTag = { text: '', command: '', count: null as number | null };

/** 'INSERT 0 5' -> INSERT, 5; 'SELECT 1000' -> SELECT, 1000; 'CREATE TABLE' -> CREATE TABLE, null. */
function parseTag(text: string): void {
  let end = text.length;
  let count: number | null = null;
  for (let space = text.lastIndexOf(' '); space !== -1 && isDigits(text, space + 1, end); space = text.lastIndexOf(' ', end - 1)) {
    count ??= Number(text.slice(space + 1, end));
    end = space;
  }
  parsedTag.text = text;
  parsedTag.command = text.slice(0, end);
  parsedTag.count = count;
}

export class TaskQuery implements WireReader {
  /** Made when first asked for (the launcher hears the end through whenDone instead). */
  #done: Promise<TaskOutcome> | null = null;
  #resolve: ((outcome: TaskOutcome) => void) | null = null;
  #end: TaskEnd | null = null;
  #outcome: TaskOutcome | null = null;
  readonly #plan: TaskPlan;
  readonly #sink: ResultSink;
  /** The sink's queue, attached to the socket's flow control at the first row (null until then). */
  #queue: RowQueue | null = null;
  #flow: Flow | null = null;
  readonly #session: TaskSession | null;
  /** CommandCompletes seen so far. */
  #statement = 0;
  /** The index of the CommandComplete whose statement's rows are the result. */
  readonly #resultIndex: number;
  /** The statements run inside our own BEGIN ... COMMIT. */
  readonly #wrapped: boolean;
  /** A wrapped task past its first Sync, waiting for the answer to its COMMIT. */
  #closing = false;
  readonly #inTransaction: boolean;
  /** What the wrapped task's statements ended with, reported once the COMMIT answered. */
  #failure: Error | null = null;
  /** The tag of our COMMIT's CommandComplete, once it came. */
  #commitTag: string | null = null;
  /** The tags of user statements that ended a transaction when the wrapper's block was open. */
  #escaped: string | null = null;
  #rows = 0;
  #commandTag: string | null = null;
  #tagCount: number | null = null;
  #finished = false;
  #resetFailed = false;
  #proofRefused = false;
  /** The tag's SET, or null: none is sent. */
  readonly #tag: OwnStatement | null;
  /** The journal's record of the end, run last in the task's transaction (see control/journal-writer.ts), or null. */
  readonly #journal: string | null;
  /** The task's statements go as one simple Query (which commits before its CommandComplete). */
  readonly #simple: boolean;
  /** The tag has a Sync of its own ahead of the task: its ReadyForQuery is not the task's end. */
  #tagSegment: boolean;
  /**
   * The value of #statement at which our own leading statements' CommandCompletes come (the
   * reset prefix, the tag: never counted as the task's), 1 behind our BEGIN; #oursLeft of them
   * are still to come.
   */
  readonly #oursAt: number;
  #oursLeft: number;
  /** The previous task's reset leads this task, and its CommandComplete has not come yet. */
  #resetPending: boolean;
  /**
   * The reset for the next task is deferred (no trailer). The tag then stays until that reset:
   * the next task's prefix, in the same write as its own tag, or the idle connection's own reset
   * a turn of the event loop later (see pool/connection-pool.ts).
   */
  readonly #defer: boolean;

  /**
   * `session` null: no reset behind the task (the connection will not be reused).
   * `inTransaction`: the task runs inside a transaction the caller opened and will end (behind a
   * connection pooler, see pool/pooler.ts): its statements then go without our BEGIN/COMMIT.
   */
  /**
   * `tag`: the SET of the connection's application_name while the task runs (catalog.ts tagSql,
   * as store/worker-identity.ts workerTagStatement makes it; null: leave it as it is); the reset
   * behind the task brings back the startup value. With `inTransaction` (behind a pooler) the
   * caller must make it SET LOCAL: this class writes the statement it is given.
   * `resetFirst`: the previous task deferred its reset; it goes first, under this task's Sync (only
   * for a task of plain DML, TaskPlan.inBlock): if it fails, the server skips the task.
   * `journal`: one statement of ours that runs last inside the task's transaction (only for a
   * plan that is `transactional`); its answers are counted, never reported.
   */
  constructor(
    plan: TaskPlan,
    sink: ResultSink,
    session: TaskSession | null,
    inTransaction = false,
    tag: OwnStatement | null = null,
    resetFirst = false,
    journal: string | null = null,
  ) {
    this.#plan = plan;
    this.#journal = journal;
    this.#sink = sink;
    this.#session = session;
    // A wrapped pipeline: our BEGIN, the statements, Sync; our COMMIT, Sync.
    const wrapped = plan.pieces !== null && plan.pieces.length > 1 && !inTransaction;
    this.#wrapped = wrapped;
    this.#inTransaction = inTransaction;
    this.#resultIndex = plan.statementCount - (wrapped ? 0 : 1);
    // Under the task's Sync when it shares a transaction with it safely; else its own Sync.
    this.#tagSegment = tag !== null && !wrapped && !inTransaction && !plan.inBlock;
    this.#tag = tag;
    this.#oursAt = wrapped ? 1 : 0;
    this.#oursLeft = (tag === null ? 0 : 1) + (resetFirst ? 1 : 0);
    this.#resetPending = resetFirst;
    // Plain DML on a connection that is kept: the next task (or the idle connection) resets it.
    this.#defer = session !== null && plan.inBlock && !inTransaction;
    // Alone (untagged, or tagged under a Sync of its own), a plain single statement stays a simple Query.
    this.#simple = plan.pieces === null && plan.values === null && (this.#oursLeft === 0 || this.#tagSegment);
  }

  /** Resolves with the task's end. */
  get done(): Promise<TaskOutcome> {
    this.#done ??= this.#outcome ? Promise.resolve(this.#outcome) : new Promise((resolve) => (this.#resolve = resolve));
    return this.#done;
  }

  /** `end` hears the task's end a microtask after it (as `done`'s reaction would), without a promise; also an end that came already. */
  whenDone(end: TaskEnd): void {
    this.#end = end;
    if (this.#outcome) dueEnds.add(this);
  }

  /** The due end reaches the task's TaskEnd (dueEnds). */
  hearEnd(): void {
    this.#end!.ended(this.#outcome!);
  }

  /** The write opens with a Parse (see startsWithParse): what the never-ran rule needs. */
  get startsWithParse(): boolean {
    return this.#oursLeft > 0 || startsWithParse(this.#plan);
  }

  /** Rows of the last statement seen so far. */
  get rowCount(): number {
    return this.#rows;
  }

  /**
   * Writes the task, once, when WorkerConnection.run starts it: a task queued behind the previous
   * task's reset is already on the wire (the server answers in order, and pg hands the answers
   * out in the same order).
   */
  write(wire: WireWriter): void {
    this.#flow = wire.flow;
    const { text, values, pieces } = this.#plan;
    // The journal's statement shares the task's transaction: the statements before one Sync (or
    // in one simple Query) are one implicit transaction, committed at its end, where the work is.
    const journal = this.#journal;
    const tag = this.#tag;
    // The previous task's reset first: DISCARD ALL commits at once, so what follows runs in a
    // transaction of its own, in a clean session; if it fails, the server skips to the Sync.
    let prefix = this.#resetPending ? RESET_PREFIX : null;
    if (pieces === null && !this.#simple && !this.#tagSegment && (!this.#session || this.#defer)) {
      // The common task: one statement, its tag and the reset ahead of it written in place, in
      // one buffer and one write (nothing to cork).
      wire.bytes(encodeExtended(prefix, text, (values ?? []) as (string | Buffer | null)[], journal, tag)); // pg only reads them
      return;
    }
    // One write: the task, and the trailer (the reset for the next task) right behind it.
    wire.cork();
    if (tag !== null && !this.#wrapped) {
      // Ahead of everything (behind the reset): in the task's transaction (a failed task rolls
      // it back, the reset undoes it after a success), or alone under its own Sync.
      prefix = encodeStatement(tag, prefix);
      if (this.#tagSegment) {
        wire.bytes(prefix);
        wire.sync();
        prefix = null;
      }
    }
    // One statement (with parameters, or plain DML behind the reset or the tag), and at most the
    // journal's statement behind it: the whole task, its prefix included, goes as one buffer
    // (pg/wire-bytes.ts).
    const whole = pieces === null && !this.#simple;
    if (!whole && prefix !== null) wire.bytes(prefix);
    if (whole) {
      // Unnamed statement and portal, unlimited Execute, Sync: nothing cached on the server.
      wire.bytes(encodeExtended(prefix, text, (values ?? []) as (string | Buffer | null)[], journal)); // pg only reads them
    } else if (pieces === null) {
      // Alone and plain: one simple Query. The text holds no `;` but a last one: a line break
      // ends a trailing `--` comment.
      wire.query(journal === null ? text : `${text}\n;${journal}`);
    } else if (pieces.length === 1 || this.#inTransaction) {
      // Alone under its Sync it may be a statement that refuses a transaction block (VACUUM);
      // in the caller's transaction, the statements need no block of ours.
      for (let i = 0; i < pieces.length; i++) statement(wire, pieces[i]!, i === pieces.length - 1);
      if (journal !== null) statement(wire, journal, false);
      wire.sync();
    } else {
      // One Parse per statement, inside our own transaction block: every statement commits
      // with the last, and a procedure or DO block cannot commit on its own (2D000), just as
      // in a multi-statement simple query. The first error skips the rest up to the Sync and
      // leaves the block aborted; the COMMIT behind the Sync then ends it either way, without
      // a warning: it commits an open block and rolls back an aborted one. It goes as a simple
      // Query: the server then sends its CommandComplete and ReadyForQuery before it looks at a
      // terminate again, so a commit is never followed by a FATAL alone (as it can be after an
      // Execute, whose answers wait in the server's buffer while it reads the next message).
      statement(wire, BEGIN_SQL, false);
      if (tag !== null) statement(wire, statementText(tag), false); // inside our block: it ends with the work
      for (let i = 0; i < pieces.length; i++) statement(wire, pieces[i]!, i === pieces.length - 1);
      if (journal !== null) statement(wire, journal, false);
      wire.sync();
      wire.query(COMMIT_SQL);
    }
    if (this.#session && !this.#defer) wire.query(this.#session.trailer);
    wire.uncork();
  }

  rowDescription(fields: ResultField[]): void {
    if (this.#isLast()) this.#sink.columns(fields);
  }

  /** The first row: the sink's queue, attached to the flow control from now on (rows only ever push). */
  #openQueue(): RowQueue {
    const queue = this.#sink.queue;
    queue.attach(this.#flow!);
    this.#queue = queue;
    return queue;
  }

  /**
   * For the liveness monitor (pool/liveness-monitor.ts Watch): reading is paused only by a full
   * queue, so never before the first row.
   */
  get paused(): boolean {
    return this.#queue?.paused ?? false;
  }

  /** The server side is gone: rows still on their way are read regardless of the budget. */
  unbound(): void {
    (this.#queue ?? this.#sink.queue).unbound();
  }

  dataRow(fields: (string | null)[], bytes: number): void {
    if (!this.#isLast() || this.#ours()) return;
    this.#rows++;
    (this.#queue ?? this.#openQueue()).push(fields, bytes);
  }

  commandComplete(tag: string): void {
    if (this.#ours()) {
      // The reset prefix or the tag's SET: not one of the task's statements.
      this.#oursLeft--;
      this.#resetPending = false;
      return;
    }
    if (this.#closing) {
      this.#commitTag = tag; // our COMMIT: 'COMMIT', or 'ROLLBACK' after a failure
      return;
    }
    if ((this.#wrapped ? this.#statement > 0 : this.#inTransaction) && endsTransaction(tag)) {
      // Refused before sending, so never expected: the lexer and the server disagreed on where
      // a statement starts. What ran before it may have committed.
      this.#escaped ??= tag;
    }
    if (this.#isLast()) {
      if (tag !== parsedTag.text) parseTag(tag);
      this.#commandTag = parsedTag.command;
      this.#tagCount = parsedTag.count;
    }
    this.#statement++;
  }

  copyInRefusal(): string {
    return COPY_IN_REFUSAL;
  }

  /**
   * Terminal (pg drops the task at an ErrorResponse), but for a wrapped task's statement: then
   * the task waits, queued again, for the answer to its COMMIT (the rollback).
   */
  error(error: Error): boolean {
    if (this.#closing) {
      this.#finish(this.#commitOutcome(error));
      return false;
    }
    const fromServer = error instanceof pg.DatabaseError;
    if (this.#resetPending && fromServer) {
      // The previous task's reset failed: the server skipped this task (up to its Sync). Only the
      // server's word proves it: it answers in order, so the reset's CommandComplete would have
      // come first had it succeeded. (A lost connection proves nothing: see below.)
      this.#resetFailed = true;
      this.#finish(error);
      return false;
    }
    if (this.#tagSegment) {
      // The tag failed under its own Sync (a cancel request that landed on it, say: the stopper
      // sends it again). The task behind it is on the wire and runs: its answers follow.
      this.#tagSegment = false;
      this.#oursLeft = 0;
      if (fromServer && error.severity === 'ERROR') return true;
    }
    const { pieces, values, statementCount } = this.#plan;
    if (this.#simple && !this.#inTransaction && this.#statement === statementCount + this.#extra) {
      // A simple query commits its (last) statement before it sends the CommandComplete: whatever
      // broke after it (a terminate, the network), the work is done.
      this.#finish(null);
      return false;
    }
    if (pieces !== null && fromServer && error.position !== undefined && !this.#ours()) {
      // The server counts from the start of the statement's own Parse: make it the caller's text.
      const piece = this.#wrapped ? this.#statement - 1 : this.#statement;
      if (piece >= 0 && piece < pieces.length) {
        let offset = 0;
        for (let i = 0; i < piece; i++) offset += pieces[i]!.length + 1; // the `;` between
        error.position = String(Number(error.position) + codePoints(this.#plan.text, offset));
      }
    }
    if (fromServer && PROOF_REFUSALS.has(error.code!) && this.#journal !== null && this.#statement === statementCount + (this.#wrapped ? 1 : 0)) {
      // Every statement of the task ran; the journal's proof behind them failed. Read-only: the
      // SQL made its transaction so in a way its text does not show (a function, say). Anything
      // else (the right to insert revoked, the table dropped, a role the SQL switched to): say
      // that too. Either way the transaction rolled back, and the writer looks at the right again.
      error.hint ??= error.code === READ_ONLY_TRANSACTION ? JOURNAL_READ_ONLY_HINT : `${JOURNAL_REFUSED_HINT} (${error.code}: ${error.message})`;
      this.#proofRefused = true;
    }
    if (this.#wrapped && fromServer) {
      this.#failure = error;
      return this.#awaitCommit();
    }
    this.#finish(error);
    return false;
  }

  /**
   * What an error while our COMMIT was in flight means. After a failure the block could only roll
   * back. After a CommandComplete 'COMMIT' it committed (the connection broke after). An ERROR is
   * the COMMIT failing (a deferred constraint, a cancel): rolled back. A terminate (FATAL 57P01) or
   * an idle-in-transaction timeout (FATAL 25P03) is acted on only where the server checks for
   * interrupts, never between a simple query's commit and the flush of its CommandComplete and
   * ReadyForQuery: without that CommandComplete, it came before the commit. Anything else (a
   * crash's 57P02, which a backend obeys at once, or a lost connection) leaves the outcome unknown.
   */
  #commitOutcome(error: Error): Error | null {
    if (this.#failure) return this.#failure;
    if (this.#commitTag === 'COMMIT') return null;
    if (error instanceof pg.DatabaseError) {
      if (error.severity === 'ERROR') return error;
      if (error.severity === 'FATAL' && (error.code === '57P01' || error.code === '25P03')) return error;
    }
    return new WorkerFailure(
      CONNECTION_FAILURE,
      `outcome unknown: the connection ended while the worker's COMMIT was in flight (${error.message}); it may have committed`,
    );
  }

  readyForQuery(): boolean {
    if (this.#tagSegment) {
      this.#tagSegment = false; // the tag's own Sync: the task's answers come next
      return true;
    }
    if (this.#closing) {
      this.#finish(this.#failure);
      return false;
    }
    const expected = this.#plan.statementCount + (this.#wrapped ? 1 : 0) + this.#extra;
    // The server ran a different number of statements than we counted: the "last statement"
    // rows may be the wrong ones. Never report such a result as a success.
    const mismatch =
      this.#statement === expected
        ? null
        : new Error(`pg-background counted ${this.#plan.statementCount} statements but the server ran ${this.#statement}; please report this SQL`);
    if (this.#wrapped) {
      this.#failure = mismatch;
      return this.#awaitCommit();
    }
    this.#finish(mismatch);
    return false;
  }

  /** Statements of ours counted with the task's, besides BEGIN: the journal's. */
  get #extra(): number {
    return this.#journal === null ? 0 : 1;
  }

  /** The answers to the COMMIT behind the first Sync come next: queue the task again for them. */
  #awaitCommit(): true {
    this.#closing = true;
    return true;
  }

  #isLast(): boolean {
    return !this.#closing && this.#statement === this.#resultIndex;
  }

  /** The next answers are those of our own leading statements (reset prefix, tag). */
  #ours(): boolean {
    return this.#oursLeft > 0 && this.#statement === this.#oursAt;
  }

  #finish(error: Error | null): void {
    if (this.#finished) return;
    if (this.#escaped !== null) {
      // Never report a rollback that may not have happened (a cancel would otherwise say
      // `canceled`), nor one transaction where there were two: after an escaped ROLLBACK the
      // rest commits on its own, after an escaped COMMIT what came before it did.
      const then = error ? `the task then failed: ${error.message}` : 'the task then ended without an error';
      error = new WorkerFailure(
        CONNECTION_FAILURE,
        `outcome unknown: the server ran a transaction control statement (${this.#escaped}) that pg-background did not see in the SQL, so part of the work may have committed and part not; ${then}. Please report this SQL`,
      );
    }
    this.#finished = true;
    this.#queue?.detach();
    if (this.#defer) this.#session?.resetDeferred();
    else this.#session?.taskEnded();
    const outcome: TaskOutcome = { error, commandTag: this.#commandTag, rowCount: this.#tagCount ?? this.#rows };
    const final = this.#resetFailed ? { ...outcome, resetFailed: true } : this.#proofRefused ? { ...outcome, proofRefused: true } : outcome;
    this.#outcome = final;
    this.#resolve?.(final);
    if (this.#end) dueEnds.add(this);
  }
}

/**
 * Whether TaskQuery.write opens the task with a Parse (parameters, or one Parse per statement)
 * rather than one simple Query: what the launcher's never-ran rule (results/error-info.ts
 * provesNeverRan) needs to know, decided here beside the write so the two cannot drift.
 */
export function startsWithParse(plan: TaskPlan): boolean {
  return plan.values !== null || plan.pieces !== null;
}

/** Unnamed statement and portal, unlimited Execute; a Describe for the result's columns. */
function statement(wire: WireWriter, text: string, describe: boolean): void {
  wire.parse(text);
  wire.bind([]);
  if (describe) wire.describePortal();
  wire.execute();
}

// Command tags of PostgreSQL's TransactionStmt.
const TRANSACTION_TAGS = new Set([
  'BEGIN',
  'START TRANSACTION',
  'COMMIT',
  'ROLLBACK',
  'SAVEPOINT',
  'RELEASE',
  'PREPARE TRANSACTION',
  'COMMIT PREPARED',
  'ROLLBACK PREPARED',
]);

function endsTransaction(tag: string): boolean {
  return TRANSACTION_TAGS.has(tag);
}

/** PostgreSQL counts positions in characters: code points, where UTF-16 counts surrogate pairs twice. */
function codePoints(text: string, end: number): number {
  let count = end;
  for (let i = 0; i < end; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < end) {
      count--;
      i++;
    }
  }
  return count;
}

function isDigits(text: string, from: number, to: number): boolean {
  if (from >= to) return false;
  for (let i = from; i < to; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return false;
  }
  return true;
}
