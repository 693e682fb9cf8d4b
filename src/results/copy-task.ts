// COPY in the background (bg.copyTo, bg.copyFrom), through pg-copy-streams (src/pg/copy-streams.ts).
// A COPY is one statement, sent as a simple Query: it commits on its own or not at all (a bad row
// midway rolls back every row before it).
// - Export (COPY ... TO STDOUT): the data's Buffer chunks go into the worker's byte-bounded queue
//   and result(h) yields them as they are; a full queue pauses the stream, which stops reading the
//   socket, and the backend blocks writing (ClientWrite), as a row result does. Discarded
//   (submit, detach, close) it reads on, dropping chunks.
// - Load (COPY ... FROM STDIN): the caller's Readable is piped into the COPY, with the socket's
//   backpressure. Its end sends CopyDone; its error, or a cancel, sends CopyFail, which the
//   server answers with an error (57014) and a rollback. A cancel request alone would not do:
//   the server does not act on one while it waits for COPY data from us.
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import type { Readable } from 'node:stream';
import type { CopyEnd, CopyIn, CopyOut } from '../pg/index.js';
import { CONNECTION_FAILURE, WorkerFailure } from './error-info.js';
import type { RowQueue } from './row-queue.js';
import type { TaskOutcome } from './task-query.js';

/** The worker's connection, as a COPY task uses it (WorkerConnection). */
export interface CopyConnection {
  runCopyOut(text: string, end: CopyEnd): CopyOut;
  runCopyIn(text: string, end: CopyEnd): CopyIn;
}

/** 'COPY 1000' -> 1000. */
function copyCount(tag: string | null): number | null {
  const match = /^COPY (\d+)$/.exec(tag ?? '');
  return match ? Number(match[1]) : null;
}

/** COPY ... TO STDOUT into the queue. */
export class CopyOutTask {
  readonly done: Promise<TaskOutcome>;
  #resolve!: (outcome: TaskOutcome) => void;
  readonly #text: string;
  readonly #queue: RowQueue;
  #bytes = 0;

  constructor(text: string, queue: RowQueue) {
    this.#text = text;
    this.#queue = queue;
    this.done = new Promise((resolve) => (this.#resolve = resolve));
  }

  /** Bytes of COPY data received so far (the live rowCount is unknown until the end). */
  get rowCount(): number {
    return 0;
  }

  /** Bytes of data the server sent. */
  get bytes(): number {
    return this.#bytes;
  }

  start(connection: CopyConnection): void {
    const queue = this.#queue;
    const { data } = connection.runCopyOut(this.#text, {
      ended: (error, tag) => {
        queue.detach();
        this.#resolve({ error, commandTag: error ? null : 'COPY', rowCount: copyCount(tag) ?? 0 });
      },
    });
    queue.attach({ pause: () => data.pause(), resume: () => data.resume() });
    data.on('data', (chunk: Buffer) => {
      this.#bytes += chunk.length;
      queue.push(chunk, chunk.length);
    });
    data.on('error', () => {}); // the end hears it (CopyEnd)
  }
}

/** COPY ... FROM STDIN fed from the caller's Readable. */
export class CopyInTask {
  readonly done: Promise<TaskOutcome>;
  #resolve!: (outcome: TaskOutcome) => void;
  readonly #text: string;
  readonly #source: Readable;
  readonly #signal: AbortSignal;

  /** `signal` aborts on a cancel request (the worker's): the COPY is then failed (CopyFail). */
  constructor(text: string, source: Readable, signal: AbortSignal) {
    this.#text = text;
    this.#source = source;
    this.#signal = signal;
    this.done = new Promise((resolve) => (this.#resolve = resolve));
  }

  get rowCount(): number {
    return 0;
  }

  start(connection: CopyConnection): void {
    let server: { error: Error | null; tag: string | null } | null = null;
    let settle: () => void;
    const ended = new Promise<void>((resolve) => (settle = resolve));
    const copy = connection.runCopyIn(this.#text, {
      ended: (error, tag) => {
        server = { error, tag };
        settle();
      },
    });
    const onAbort = () => copy.data.destroy(new Error('canceling statement due to user request'));
    if (this.#signal.aborted) onAbort();
    else this.#signal.addEventListener('abort', onAbort, { once: true });
    // The source's own failure fails the COPY (pipeline destroys the Writable: CopyFail).
    const piped = pipeline(this.#source, copy.data).then(
      () => null,
      (error: unknown) => error as Error,
    );
    void Promise.all([piped, ended]).then(([local]) => {
      this.#signal.removeEventListener('abort', onAbort);
      const { error, tag } = server!;
      this.#resolve({ error: this.#outcome(error, local, copy.doneSent), commandTag: error ? null : 'COPY', rowCount: copyCount(tag) ?? 0 });
    });
  }

  /**
   * The server's word first (an ErrorResponse: rolled back; its ReadyForQuery: committed). A
   * connection that broke after CopyDone went out leaves the outcome unknown (the COPY may have
   * committed); before it, nothing can have.
   */
  #outcome(server: Error | null, local: Error | null, doneSent: boolean): Error | null {
    if (server === null) return null;
    if (server instanceof pg.DatabaseError) return server;
    if (doneSent) {
      return new WorkerFailure(
        CONNECTION_FAILURE,
        `outcome unknown: the connection ended after all the COPY's data was sent (${server.message}); it may have committed`,
      );
    }
    return local && local !== server
      ? new WorkerFailure(CONNECTION_FAILURE, `${server.message} (the source: ${local.message}); nothing was committed`)
      : server;
  }
}
