// One worker task on the wire: a node-postgres Submittable that sends the worker's SQL in a
// single round trip and routes what comes back. Rows of every statement but the last are
// dropped unparsed; the last statement's rows go into the bounded queue, whose budget pauses
// the socket. The task is over at ReadyForQuery (success) or at the first ErrorResponse or
// connection error, which covers errors raised at COMMIT after all rows were sent.
import type { TaskPlan } from '../sql/task-plan.js';
import type { ResultField } from './row-parser.js';
import type { RowQueue } from './row-queue.js';

/** What pg's Connection offers a Submittable (the parts we use). */
export interface WireConnection {
  readonly stream: { pause(): unknown; resume(): unknown; cork(): void; uncork(): void };
  query(text: string): void;
  parse(config: { text: string }): void;
  bind(config: { values: (string | Buffer | null)[] }): void;
  describe(config: { type: 'P'; name: string }): void;
  execute(config: Record<string, never>): void;
  sync(): void;
  sendCopyFail(message: string): void;
}

export interface TaskOutcome {
  /** The server's ErrorResponse, a connection error, or null on success. */
  readonly error: Error | null;
  /** The last statement's command, such as 'SELECT' or 'CREATE TABLE' (null if it never completed). */
  readonly commandTag: string | null;
  /** Rows the last statement returned or affected. */
  readonly rowCount: number;
}

/** Where the last statement's column descriptions go (the worker). */
export interface ColumnSink {
  columns(fields: readonly ResultField[]): void;
}

/** The connection, as a task sees it when the connection will be kept for another task. */
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
}

const COPY_IN_REFUSAL = 'COPY FROM STDIN is not supported in pg-background workers';

export class TaskQuery {
  readonly done: Promise<TaskOutcome>;
  #resolve!: (outcome: TaskOutcome) => void;
  readonly #plan: TaskPlan;
  readonly #queue: RowQueue;
  readonly #columns: ColumnSink;
  readonly #session: TaskSession | null;
  #statement = 0;
  #rows = 0;
  #commandTag: string | null = null;
  #tagCount: number | null = null;
  #sent = false;
  #finished = false;

  /** `session` null: no reset behind the task (the connection will not be reused). */
  constructor(plan: TaskPlan, queue: RowQueue, columns: ColumnSink, session: TaskSession | null) {
    this.#plan = plan;
    this.#queue = queue;
    this.#columns = columns;
    this.#session = session;
    this.done = new Promise((resolve) => (this.#resolve = resolve));
  }

  /** Rows of the last statement seen so far. */
  get rowCount(): number {
    return this.#rows;
  }

  /**
   * Writes the task. pg calls this when the task's turn comes; WorkerConnection.run calls it at
   * once, so a task queued behind the previous task's reset is already on the wire (the server
   * answers in order, and pg hands the answers out in the same order).
   */
  submit(connection: WireConnection): void {
    if (this.#sent) return;
    this.#sent = true;
    const stream = connection.stream;
    this.#queue.attach(stream);
    const { text, values } = this.#plan;
    // One write: the task, and the trailer (the reset for the next task) right behind it.
    stream.cork();
    if (values === null) {
      connection.query(text);
    } else {
      // Unnamed statement and portal, unlimited Execute, Sync: nothing cached on the server.
      connection.parse({ text });
      connection.bind({ values: values as (string | Buffer | null)[] }); // pg only reads them
      connection.describe({ type: 'P', name: '' });
      connection.execute({});
      connection.sync();
    }
    if (this.#session) connection.query(this.#session.trailer);
    stream.uncork();
  }

  handleRowDescription(message: { fields: ResultField[] }): void {
    if (this.#isLast()) this.#columns.columns(message.fields);
  }

  handleDataRow(message: { fields: (string | null)[]; length: number }): void {
    if (!this.#isLast()) return;
    this.#rows++;
    this.#queue.push(message.fields, message.length);
  }

  handleCommandComplete(message: { text: string }): void {
    if (this.#isLast()) {
      // 'INSERT 0 5' -> INSERT, 5; 'SELECT 1000' -> SELECT, 1000; 'CREATE TABLE' -> CREATE TABLE.
      const text = message.text;
      let end = text.length;
      let count: number | null = null;
      for (let space = text.lastIndexOf(' '); space !== -1 && isDigits(text, space + 1, end); space = text.lastIndexOf(' ', end - 1)) {
        count ??= Number(text.slice(space + 1, end));
        end = space;
      }
      this.#commandTag = text.slice(0, end);
      this.#tagCount = count;
    }
    this.#statement++;
  }

  handleEmptyQuery(): void {}

  handlePortalSuspended(): void {}

  handleCopyInResponse(connection: WireConnection): void {
    connection.sendCopyFail(COPY_IN_REFUSAL);
  }

  handleCopyData(): void {}

  /** Terminal: pg drops the query after an ErrorResponse and calls nothing else on it. */
  handleError(error: Error): void {
    this.#finish(error);
  }

  handleReadyForQuery(): void {
    if (this.#statement !== this.#plan.statementCount) {
      // The server ran a different number of statements than we counted: the "last statement"
      // rows may be the wrong ones. Never report such a result as a success.
      this.#finish(new Error(`pg-background counted ${this.#plan.statementCount} statements but the server ran ${this.#statement}; please report this SQL`));
      return;
    }
    this.#finish(null);
  }

  #isLast(): boolean {
    return this.#statement === this.#plan.statementCount - 1;
  }

  #finish(error: Error | null): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#queue.detach();
    this.#session?.taskEnded();
    this.#resolve({ error, commandTag: this.#commandTag, rowCount: this.#tagCount ?? this.#rows });
  }
}

function isDigits(text: string, from: number, to: number): boolean {
  if (from >= to) return false;
  for (let i = from; i < to; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return false;
  }
  return true;
}
