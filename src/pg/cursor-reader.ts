// A worker's statement read through a pg-cursor portal (cursor mode): pg-cursor keeps the
// extended-protocol state machine (Parse/Bind/Describe of a named portal, Execute of n rows and
// Flush per read, Close and Sync at the end); this subclass opens the worker's own transaction
// block in the same write (Parse/Bind/Execute of the caller's BEGIN, before pg-cursor's Parse) and hands
// each DataRow raw to the task, as the default path does, instead of letting pg-cursor parse it:
// rows are parsed only when the reader takes them. pg drives it as any Submittable (see
// submittable.ts): at ErrorResponse pg drops it, and pg-cursor then writes a Sync.
import Cursor from 'pg-cursor';
import type pg from 'pg';
import { internals, type ConnectionInternals } from './client-internals.js';
import type { WireField } from './submittable.js';

/** What the cursor tells its task (in our words). */
export interface CursorSink {
  rowDescription(fields: WireField[]): void;
  dataRow(fields: (string | null)[], bytes: number): void;
  /** The statement's CommandComplete (pg-cursor then closes the portal and syncs). */
  commandComplete(tag: string): void;
  /**
   * The cursor is over: null at the ReadyForQuery behind its Sync, or the ErrorResponse or
   * connection error (after a server error pg-cursor has written a Sync; its ReadyForQuery goes
   * to whatever pg runs next). Called once.
   */
  ended(error: Error | null): void;
}

/** The portal, as a task drives it. */
export interface CursorReader {
  /** Fetches up to `rows` more rows (Execute, Flush); resolves when they are in, rejects on error. */
  read(rows: number): Promise<unknown>;
  /** Closes the portal and ends the extended-protocol run (Close, Sync); sink.ended follows. */
  close(): Promise<void>;
}

class TaskCursor extends Cursor implements CursorReader {
  readonly #sink: CursorSink;
  readonly #opening: string;
  /** BEGIN's CommandComplete, ours, comes first. */
  #begun = false;
  #ended = false;

  constructor(opening: string, text: string, values: readonly (string | Buffer | null)[] | null, sink: CursorSink) {
    super(text, values);
    this.#opening = opening;
    this.#sink = sink;
  }

  override submit(connection: unknown): void {
    const con = connection as ConnectionInternals;
    // The transaction block first: unnamed statement and portal, no Sync (the Sync comes with
    // the Close, and the block stays open until our COMMIT or ROLLBACK).
    con.parse({ text: this.#opening });
    con.bind({ values: [] });
    con.execute({});
    super.submit(connection);
    // A read asked for before the submit is written now, behind the Describe, rather than after
    // the RowDescription came back: the first rows cost one round trip, as in the default path.
    this._shiftQueue();
  }

  override handleRowDescription(message: { fields: unknown[] }): void {
    super.handleRowDescription(message);
    this.#sink.rowDescription(message.fields as WireField[]);
  }

  override handleDataRow(message: { fields: (string | null)[]; length: number }): void {
    this.#sink.dataRow(message.fields, message.length);
  }

  override handleCommandComplete(message: { text: string }): void {
    if (!this.#begun) {
      this.#begun = true;
      return;
    }
    this.#sink.commandComplete(message.text);
    super.handleCommandComplete(message);
  }

  override handleReadyForQuery(): void {
    super.handleReadyForQuery();
    this.#end(null);
  }

  override handleError(error: Error): void {
    super.handleError(error);
    this.#end(error);
  }

  #end(error: Error | null): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#sink.ended(error);
  }
}

/**
 * Starts a cursor over `text` on `client` (pg submits it when what it runs now is over), with
 * `opening` (the BEGIN of the task's transaction block) run first. A read called at once goes
 * out in the same write as the cursor's Parse/Bind/Describe.
 */
export function startCursor(
  client: pg.Client,
  opening: string,
  text: string,
  values: readonly (string | Buffer | null)[] | null,
  sink: CursorSink,
): CursorReader {
  const cursor = new TaskCursor(opening, text, values, sink);
  internals(client).query(cursor);
  return cursor;
}
