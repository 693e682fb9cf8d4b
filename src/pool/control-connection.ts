// The instance's one non-worker connection, opened on first use: it terminates workers that
// ignore a cancel, falls back to pg_cancel_backend when a protocol cancel cannot be delivered,
// and runs install(). Queries on it run one at a time; a broken connection is replaced.
import pg from 'pg';

export class ControlConnection {
  readonly #config: pg.ClientConfig;
  #client: Promise<pg.Client> | null = null;
  #tail: Promise<unknown> = Promise.resolve();
  #closed = false;

  constructor(config: pg.ClientConfig) {
    this.#config = config;
  }

  /** Runs `work` with the connection, after any work queued before it. */
  use<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
    const run = this.#tail.then(async () => {
      if (this.#closed) throw new Error('control connection closed');
      return work(await this.#connect());
    });
    this.#tail = run.catch(() => {});
    return run;
  }

  query<R extends pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>> {
    return this.use((client) => client.query<R>(text, values));
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#tail;
    const client = await this.#client?.catch(() => null);
    this.#client = null;
    await client?.end().catch(() => {});
  }

  #connect(): Promise<pg.Client> {
    if (this.#client) return this.#client;
    const client = new pg.Client(this.#config);
    const connecting = client.connect().then(() => client);
    this.#client = connecting;
    const forget = () => {
      if (this.#client === connecting) this.#client = null;
    };
    client.on('error', forget);
    client.on('end', forget);
    connecting.catch(forget);
    return connecting;
  }
}
