// pg-copy-streams (COPY TO STDOUT as a Readable, COPY FROM STDIN as a Writable, each a
// Submittable that pg runs) as src/pg/copy-streams.ts uses it; the package ships no types. Only
// the members used there, the internal ones marked.
declare module 'pg-copy-streams' {
  import type { Readable, Writable } from 'node:stream';

  interface CopyToStream extends Readable {
    rowCount: number;
    submit(connection: unknown): void;
    handleCommandComplete(message: { text: string }): void;
    handleReadyForQuery(): void;
    handleError(error: Error): void;
    /** Takes the socket's data listener over (it asserts there is exactly one). // internal */
    _attach(): void;
    /** Gives the socket back to pg. // internal */
    _detach(): void;
    /** Parses a chunk of socket data. // internal */
    _parse(chunk: Buffer): boolean;
  }

  interface CopyFromStream extends Writable {
    rowCount: number;
    submit(connection: unknown): void;
    handleCommandComplete(message: { text: string }): void;
    handleReadyForQuery(): void;
    handleError(error: Error): void;
    /** Writes CopyDone once the data is flushed. // internal */
    _final(callback: (error?: Error | null) => void): void;
  }

  const copyStreams: {
    to(text: string, options?: object): CopyToStream;
    from(text: string, options?: object): CopyFromStream;
  };
  export default copyStreams;
  export type { CopyFromStream, CopyToStream };
}
