// One dedicated PostgreSQL connection that runs worker tasks, one at a time. It knows its real
// backend pid and start time (read once, at connect), its cancel key, when it last heard from
// the server, whether it is still fit to run another task, and how to close. It never decides a
// task's state. Behind a connection pooler (see pooler.ts) it also knows that it is pooled, and
// while a task's transaction holds a backend, that backend's identity (pinned).
import { IDENTITY_SQL, RESET_SQL, ROLLBACK_SQL } from '../catalog.js';
import pg from 'pg';
import {
  backendKey,
  endpointOf,
  onParameterStatus,
  socketOf,
  startCopyIn,
  startCopyOut,
  shortcutAnswers,
  startCursor,
  startTask,
  TrailerReader,
  transactionStatus,
  writeFlush,
  type CancelTarget,
  type CopyEnd,
  type CopyIn,
  type CopyOut,
  type CursorReader,
  type CursorSink,
  type WireReader,
} from '../pg/index.js';
import type { TaskSession } from '../results/task-query.js';
import { settlesWithin, withDeadline } from './deadline.js';
import { CHECKED_SETTINGS, unreadableSetting } from './readable-settings.js';

/** A NoticeResponse as node-postgres parses it (the fields we read). */
export interface ServerNotice {
  message: string | undefined;
  severity?: string | undefined;
  code?: string | undefined;
  detail?: string | undefined;
  hint?: string | undefined;
  where?: string | undefined;
}

/** Where a connection's notices go while it runs a task (an object: no closure per task). */
export interface NoticeSink {
  notice(notice: ServerNotice): void;
}

/** A backend is named by its pid and its start time: pids are reused, the pair is not. */
export interface BackendIdentity {
  readonly pid: number;
  /** backend_start in microseconds since the epoch, as text (exact). */
  readonly started: string;
}

/** The reported settings a worker connection keeps track of (every other ParameterStatus it ignores). */
const HEARD_SETTINGS: ReadonlySet<string> = new Set(['standard_conforming_strings', ...CHECKED_SETTINGS]);

/** The server's words for a backend that is going away (admin or crash shutdown, starting up). */
const SHUTDOWN_CODES = new Set(['57P01', '57P02', '57P03']);
/** A first answer that proves the task was read (ParseComplete's type byte). */
const ANSWERED = 0x31;

export class WorkerConnection implements BackendIdentity, TaskSession {
  #pid = 0;
  #user = '';
  #started = '';
  #callerCheckMs: number | null = null;
  /** A pooler stands in between (see pooler.ts): set at connect, never changes. */
  #pooled = false;
  /** Behind a pooler: a transaction of ours is open and holds backend #pid (see pooler.ts). */
  #pinned = false;
  readonly #client: pg.Client;
  readonly #stream: pg.ClientConfig['stream'];
  #standardConformingStrings = true;
  /** The last value the server reported for each of CHECKED_SETTINGS. */
  readonly #reported = new Map<string, string>();
  #lastReceivedAt = Date.now();
  /** A task was written and nothing has arrived since (see firstAnswer). */
  #awaitingAnswer = false;
  #firstAnswer: number | null = null;
  #failure: Error | null = null;
  #ended = false;
  #onNotice: NoticeSink | null = null;
  /** Reads the answers of a reset written right behind a task (see TaskQuery). */
  readonly #resetReader: TrailerReader;
  /** A reset is on the wire and its answers have not all come back yet. */
  #resetInFlight = false;
  #resetWaiters: (() => void)[] | null = null;
  /**
   * The session is known to be as a new connection's: set by a reset the server confirmed, cleared
   * whenever the connection is handed out (whatever runs on it may change the session).
   */
  #clean = false;
  /**
   * The last task deferred its reset (see results/task-query.ts): nothing is on the wire, and the
   * next task must carry the reset as its prefix (takePrefixReset) or run it first (reset()).
   */
  #needsReset = false;
  #onFailure: ((error: Error, connection: WorkerConnection) => void) | null = null;
  #closing: Promise<void> | null = null;

  /** Deadline of our own requests on this connection (setup, settings, reset). */
  readonly #timeoutMs: number;

