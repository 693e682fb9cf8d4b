// The bounded queue between a worker connection (producer) and result(h) (consumer). Its budget
// is in bytes of DataRow messages as they came off the wire, known exactly from the protocol.
// When the budget is used up the producer is told to stop reading its socket; the server's
// backend then blocks writing, as a pg_background worker blocks on its full shm_mq. Rows are
// kept raw (text fields) and parsed only when consumed, so discarded rows cost no parsing.

export type RawRow = readonly (string | null)[];
/** What the queue holds: raw rows, or the Buffer chunks of a COPY export (copyTo). */
export type QueueItem = RawRow | Buffer;

/** The producer's flow control: the worker connection's socket. */
export interface Flow {
  /** Stop reading from the server. */
  pause(): unknown;
  /** Read from the server again. */
  resume(): unknown;
}

/** Never written to (frozen: a push would throw): see RowQueue.push. */
const NO_ROWS = Object.freeze([]) as unknown as QueueItem[];
const NO_SIZES = Object.freeze([]) as unknown as number[];

export class RowQueue {
  readonly budget: number;
  // Shared empty arrays until the first row (a submitted worker's queue never holds one).
  #rows: QueueItem[] = NO_ROWS;
  #sizes: number[] = NO_SIZES;
  #head = 0;
  #bytes = 0;
  #flow: Flow | null = null;
  #paused = false;
  #unbounded = false;
  #discarding = false;
  #dropped = 0;
  #closed = false;
  /** Rows the reader took since the current try began (see restart()). */
  #taken = 0;
  #wake: (() => void) | null = null;
  /** The reader waiting for the queue to be full or to end (fullOrEnded). */
  #wakeFull: (() => void) | null = null;

  constructor(budget: number) {
    this.budget = budget;
  }

  /** Rows waiting to be read. */
  get length(): number {
    return this.#rows.length - this.#head;
  }

  /** Bytes of rows waiting to be read. */
  get bytes(): number {
    return this.#bytes;
  }

  /** True once rows are being thrown away as they arrive (submit, detach, cancel, close). */
  get discarding(): boolean {
    return this.#discarding;
  }

  /** Rows thrown away unread since discard() (those waiting then, and those that came after). */
  get dropped(): number {
    return this.#dropped;
  }

  /** Rows the reader has taken since the current try began: a try whose rows were read is never retried. */
  get taken(): number {
    return this.#taken;
  }

  /**
   * A new try of the task begins (launch's `retry`): the failed try's unread rows are dropped
   * (they never reach the reader); the budget and a discard in force stay as they are.
   */
  restart(): void {
    if (this.#rows.length) {
      this.#rows = NO_ROWS;
      this.#sizes = NO_SIZES;
    }
    this.#head = 0;
    this.#bytes = 0;
    this.#taken = 0;
    this.#setPaused(false);
  }

  /** True while the producer is told to stop reading (the budget is used up). */
  get paused(): boolean {
    return this.#paused;
  }

  /** True once no more rows will come. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Connects the producer's flow control; called when the worker's query starts. */
  attach(flow: Flow): void {
    this.#flow = flow;
  }

  /** Disconnects the producer (its query ended); a paused socket is let go first. */
  detach(): void {
    this.#setPaused(false);
    this.#flow = null;
  }

  push(row: QueueItem, bytes: number): void {
    if (this.#discarding) {
      this.#dropped++;
      return;
    }
    if (this.#rows === NO_ROWS) {
      this.#rows = [];
      this.#sizes = [];
    }
    this.#rows.push(row);
    this.#sizes.push(bytes);
    this.#bytes += bytes;
    if (this.#bytes >= this.budget && !this.#unbounded) this.#setPaused(true);
    this.#notify();
  }

  /** The next row (or COPY chunk), or undefined when none is waiting. */
  shift(): QueueItem | undefined {
    if (this.#head === this.#rows.length) return undefined;
    const row = this.#rows[this.#head]!;
    this.#taken++;
    this.#bytes -= this.#sizes[this.#head]!;
    this.#head++;
    if (this.#head === this.#rows.length) {
      this.#rows = NO_ROWS;
      this.#sizes = NO_SIZES;
      this.#head = 0;
    } else if (this.#head >= 1024 && this.#head * 2 >= this.#rows.length) {
      this.#rows = this.#rows.slice(this.#head);
      this.#sizes = this.#sizes.slice(this.#head);
      this.#head = 0;
    }
    // Resume at half the budget so a steady consumer does not toggle the socket on every row.
    if (this.#paused && this.#bytes <= this.budget / 2) this.#setPaused(false);
    return row;
  }

  /** No more rows will be pushed. */
  close(): void {
    this.#closed = true;
    this.#notify();
  }

  /**
   * Stops applying the budget: the producer reads on, whatever the consumer does. Only for a
   * connection whose server side is gone, where what can still arrive is what the kernel already
   * holds, so that its rows and its outcome are not stuck behind a paused socket.
   */
  unbound(): void {
    this.#unbounded = true;
    this.#setPaused(false);
  }

  /** Drops waiting rows and every row that arrives from now on; the producer never blocks again. */
  discard(): void {
    this.#discarding = true;
    this.#dropped += this.length;
    if (this.#rows.length) {
      this.#rows = NO_ROWS;
      this.#sizes = NO_SIZES;
    }
    this.#head = 0;
    this.#bytes = 0;
    this.#setPaused(false);
    this.#notify();
  }

  /** Resolves when a row arrives, the queue closes or starts discarding. */
  changed(): Promise<void> {
    return new Promise((resolve) => {
      const previous = this.#wake;
      this.#wake = previous
        ? () => {
            previous();
            resolve();
          }
        : resolve;
    });
  }

  /**
   * Resolves when the queue is full (the producer paused: its rows must be taken for it to go
   * on), closes or starts discarding: what a reader that wants every row (toArray) waits for,
   * rather than a wake-up per row. One such reader at a time.
   */
  fullOrEnded(): Promise<void> {
    if (this.#fullOrEnded) return Promise.resolve();
    return new Promise((resolve) => (this.#wakeFull = resolve));
  }

  get #fullOrEnded(): boolean {
    return this.#paused || this.#closed || this.#discarding;
  }

  #notify(): void {
    const wake = this.#wake;
    if (wake) {
      this.#wake = null;
      wake();
    }
    const wakeFull = this.#wakeFull;
    if (wakeFull && this.#fullOrEnded) {
      this.#wakeFull = null;
      wakeFull();
    }
  }

  #setPaused(paused: boolean): void {
    if (this.#paused === paused) return;
    this.#paused = paused;
    if (paused) this.#flow?.pause();
    else this.#flow?.resume();
  }
}
