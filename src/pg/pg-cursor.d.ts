// pg-cursor (node-postgres' own cursor, a Submittable) as src/pg/cursor-reader.ts uses it; the
// package ships no types. Only the members used there: its Submittable handlers (the protocol
// pg drives it by, see submittable.ts), read() and close().
declare module 'pg-cursor' {
  import type { EventEmitter } from 'node:events';

  class Cursor extends EventEmitter {
    constructor(text: string, values: readonly unknown[] | null, config?: Record<string, unknown>);
    read(rows: number): Promise<unknown[]>;
    close(): Promise<void>;
    submit(connection: unknown): void;
    handleRowDescription(message: { fields: unknown[] }): void;
    handleDataRow(message: { fields: (string | null)[]; length: number }): void;
    handleCommandComplete(message: { text: string }): void;
    handlePortalSuspended(): void;
    handleReadyForQuery(): void;
    handleEmptyQuery(): void;
    handleError(error: Error): void;
    /** Sends the first queued read, if any. // internal */
    _shiftQueue(): void;
  }
  export default Cursor;
}
