// The instance's one non-worker connection: it terminates workers that ignore a cancel, falls
// back to pg_cancel_backend when a protocol cancel cannot be delivered, checks on silent
// workers, and runs install(). It is opened with the first launch (open()) and kept until
// close(), so that a server that later refuses new connections (max_connections, pg_hba)
// cannot stop us from stopping or checking a worker; one that broke is opened again at the next
// launch or use. Work on it runs one piece at a time, each with a deadline: a connection that
// misses it is dropped and replaced, so a dead network can never wedge the queue.
// A subscriber (control/remote-control.ts) is told of each session (to LISTEN there) once the
// instance is known to reach the server directly (a worker connection said so: behind a pooler
// the control connection stays as quiet as it was), and of every notification it receives.
// Until a session listens, a direct worker must not show its tag (the SQL functions would find
// nobody to tell, and cancel its backend behind its owner's back): open() hands the launcher a
// gate to wait on before the tag goes out, while a session is being attached. The gate settles
// when the attach is done, or failed (refused, closed, not direct), or after `listenWaitMs`; once
// an attempt to listen failed, tasks go without waiting until a session listens again.
import pg from 'pg';
import { untilSettled } from '../core/abort.js';
import { socketOf } from '../pg/index.js';
import { settlesWithin, withDeadline } from './deadline.js';

/** What listens on the control connection: set up on each new session, told of each notification. */
export interface ControlSubscriber {
  /**
   * A new session, before any work runs on it; true once it listens. A failure (or false: it
   * found a pooler) leaves the session serving, not listening.
   */
  attach(client: pg.Client): Promise<boolean>;
  notification(message: pg.Notification): void;
}

export class ControlConnection {
  readonly #config: pg.ClientConfig;
  readonly #timeoutMs: number;
  #current: { client: pg.Client; ready: Promise<pg.Client> } | null = null;
  #tail: Promise<unknown> = Promise.resolve();
  #closed = false;
  #subscriber: ControlSubscriber | null = null;
  /** The instance reaches the server directly: the subscriber attaches to every session. */
  #direct = false;
  /** The session the subscriber was attached to (or is being attached to). */
  #attached: pg.Client | null = null;
  /** Told when a session that had connected ends before close() (see onSessionEnded). */
  readonly #ended: (() => void)[] = [];
  /** How long a task waits at most for a session being attached to listen. */
  readonly #listenWaitMs: number;
  /** While a session is being attached: what a direct task waits on before its tag goes out. */
  #gate: Promise<void> | null = null;
  /** The last attempt to listen failed (see the file's opening): no gate until one listens. */
  #listenFailed = false;

  constructor(config: pg.ClientConfig, timeoutMs: number, listenWaitMs = 0) {
    this.#config = config;
    this.#timeoutMs = timeoutMs;
    this.#listenWaitMs = listenWaitMs;
  }

  /** Sets the subscriber of every session opened from now on. */
  subscribe(subscriber: ControlSubscriber): void {
    this.#subscriber = subscriber;
  }

  /**
   * `listener` is called when a session that had connected ends (broken, terminated, dropped at
   * a deadline) before close(): whatever named this session's backend (the journal's rows name
   * their owner by it) must be said again through the next one.
   */
  onSessionEnded(listener: () => void): void {
    this.#ended.push(listener);
  }

  /**
   * Opens the connection now unless it is open (or opening); never waits, never rejects.
   * `direct`: a worker connection of this instance reached the server without a pooler; then
   * the result is the gate its task waits on before its tag goes out (null: nothing to wait
   * for). It never rejects, and settles within listenWaitMs.
   */
  open(direct = false): Promise<void> | null {
    if (this.#closed) return null;
    if (direct) this.#direct = true;
    // Called at every task: nothing to do once open(ing) and, where it listens, attached.
    if (this.#current && (!this.#direct || !this.#subscriber || this.#attached === this.#current.client)) return direct ? this.#gate : null;
    try {
      const current = this.#connect();
      current.ready.catch(() => {});
      if (this.#direct && this.#subscriber && this.#attached !== current.client) {
        const subscriber = this.#subscriber;
        this.#attached = current.client;
        this.#waitFor(this.use((client) => (client === current.client ? subscriber.attach(client) : Promise.resolve(false))));
      }
    } catch {
      // A config pg cannot even parse: the worker connection's open says so.
    }
    return direct ? this.#gate : null;
  }

  /** Runs `work` with the connection, after any work queued before it, within the deadline. */
  use<T>(work: (client: pg.Client) => Promise<T>, timeoutMs = this.#timeoutMs): Promise<T> {
    const run = this.#tail.then(() => {
      if (this.#closed) throw new Error('control connection closed');
      const current = this.#connect();
      const done = current.ready.then((client) => {
        socketOf(client).ref();
        return work(client);
      });
      void done.finally(() => socketOf(current.client).unref()).catch(() => {});
      return withDeadline(done, timeoutMs, () => {
        // The server did not answer in time: drop this connection; the next use opens another.
        this.#drop();
        return new Error(`the server did not answer within ${timeoutMs} ms`);
      });
    });
    this.#tail = run.catch(() => {});
    return run;
  }

  query<R extends pg.QueryResultRow>(text: string, values?: unknown[], timeoutMs?: number): Promise<pg.QueryResult<R>> {
    return this.use((client) => client.query<R>(text, values), timeoutMs);
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#tail;
    const current = this.#current;
    this.#current = null;
    const client = await current?.ready.catch(() => null);
    if (!client) return;
    if (!(await settlesWithin(client.end(), this.#timeoutMs))) socketOf(client).destroy();
  }

  #connect(): { client: pg.Client; ready: Promise<pg.Client> } {
    if (this.#current) return this.#current;
    const client = new pg.Client(this.#config);
    // Idle, it does not keep the process alive (like idle worker connections); use() refs it.
    const subscriber = this.#subscriber;
    if (subscriber) client.on('notification', (message) => subscriber.notification(message));
    const attach = this.#direct ? subscriber : null;
    if (attach) this.#attached = client;
    const connecting = client.connect();
    const attached = attach && connecting.then(() => attach.attach(client));
    const ready = connecting.then(async () => {
      await attached?.catch(() => {});
      socketOf(client).unref();
      return client;
    });
    if (attached) this.#waitFor(attached);
    const current = { client, ready };
    this.#current = current;
    let connected = false;
    void ready.then(
      () => (connected = true),
      () => {},
    );
    let ended = false;
    const forget = () => {
      if (this.#current === current) this.#current = null;
      if (!connected || ended || this.#closed) return;
      ended = true;
      for (const listener of this.#ended) listener();
    };
    client.on('error', forget);
    client.on('end', forget);
    current.ready.catch(forget);
    return current;
  }

  /** Tasks wait (bounded) for `listened`, unless the last attempt to listen failed. */
  #waitFor(listened: Promise<boolean>): void {
    const settled = listened.then(
      (yes) => {
        if (yes) this.#listenFailed = false;
        return yes;
      },
      () => false,
    );
    if (this.#listenFailed || this.#listenWaitMs <= 0) return;
    const gate: Promise<void> = untilSettled(settled, this.#listenWaitMs, null).then(async (inTime) => {
      if (!inTime || !(await settled)) this.#listenFailed = true;
      if (this.#gate === gate) this.#gate = null;
    });
    this.#gate = gate;
  }

  #drop(): void {
    const current = this.#current;
    this.#current = null;
    if (current) socketOf(current.client).destroy(); // its 'end' tells the onSessionEnded listeners
  }
}
