// One dedicated PostgreSQL connection that runs worker tasks, one at a time. It knows its real
// backend pid (read once, at connect), its cancel key, whether it is still fit to run another
// task, and how to reset itself between tasks. It never decides a task's state.
import pg from 'pg';
import type { WireConnection } from '../results/task-query.js';

/** The node-postgres Client members we rely on that @types/pg does not declare. */
interface ClientInternals {
  readonly processID: number | null;
  readonly secretKey: number | null;
  readonly host: string;
  readonly port: number;
  readonly connection: WireConnection & NodeJS.EventEmitter & { stream: import('node:net').Socket };
  getTransactionStatus?(): 'I' | 'T' | 'E' | null;
  _txStatus?: 'I' | 'T' | 'E' | null;
  query(submittable: object): unknown;
}

/** A NoticeResponse as node-postgres parses it (the fields we read). */
export interface ServerNotice {
  message: string | undefined;
  severity?: string | undefined;
  code?: string | undefined;
  detail?: string | undefined;
  hint?: string | undefined;
  where?: string | undefined;
}

export interface NoticeSink {
  (notice: ServerNotice): void;
}

export interface CancelTarget {
  /** Host name or unix socket directory, and port, of the server this connection talks to. */
  readonly host: string;
  readonly port: number;
  readonly processID: number;
  readonly secretKey: number;
  readonly ssl: pg.ClientConfig['ssl'];
}

export class WorkerConnection {
  /** Real backend pid, from pg_backend_pid() (poolers hand out their own BackendKeyData). */
  readonly pid: number;
  /** Role the connection logged in as. */
  readonly user: string;
  readonly #client: pg.Client;
  readonly #internals: ClientInternals;
  readonly #ssl: pg.ClientConfig['ssl'];
  #standardConformingStrings = true;
  #failure: Error | null = null;
  #ended = false;
  #onNotice: NoticeSink | null = null;
  #onFailure: ((error: Error) => void) | null = null;
  #closing: Promise<void> | null = null;

  private constructor(client: pg.Client, pid: number, user: string, ssl: pg.ClientConfig['ssl']) {
    this.#client = client;
    this.#internals = client as unknown as ClientInternals;
    this.pid = pid;
    this.user = user;
    this.#ssl = ssl;
  }

  static async open(config: pg.ClientConfig): Promise<WorkerConnection> {
    const client = new pg.Client({ ...config, pipeline: false });
    // From birth: a backend terminated under an idle client must never crash the process.
    let early: Error | null = null;
    const onEarlyError = (error: Error) => (early ??= error);
    client.on('error', onEarlyError);
    const internals = client as unknown as ClientInternals;
    let scs = true;
    const onParameter = (message: { parameterName: string; parameterValue: string }) => {
      if (message.parameterName === 'standard_conforming_strings') scs = message.parameterValue === 'on';
    };
    internals.connection.on('parameterStatus', onParameter);
    try {
      await client.connect();
      const { rows } = await client.query<{ pid: number; user: string }>('SELECT pg_backend_pid() AS pid, current_user AS "user"');
      if (early) throw early;
      const connection = new WorkerConnection(client, rows[0]!.pid, rows[0]!.user, config.ssl);
      connection.#standardConformingStrings = scs;
      client.off('error', onEarlyError);
      internals.connection.off('parameterStatus', onParameter);
      connection.#listen();
      return connection;
    } catch (error) {
      client.off('error', onEarlyError);
      client.on('error', () => {});
      internals.connection.stream?.destroy();
      await client.end().catch(() => {});
      throw error;
    }
  }

  #listen(): void {
    this.#client.on('error', (error: Error) => this.#fail(error));
    this.#client.on('end', () => {
      this.#ended = true;
      this.#fail(new Error('Connection terminated'));
    });
    this.#client.on('notice', (notice: ServerNotice) => this.#onNotice?.(notice));
    this.#internals.connection.on('parameterStatus', (message: { parameterName: string; parameterValue: string }) => {
      if (message.parameterName === 'standard_conforming_strings') this.#standardConformingStrings = message.parameterValue === 'on';
    });
  }

  #fail(error: Error): void {
    if (this.#failure) return;
    this.#failure = error;
    const onFailure = this.#onFailure;
    this.#onFailure = null;
    onFailure?.(error);
  }

  /** The error that made this connection unusable, if any (fatal error, terminate, socket loss). */
  get failure(): Error | null {
    return this.#failure;
  }

  get standardConformingStrings(): boolean {
    return this.#standardConformingStrings;
  }

  /** Transaction status from the last ReadyForQuery: 'I' idle, 'T' in a transaction, 'E' failed one. */
  get transactionStatus(): 'I' | 'T' | 'E' | null {
    return this.#internals.getTransactionStatus?.() ?? this.#internals._txStatus ?? null;
  }

  get cancelTarget(): CancelTarget | null {
    const { processID, secretKey, host, port } = this.#internals;
    if (processID === null || secretKey === null) return null;
    return { host, port, processID, secretKey, ssl: this.#ssl };
  }

  /** Where notices raised while this connection runs a task go. */
  set onNotice(sink: NoticeSink | null) {
    this.#onNotice = sink;
  }

  /** Called once if the connection breaks. */
  set onFailure(callback: ((error: Error) => void) | null) {
    this.#onFailure = callback;
  }

  /** Sends a Submittable (a TaskQuery); its handlers report the outcome. */
  submit(query: object): void {
    this.#internals.query(query);
  }

  /** A plain query on this connection (setup and reset, never user SQL). */
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>> {
    return this.#client.query<R>(text, values);
  }

  /** Closes the connection politely (Terminate message); destroys the socket if that hangs. */
  close(timeoutMs = 5000): Promise<void> {
    this.#closing ??= (async () => {
      if (this.#ended) return;
      const socket = this.#internals.connection.stream;
      const timer = setTimeout(() => socket.destroy(), timeoutMs);
      try {
        await this.#client.end();
      } catch {
        socket.destroy();
      } finally {
        clearTimeout(timer);
      }
    })();
    return this.#closing;
  }

  /** Lets the process exit while this connection is idle. */
  unref(): void {
    this.#internals.connection.stream.unref();
  }

  ref(): void {
    this.#internals.connection.stream.ref();
  }

  /** Drops the socket at once, without telling the server (it notices on its own). */
  destroy(error = new Error('Connection destroyed by pg-background')): void {
    this.#fail(error);
    this.#internals.connection.stream.destroy();
  }
}
