// result(h).stream(): the worker's rows as a Node Readable in object mode, for stream.pipeline
// and code written for pg-query-stream. It pulls rows from the same iterator `for await` uses, one
// at a time and only when its consumer asks, so rows wait in the worker's byte-bounded queue (raw,
// counted against its budget) rather than in the stream's buffer: the backpressure is the queue's.
// The worker's failure (a WorkerError) and every other error of the iterator become the stream's
// error; destroying the stream before the end is a `break`: the rest of the rows are dropped and
// the worker carries on to commit.
import { Readable } from 'node:stream';

/** At most this many parsed rows wait in the stream's own buffer. */
const HIGH_WATER_MARK = 1;

export function resultStream<R>(rows: AsyncIterator<R>): Readable {
  return new ResultStream(rows);
}

class ResultStream<R> extends Readable {
  readonly #rows: AsyncIterator<R>;
  #pulling = false;
  #wanted = false;

  constructor(rows: AsyncIterator<R>) {
    super({ objectMode: true, highWaterMark: HIGH_WATER_MARK });
    this.#rows = rows;
  }

  override _read(): void {
    this.#wanted = true;
    if (!this.#pulling) void this.#pull();
  }

  /** Pushes rows while the consumer wants them; a single pull runs at a time. */
  async #pull(): Promise<void> {
    this.#pulling = true;
    try {
      while (this.#wanted) {
        this.#wanted = false;
        const next = await this.#rows.next();
        if (this.destroyed) return;
        if (next.done) {
          this.push(null);
          return;
        }
        if (this.push(next.value)) this.#wanted = true;
      }
    } catch (error) {
      this.destroy(error as Error);
    } finally {
      this.#pulling = false;
    }
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    // As `break` on the iterator (a no-op once it has ended): the rest of the rows are dropped.
    const stopped = this.#rows.return?.();
    if (!stopped) return callback(error);
    stopped.then(
      () => callback(error),
      (cause: unknown) => callback(error ?? (cause as Error)),
    );
  }
}