  private constructor(config: pg.ClientConfig, timeoutMs: number) {
    this.#timeoutMs = timeoutMs;
    this.#stream = config.stream;
    this.#client = new pg.Client(config);
    this.#resetReader = new TrailerReader(this.#client, (error) => this.#resetDone(error));
    // Listeners from birth: a backend terminated under an idle client must never crash the
    // process, and nothing the server says may go unheard.
    this.#client.on('error', (error: Error) => this.#fail(error));
    this.#client.on('end', () => {
      this.#ended = true;
      this.#fail(new Error('Connection terminated'));
    });
    this.#client.on('notice', (notice: ServerNotice) => {
      // pg parses a chunk before our 'data' listener (added after connect) sees it: a notice now,
      // with a task's first answer still awaited, came in that first chunk. Only a shutdown warning
      // proves the task was never read; any other (the task's own Parse can raise one: an
      // identifier truncated, say) is an answer to it, so it counts as one.
      if (this.#awaitingAnswer && !SHUTDOWN_CODES.has(notice.code ?? '')) {
        this.#awaitingAnswer = false;
        this.#firstAnswer = ANSWERED;
      }
      this.#onNotice?.notice(notice);
    });
    onParameterStatus(this.#client, HEARD_SETTINGS, (name, value) => {
      if (name === 'standard_conforming_strings') this.#standardConformingStrings = value === 'on';
      else this.#reported.set(name, value);
    });
  }

  /**
   * Connects (within the config's connectionTimeoutMillis) and reads the backend's identity.
   * `timeoutMs` bounds every request of ours on the connection: past it, the connection is dropped.
   */
  static async open(config: pg.ClientConfig, timeoutMs: number): Promise<WorkerConnection> {
    const connection = new WorkerConnection(config, timeoutMs);
    try {
      await connection.#client.connect();
      // After connect: with TLS the stream is replaced during the handshake. The short way for a
      // task's plain answers goes first, in pg's parser's place (src/pg/answer-shortcut.ts).
      shortcutAnswers(connection.#client);
      socketOf(connection.#client).on('data', (chunk: Buffer) => {
        connection.#lastReceivedAt = Date.now();
        if (connection.#awaitingAnswer) {
          connection.#awaitingAnswer = false;
          connection.#firstAnswer = chunk[0] ?? null;
        }
      });
      const { rows } = await connection.query<{ pid: number; user: string; started: string; caller_check: number | null }>(IDENTITY_SQL);
      if (connection.#failure) throw connection.#failure;
      for (const [name, value] of connection.#reported) {
        const why = unreadableSetting(name, value);
        if (why) {
          throw new Error(
            `the session starts with ${name} = '${value}' (from the role, the database, the server or the connection's options): ${why}; set it for the role or database used by pg-background (ALTER ROLE ... SET ${name} = ...)`,
          );
        }
      }
      const [identity] = rows;
      connection.#pid = identity!.pid;
      connection.#user = identity!.user;
      connection.#started = identity!.started;
      connection.#callerCheckMs = identity!.caller_check;
      // The key a pooler hands out is its own, not the backend's: nothing else tells us it is there.
      connection.#pooled = backendKey(connection.#client)?.processID !== identity!.pid;
      connection.#clean = true; // a new session
      return connection;
    } catch (error) {
      connection.destroy();
      await connection.close();
      throw error;
    }
  }

  /** client_connection_check_interval in ms on this session (null before PostgreSQL 14). */
  get callerCheckMs(): number | null {
    return this.#callerCheckMs;
  }

  /**
   * True when a pooler stands between us and the server: the BackendKeyData does not name the
   * backend that answered (a direct connection always gets its own backend's). The backend may
   * then change after every transaction: see pooler.ts.
   */
  get pooled(): boolean {
    return this.#pooled;
  }

  /** Behind a pooler: a transaction of ours is open on backend `pid`, which only we can end. */
  get pinned(): boolean {
    return this.#pinned;
  }

  /**
   * Signals by pid (pg_cancel_backend, pg_terminate_backend) and checks in pg_stat_activity can
   * only reach our own session: always on a direct connection, behind a pooler only while pinned.
   */
  get signalSafe(): boolean {
    return !this.#pooled || this.#pinned;
  }

  /** Our transaction is open on `backend` (read inside it): the task's pid is that backend's. */
  pin(backend: { pid: number; started: string }): void {
    this.#pid = backend.pid;
    this.#started = backend.started;
    this.#pinned = true;
  }

  /** About to end the pinned transaction: from now on the backend may serve someone else. */
  unpin(): void {
    this.#pinned = false;
  }

  /** Real backend pid, from pg_backend_pid() (poolers hand out their own BackendKeyData). */
  get pid(): number {
    return this.#pid;
  }

  get started(): string {
    return this.#started;
  }

  /** Role the connection logged in as. */
  get user(): string {
    return this.#user;
  }

  /** The error that made this connection unusable, if any (fatal error, terminate, socket loss). */
  get failure(): Error | null {
    return this.#failure;
  }

  /**
   * The type byte of the first message the server sent after the last task was written (such as
   * 0x31 ParseComplete, 0x45 ErrorResponse, 0x4e NoticeResponse), or null while none has come.
   * Tasks go only to a connection whose last answer (a reset's or setup's ReadyForQuery) was read
   * to its end, so the first byte after the write starts a message, whatever it answers.
   */
  get firstAnswer(): number | null {
    return this.#firstAnswer;
  }

  /** When a byte last came from the server (ms since the epoch). */
  get lastReceivedAt(): number {
    return this.#lastReceivedAt;
  }

  get standardConformingStrings(): boolean {
    return this.#standardConformingStrings;
  }

  /** Transaction status from the last ReadyForQuery: 'I' idle, 'T' in a transaction, 'E' failed one. */
  get transactionStatus(): 'I' | 'T' | 'E' | null {
    return transactionStatus(this.#client);
  }

  get cancelTarget(): CancelTarget | null {
    // pg's resolved TLS settings: from the config, the connection string or PGSSLMODE alike.
    const key = backendKey(this.#client);
    if (key === null) return null;
    return { ...endpointOf(this.#client), ...key, stream: this.#stream };
  }

  /**
   * Out of its pool for a task: set and cleared by ConnectionPool alone (a field, not a set of the
   * pool's: a set that goes from one connection to none every task has V8 shrink and regrow it).
   */
  lent = false;

  /** Where notices raised while this connection runs a task go. */
  set onNotice(sink: NoticeSink | null) {
    this.#onNotice = sink;
  }

  /** Called once if the connection breaks (with the error and this connection). */
  set onFailure(callback: ((error: Error, connection: WorkerConnection) => void) | null) {
    this.#onFailure = callback;
  }

  /**
   * Runs a task (a TaskQuery): pg routes its answers to it, and it is written at once, even when
   * pg still waits for the previous task's reset answers; the server takes them in order.
   */
  run(task: WireReader): void {
    this.#firstAnswer = null;
    this.#awaitingAnswer = true;
    startTask(this.#client, task);
  }

  /**
   * Runs a task's statement through a cursor (cursor mode, results/cursor-task.ts): pg submits it
   * behind whatever it runs now (a reset still in flight), with `opening` run first in its write.
   */
  runCursor(opening: string, text: string, values: readonly (string | Buffer | null)[] | null, sink: CursorSink): CursorReader {
    this.#firstAnswer = null;
    this.#awaitingAnswer = true;
    return startCursor(this.#client, opening, text, values, sink);
  }

  /** Runs a COPY ... TO STDOUT (a copyTo worker, results/copy-task.ts); its data comes as chunks. */
  runCopyOut(text: string, end: CopyEnd): CopyOut {
    // Our 'data' listener is set aside while the export reads the socket: it says when bytes come.
    return startCopyOut(this.#client, text, end, () => (this.#lastReceivedAt = Date.now()));
  }

  /** Runs a COPY ... FROM STDIN (a copyFrom worker); its data goes to the returned Writable. */
  runCopyIn(text: string, end: CopyEnd): CopyIn {
    return startCopyIn(this.#client, text, end);
  }

  /** The connection is handed to a worker: from now on its session may change. */
  checkedOut(): void {
    this.#clean = false;
  }

  /** The session needs the reset the last task deferred (before any other task, or once idle). */
  get needsReset(): boolean {
    return this.#needsReset && this.#failure === null;
  }

  /**
   * The next task carries the deferred reset as its prefix, under its own Sync: from now on the
   * reset is on the wire with it (if it fails, the server skips the task and the connection goes).
   */
  takePrefixReset(): boolean {
    if (!this.needsReset || this.transactionStatus !== 'I') return false;
    this.#needsReset = false;
    return true;
  }

  /** A task that wrote no trailer has ended: the session needs the reset it deferred. */
  resetDeferred(): void {
    this.#needsReset = true;
  }

  /** What a task writes behind itself so that this connection is clean for the next one. */
  get trailer(): string {
    return RESET_SQL;
  }

  /**
   * A task with RESET_SQL written behind it has ended (called from its last handler, before pg
   * looks for a reader of what comes next).
   */
  taskEnded(): void {
    this.#resetInFlight = true;
    this.#resetReader.expect();
  }

  #resetDone(error: Error | null): void {
    this.#resetInFlight = false;
    // Only a reset the server confirmed makes the connection clean: had the next task been sent
    // behind it, a failed reset (a statement_timeout the last task set, say) would have let it
    // run in the last task's session.
    if (error) this.destroy(new Error(`the connection's reset failed: ${error.message}`));
    else if (this.transactionStatus === 'I') this.#clean = true;
    const waiters = this.#resetWaiters;
    this.#resetWaiters = null;
    if (waiters) for (const wake of waiters) wake();
  }

  /** Resolves once no reset is in flight. */
  #resetSettled(): Promise<void> {
    if (!this.#resetInFlight) return Promise.resolve();
    return new Promise((resolve) => (this.#resetWaiters ??= []).push(resolve));
  }

  /**
   * True when another task can run now: the server has confirmed a reset since the last one, or
   * the last task deferred its reset (the next one carries it, or runs it first).
   */
  get ready(): boolean {
    return (this.#clean || (this.#needsReset && this.transactionStatus === 'I')) && this.#failure === null;
  }

  /** Makes the connection clean for another task: waits for the reset on the wire, or runs one. */
  async reset(): Promise<void> {
    await this.#withinDeadline(this.#resetSettled());
    if (this.#failure) throw this.#failure;
    if (this.#clean) return;
    if (this.transactionStatus !== 'I') await this.query(ROLLBACK_SQL);
    await this.query(RESET_SQL);
    if (this.#failure) throw this.#failure;
    this.#needsReset = false;
    this.#clean = true;
  }

  /**
   * One round trip (an empty query) that proves the connection still works: for a warm one that
   * idled long enough to have died unnoticed. Rejects if the server does not answer within the
   * deadline (the connection is dropped then), or the connection fails.
   */
  async check(): Promise<void> {
    await this.query('');
    if (this.#failure) throw this.#failure;
  }

  /** A plain query on this connection (setup and reset, never user SQL). */
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>> {
    return this.#withinDeadline(this.#client.query<R>(text, values));
  }

  /** `promise`, unless the server stays silent past the deadline: then the connection is dropped. */
  #withinDeadline<T>(promise: Promise<T>): Promise<T> {
    return withDeadline(promise, this.#timeoutMs, () => {
      const error = new Error(`the server did not answer within ${this.#timeoutMs} ms`);
      this.destroy(error);
      return error;
    });
  }

  /**
   * Writes a Flush message, to learn whether the socket still has a peer without reading from it
   * (a paused socket sees neither the peer's end nor its reset): a live backend reads it after
   * whatever it is doing and answers nothing; to a peer that is gone the write brings a reset,
   * and a later one fails, which fails the connection (08006) like any socket error.
   */
  poke(): void {
    if (!this.#failure) writeFlush(this.#client);
  }

  /** Lets the process exit while this connection is idle. */
  unref(): void {
    socketOf(this.#client).unref();
  }

  ref(): void {
    socketOf(this.#client).ref();
  }

  /** Closes the connection politely (Terminate message); drops the socket if that hangs. */
  close(timeoutMs = 5000): Promise<void> {
    this.#closing ??= (async () => {
      await this.#settle(timeoutMs);
      if (this.#ended) return;
      if (!(await settlesWithin(this.#client.end(), timeoutMs))) socketOf(this.#client).destroy();
    })();
    return this.#closing;
  }

  /** Lets a reset on the wire finish (briefly), so close() ends the session with a Terminate. */
  async #settle(timeoutMs: number): Promise<void> {
    if (this.#resetInFlight && !this.#failure) await settlesWithin(this.#resetSettled(), timeoutMs);
  }

  /** Drops the socket at once, without telling the server (it notices on its own). */
  destroy(reason = new Error('connection dropped by pg-background')): void {
    this.#fail(reason);
    socketOf(this.#client).destroy();
  }

  #fail(error: Error): void {
    if (this.#failure) return;
    this.#failure = error;
    const onFailure = this.#onFailure;
    this.#onFailure = null;
    onFailure?.(error, this);
  }
}
