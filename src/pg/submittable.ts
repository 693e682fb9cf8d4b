// pg's Submittable protocol, and the two readers this library puts in pg's query queue: a task
// (a WireReader, in our own words, behind WireTask) and the TrailerReader of a reset written
// behind it. pg hands every answer to the query whose turn it is, and the warm connection relies
// on how that turn passes (pinned by test/pg-contract.test.ts):
// - At ReadyForQuery pg drops the active query, records the transaction status, calls the
//   query's handleReadyForQuery, then starts the next queued one. A reader queued from inside
//   that handler becomes the active query at once and receives the next answers.
// - At ErrorResponse pg drops the active query and calls its handleError, nothing else on it;
//   a reader queued from there starts at the ReadyForQuery that follows.
// - Whatever pg queues, it submits when its turn comes: we write a task at once instead (behind a
//   reset still in flight, say) and make the later submit a no-op.
import type pg from 'pg';
import { connectionOf, internals, type ConnectionInternals } from './client-internals.js';

/** A column of a RowDescription, as pg-protocol parses it. */
export interface WireField {
  name: string;
  tableID: number;
  columnID: number;
  dataTypeID: number;
  dataTypeSize: number;
  dataTypeModifier: number;
  format: 'text' | 'binary';
}

/** What pg calls on a query it queued (lib/query.js and pg-cursor implement the same). */
interface Submittable {
  submit(connection: ConnectionInternals): void;
  handleRowDescription(message: { fields: WireField[] }): void;
  /** `length`: the DataRow message's length, as it came off the wire. */
  handleDataRow(message: { fields: (string | null)[]; length: number }): void;
  handleCommandComplete(message: { text: string }): void;
  handleEmptyQuery(): void;
  handlePortalSuspended(): void;
  handleCopyInResponse(connection: ConnectionInternals): void;
  handleCopyData(): void;
  handleError(error: Error): void;
  handleReadyForQuery(): void;
}

/** How a task writes its messages: one write, corked, with pause/resume for its row budget. */
export interface WireWriter {
  /** The socket's flow control: pause() stops reading from the server. */
  readonly flow: { pause(): unknown; resume(): unknown };
  cork(): void;
  uncork(): void;
  /** A simple Query. */
  query(text: string): void;
  /** Unnamed statement. */
  parse(text: string): void;
  /** Unnamed portal of the unnamed statement. */
  bind(values: (string | Buffer | null)[]): void;
  /** Describe of the unnamed portal (its RowDescription). */
  describePortal(): void;
  /** Execute of the unnamed portal, no row limit. */
  execute(): void;
  sync(): void;
  /** Messages encoded beforehand (see wire-bytes.ts), written as they are. */
  bytes(messages: Buffer): void;
}

/** A task's side of the wire, in our words: what it writes, and what it is told. */
export interface WireReader {
  /** Called once, when the task is started (see startTask). */
  write(writer: WireWriter): void;
  rowDescription(fields: WireField[]): void;
  dataRow(fields: (string | null)[], bytes: number): void;
  commandComplete(tag: string): void;
  /** The server wants COPY data: the text of the CopyFail to answer with. */
  copyInRefusal(): string;
  /**
   * An ErrorResponse or a connection error. Returns true when answers of this task still follow
   * (a COMMIT written behind the first Sync): they come to it after the next ReadyForQuery.
   */
  error(error: Error): boolean;
  /** A ReadyForQuery. Returns true, as error() does, when answers of this task still follow. */
  readyForQuery(): boolean;
}

/** The Submittable behind a WireReader. */
class WireTask implements Submittable {
  readonly #client: pg.Client;
  readonly #reader: WireReader;
  #sent = false;

  constructor(client: pg.Client, reader: WireReader) {
    this.#client = client;
    this.#reader = reader;
  }

  /** pg calls this at the task's turn, and again when it is queued again: written once. */
  submit(connection: ConnectionInternals): void {
    if (this.#sent) return;
    this.#sent = true;
    this.#reader.write(writerOf(connection));
  }

  handleRowDescription(message: { fields: WireField[] }): void {
    this.#reader.rowDescription(message.fields);
  }

  handleDataRow(message: { fields: (string | null)[]; length: number }): void {
    this.#reader.dataRow(message.fields, message.length);
  }

  handleCommandComplete(message: { text: string }): void {
    this.#reader.commandComplete(message.text);
  }

  handleEmptyQuery(): void {}

  handlePortalSuspended(): void {}

  handleCopyInResponse(connection: ConnectionInternals): void {
    connection.sendCopyFail(this.#reader.copyInRefusal());
  }

  handleCopyData(): void {}

  /** pg dropped the task (terminal for pg): queued again if its answers go on. */
  handleError(error: Error): void {
    if (this.#reader.error(error)) internals(this.#client).query(this);
  }

  /** pg dropped the task, and starts what is queued next right after this returns. */
  handleReadyForQuery(): void {
    if (this.#reader.readyForQuery()) internals(this.#client).query(this);
  }
}

/** One writer per connection, made at its first task: nothing of it is per task. */
const writers = new WeakMap<ConnectionInternals, WireWriter>();

function writerOf(connection: ConnectionInternals): WireWriter {
  let writer = writers.get(connection);
  if (writer === undefined) writers.set(connection, (writer = newWriter(connection)));
  return writer;
}

function newWriter(connection: ConnectionInternals): WireWriter {
  const stream = connection.stream;
  return {
    flow: stream,
    cork: () => stream.cork(),
    uncork: () => stream.uncork(),
    query: (text) => connection.query(text),
    parse: (text) => connection.parse({ text }),
    bind: (values) => connection.bind({ values }),
    describePortal: () => connection.describe({ type: 'P', name: '' }),
    execute: () => connection.execute({}),
    sync: () => connection.sync(),
    bytes: (messages) => void stream.write(messages),
  };
}

/**
 * Runs a task on `client`: pg routes its answers to it, and it is written at once, even when pg
 * still waits for the answers of something before it (the server answers in order, and pg hands
 * the answers out in the same order).
 */
export function startTask(client: pg.Client, reader: WireReader): void {
  const task = new WireTask(client, reader);
  internals(client).query(task);
  task.submit(connectionOf(client));
}

/**
 * Reads the answers to SQL already on the wire (a reset written behind a task), up to its
 * ReadyForQuery, for pg, which hands every answer to the query whose turn it is. One per
 * connection, used again for every trailer.
 */
export class TrailerReader {
  readonly #client: pg.Client;
  readonly #submittable: Submittable;

  /** `done` is called once per expect(): with null at the ReadyForQuery, or with the error. */
  constructor(client: pg.Client, done: (error: Error | null) => void) {
    this.#client = client;
    this.#submittable = {
      submit() {}, // already on the wire
      handleRowDescription() {},
      handleDataRow() {},
      handleCommandComplete() {},
      handleEmptyQuery() {},
      handlePortalSuspended() {},
      handleCopyInResponse() {},
      handleCopyData() {},
      handleReadyForQuery() {
        done(null);
      },
      handleError(error: Error) {
        done(error);
      },
    };
  }

  /**
   * The answers after the current query's are the trailer's. Call it from the task's last
   * handler (error() or readyForQuery()), before pg looks for a reader of what comes next.
   */
  expect(): void {
    internals(this.#client).query(this.#submittable);
  }
}
