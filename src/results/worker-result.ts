// result(h): the worker's rows as an async iterable, read once. Rows are parsed as they are
// read; reading frees queue budget, which lets the worker's connection read from the server
// again. Stopping early (break, return, an exception in the loop body) drops the rest, and the
// worker carries on to commit without blocking. stream() offers the same rows as a Node Readable.
import type { Readable } from 'node:stream';
import { PgBackgroundError } from '../errors.js';
import { resultStream } from './result-stream.js';
import type { RowParser, ResultField } from './row-parser.js';
import type { RowQueue } from './row-queue.js';

/** Why a worker's rows are being thrown away. */
export type DiscardReason = 'submit' | 'consumer' | 'cancel' | 'detach' | 'close' | 'prune';

/** What a result reader may change of its worker (a subset of the worker's changes). */
export type ResultChange = { readonly kind: 'consumed' } | { readonly kind: 'discarded'; readonly reason: 'consumer' };

/** What a worker offers its result reader. */
export interface ResultSource {
  readonly pid: number;
  readonly cookie: bigint;
  readonly label: string | null;
  readonly queue: RowQueue;
  readonly parser: RowParser | null;
  readonly discardReason: DiscardReason | null;
  /** False once the worker is terminal. */
  readonly active: boolean;
  readonly whenTerminal: Promise<void>;
  /** The worker's one transition point (Worker.apply). */
  apply(change: ResultChange): boolean;
  /** The worker's own failure or cancellation, once terminal. */
  workerError(): Error | null;
}

export class WorkerResult<R = Record<string, unknown>> implements AsyncIterable<R> {
  readonly #source: ResultSource;
  #iterated = false;

  constructor(source: ResultSource) {
    this.#source = source;
  }

  /** Column metadata of the last statement, once the server has described it (else null). */
  get fields(): readonly ResultField[] | null {
    return this.#source.parser?.fields ?? null;
  }

  [Symbol.asyncIterator](): AsyncIterator<R> {
    if (this.#iterated) {
      const { pid, cookie, label } = this.#source;
      throw new PgBackgroundError('PGBG_ALREADY_CONSUMED', `The result of worker pid ${pid} can be iterated only once`, { pid, cookie, label });
    }
    this.#iterated = true;
    return new RowIterator<R>(this.#source);
  }

  /** The rows as a Readable in object mode, read once like the iterator (see result-stream.ts). */
  stream(): Readable {
    return resultStream<R>(this[Symbol.asyncIterator]());
  }

  /**
   * Every row in an array. Memory grows with the result: prefer `for await` for large ones.
   * What `for await` would collect, without a promise and its turns per row: the rows queued
   * now are taken at once, and only an empty queue is waited for.
   */
  toArray(): Promise<R[]> {
    let iterator: RowIterator<R>;
    try {
      iterator = this[Symbol.asyncIterator]() as RowIterator<R>;
    } catch (error) {
      return Promise.reject(error);
    }
    return iterator.all();
  }
}

/** The iterator's last result. */
function finished(): IteratorResult<never> {
  return { done: true, value: undefined };
}

/** What RowIterator#take says when no row is there (yet, or any more). */
const EMPTY: unique symbol = Symbol('empty');
const ENDED: unique symbol = Symbol('ended');

class RowIterator<R> implements AsyncIterator<R> {
  readonly #source: ResultSource;
  #done = false;

  constructor(source: ResultSource) {
    this.#source = source;
  }

  next(): Promise<IteratorResult<R>> {
    if (this.#done) return Promise.resolve(finished());
    let row: R | typeof EMPTY | typeof ENDED;
    try {
      row = this.#take();
    } catch (error) {
      return Promise.reject(error);
    }
    if (row === EMPTY) return this.#source.queue.changed().then(() => this.next());
    if (row === ENDED) {
      let waiting: Promise<void> | null;
      try {
        waiting = this.#end();
      } catch (error) {
        return Promise.reject(error);
      }
      return waiting ? waiting.then(finished) : Promise.resolve(finished());
    }
    return Promise.resolve({ done: false, value: row });
  }

  /**
   * Every row to the end (toArray): as next() would give them, one call for all. It wakes only
   * when the queue is full (its rows are taken, so the worker reads on) or has ended, not for
   * every row, and a worker that is terminal already ends it without another turn.
   */
  async all(): Promise<R[]> {
    const rows: R[] = [];
    const source = this.#source;
    while (!this.#done) {
      const row = this.#take();
      if (row === EMPTY) await source.queue.fullOrEnded();
      else if (row === ENDED) {
        const waiting = this.#end();
        if (waiting) await waiting;
      } else rows.push(row);
    }
    return rows;
  }

  /**
   * The next row if one is queued, EMPTY if the queue waits for more, ENDED once no more can come
   * (or they are being dropped). Throws PGBG_TYPE_PARSER_FAILED (and stops) if a row cannot be parsed.
   */
  #take(): R | typeof EMPTY | typeof ENDED {
    const { queue } = this.#source;
    if (queue.discarding) return ENDED;
    const raw = queue.shift();
    if (raw === undefined) return queue.closed ? ENDED : EMPTY;
    // A COPY export's chunks are the result as they are: bytes, not rows.
    if (Buffer.isBuffer(raw)) return raw as R;
    try {
      return this.#source.parser!.parse(raw) as R;
    } catch (error) {
      // A type parser threw: the caller cannot go on, so treat it as an early stop.
      this.#stop();
      const { pid, cookie, label } = this.#source;
      const message = `Worker pid ${pid}: ${(error as Error).message}; the rest of its rows were dropped`;
      throw new PgBackgroundError('PGBG_TYPE_PARSER_FAILED', message, { pid, cookie, label, cause: (error as Error).cause ?? error });
    }
  }

  return(): Promise<IteratorResult<R>> {
    this.#stop();
    return Promise.resolve(finished());
  }

  /**
   * The end of the rows: a detach or close that dropped them is the reader's error at once; else
   * the worker's outcome (its error, or rows a cancel dropped), thrown now if the worker is
   * terminal already (null), or by the promise it returns once it is.
   */
  #end(): Promise<void> | null {
    const source = this.#source;
    const { pid, cookie, label } = source;
    this.#done = true;
    switch (source.discardReason) {
      case 'detach':
        throw new PgBackgroundError('PGBG_DETACHED', `Worker pid ${pid} was detached while its result was being read; the rest of its rows were dropped`, {
          pid,
          cookie,
          label,
        });
      case 'close':
        throw new PgBackgroundError('PGBG_CLOSED', `The instance was closed while the result of worker pid ${pid} was being read`, { pid, cookie, label });
    }
    if (!source.active) {
      this.#outcome();
      return null;
    }
    return source.whenTerminal.then(() => this.#outcome());
  }

  /** The terminal worker's outcome for its reader: its error, or rows a cancel dropped (thrown), or nothing. */
  #outcome(): void {
    const source = this.#source;
    const { pid, cookie, label } = source;
    source.apply({ kind: 'consumed' });
    const error = source.workerError();
    if (error) throw error;
    if (source.discardReason === 'cancel' && source.queue.dropped > 0) {
      throw new PgBackgroundError(
        'PGBG_RESULT_DISCARDED',
        `Worker pid ${pid} committed before the cancel reached it, but cancel() had already dropped ${source.queue.dropped} unread rows`,
        { pid, cookie, label },
      );
    }
  }

  #stop(): void {
    if (this.#done) return;
    this.#done = true;
    this.#source.apply({ kind: 'consumed' });
    this.#source.apply({ kind: 'discarded', reason: 'consumer' });
  }
}
