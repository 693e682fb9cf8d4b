// The cluster-wide cap (clusterMaxWorkers): at most that many workers of every process using the
// same clusterKey on a database hold a slot at once. A slot is a session advisory lock (see
// catalog.ts) held on this instance's *cluster connection*, a session that lives exactly as long
// as the process: when the process dies (even by SIGKILL) the server ends the session and frees
// its slots at once. Workers hold a slot from admission to their terminal state.
//
// Waiting (whenFull 'queue') is fair across processes: a process's first waiting launch queues
// for the turnstile lock on a second session (the *turnstile connection*), and the server grants
// that lock in FIFO order; the holder is the head of the cluster's queue. It tries for a slot,
// and while none is free it sleeps until a NOTIFY from a process that gave one back (or a bounded
// re-check, for slots freed by a session that died). Having one, it gives the turnstile back and
// queues for it again, behind the other processes' heads: every waiting process gets a turn, and
// a launch that finds the cap reached never takes a slot while the turnstile is held.
// Within a process, waiting launches are served in their order (after the local maxWorkers
// slot, which admission takes first). Neither connection exists until the first launch.
import { createHash } from 'node:crypto';
import pg from 'pg';
import {
  BACKEND_PID_SQL,
  CLUSTER_HEAD_TRY_SQL,
  CLUSTER_RELEASE_SQL,
  CLUSTER_TRY_SQL,
  listenSql,
  TURNSTILE_LOCK_SQL,
  TURNSTILE_UNLOCK_SQL,
} from '../catalog.js';
import { PgBackgroundError } from '../errors.js';
import { backendKey, socketOf } from '../pg/index.js';
import { settlesWithin, withDeadline } from './deadline.js';
import { poolerUnsupported } from './pooler.js';
import type { Slot } from './worker-slots.js';

/** The failure of a session pg-background dropped itself (a deadline, the last waiter leaving). */
const DROPPED = new Error('connection dropped by pg-background');

/** The longest a head of the queue sleeps without a wake-up before it looks again. */
export const RECHECK_MS = 500;

export interface ClusterOptions {
  readonly key: string;
  readonly max: number;
  /** Deadline of every request but the wait for the turnstile. */
  readonly timeoutMs: number;
}

interface Waiter {
  readonly signal: AbortSignal;
  resolve(slot: Slot): void;
  reject(error: unknown): void;
}

/** A client of ours: its socket is referenced only while a request is on it. */
interface Session {
  readonly client: pg.Client;
  readonly ready: Promise<pg.Client>;
  failure: Error | null;
}

export class ClusterSlots {
  readonly #config: pg.ClientConfig;
  readonly #options: ClusterOptions;
  /** The advisory-lock classid of this clusterKey and its NOTIFY channel. */
  readonly classid: number;
  readonly channel: string;
  #cluster: Session | null = null;
  #turnstile: Session | null = null;
  /** Slots held on the current cluster session (a new session holds none). */
  #held = new Set<number>();
  readonly #waiters: Waiter[] = [];
  #serving = false;
  #tail: Promise<unknown> = Promise.resolve();
  #wake: (() => void) | null = null;
  #closed = false;

  constructor(config: pg.ClientConfig, options: ClusterOptions) {
    this.#config = config;
    this.#options = options;
    const digest = createHash('sha256').update(`pg-background cluster ${options.key}`).digest();
    this.classid = digest.readInt32BE(0);
    this.channel = `pg_background_cluster_${digest.subarray(4, 12).toString('hex')}`;
  }

  /** A slot now, or null when the cap is reached (or other launches are waiting for one). */
  async tryAcquire(): Promise<Slot | null> {
    if (this.#closed) throw instanceClosed();
    const { rows, session } = await this.#query<{ slot: number | null }>(CLUSTER_TRY_SQL, () => [this.classid, this.#options.max, [...this.#held]]);
    return this.#granted(session, rows[0]!.slot);
  }

  /** A slot, waiting (fairly) for one; rejects with the signal's reason if it aborts first. */
  async acquire(signal: AbortSignal): Promise<Slot> {
    if (signal.aborted) throw signal.reason;
    // The fast path, unless launches of ours already wait (they came first).
    if (this.#waiters.length === 0) {
      const slot = await this.tryAcquire();
      if (slot) {
        if (!signal.aborted) return slot;
        slot.release();
        throw signal.reason;
      }
      if (signal.aborted) throw signal.reason;
    }
    return new Promise<Slot>((resolve, reject) => {
      const onAbort = () => {
        const at = this.#waiters.indexOf(waiter);
        if (at !== -1) this.#waiters.splice(at, 1);
        reject(signal.reason);
        this.#nudge();
      };
      const waiter: Waiter = {
        signal,
        resolve: (slot) => {
          signal.removeEventListener('abort', onAbort);
          resolve(slot);
        },
        reject: (error) => {
          signal.removeEventListener('abort', onAbort);
          reject(error);
        },
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.#waiters.push(waiter);
      void this.#serve();
    });
  }

  async close(): Promise<void> {
    this.#closed = true;
    const closed = instanceClosed();
    for (const waiter of this.#waiters.splice(0)) waiter.reject(closed);
    this.#nudge();
    await this.#tail;
    await Promise.all([this.#end(this.#turnstile), this.#end(this.#cluster)]);
    this.#turnstile = this.#cluster = null;
  }

  /** The head of this process's waiting launches: one loop at a time. */
  async #serve(): Promise<void> {
    if (this.#serving) return;
    this.#serving = true;
    try {
      while (this.#waiters.length > 0 && !this.#closed) {
        await this.#turn();
      }
    } catch (error) {
      for (const waiter of this.#waiters.splice(0)) waiter.reject(error);
    } finally {
      this.#serving = false;
    }
  }

  /** One turn at the head of the cluster's queue: queue for the turnstile, get a slot, give it back. */
  async #turn(): Promise<void> {
    const turnstile = this.#open('turnstile');
    const client = await turnstile.ready;
    socketOf(client).ref();
    try {
      // No deadline: this waits for the launches queued before ours, in every process. The last
      // waiter's abort drops the session (the server forgets the wait with it).
      await client.query(TURNSTILE_LOCK_SQL, [this.classid]);
    } catch (error) {
      // Dropped by us (the last waiter left, see #nudge): a launch that came meanwhile is served
      // by #serve's next turn, on a new turnstile session, not failed with our own drop.
      if (this.#waiters.length === 0 || this.#closed || turnstile.failure === DROPPED) return;
      throw error;
    } finally {
      socketOf(client).unref();
    }
    try {
      while (this.#waiters.length > 0 && !this.#closed) {
        const woken = new Promise<void>((resolve) => (this.#wake = resolve));
        const { rows, session } = await this.#query<{ slot: number | null }>(CLUSTER_HEAD_TRY_SQL, () => [this.classid, this.#options.max, [...this.#held]]);
        const slot = this.#granted(session, rows[0]!.slot);
        if (slot) {
          const waiter = this.#waiters.shift();
          if (waiter) waiter.resolve(slot);
          else slot.release();
          return;
        }
        // A NOTIFY, an abort or close, or the re-check: whichever comes first. The timer keeps
        // the process alive while a launch waits (the sessions' sockets do not).
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([woken, new Promise<void>((resolve) => (timer = setTimeout(resolve, RECHECK_MS)))]);
        clearTimeout(timer);
      }
    } finally {
      this.#wake = null;
      if (!turnstile.failure) {
        await withDeadline(client.query(TURNSTILE_UNLOCK_SQL, [this.classid]), this.#options.timeoutMs, () => {
          this.#drop(turnstile);
          return new Error(`the server did not answer within ${this.#options.timeoutMs} ms`);
        }).catch(() => this.#drop(turnstile));
      }
    }
  }

  /** The head's sleep ends early: a slot was given back, a waiter left, or close(). */
  #nudge(): void {
    this.#wake?.();
    // The last waiter left while its turn was still queued: drop the queued wait.
    if (this.#waiters.length === 0 && this.#turnstile && this.#serving && this.#wake === null) this.#drop(this.#turnstile);
  }

  #granted(session: Session, slot: number | null): Slot | null {
    if (slot === null) return null;
    if (this.#cluster === session) this.#held.add(slot);
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        // A slot of a session that ended was freed by the server with it.
        if (this.#cluster !== session || session.failure) return;
        void this.#query(CLUSTER_RELEASE_SQL, () => [this.classid, slot, this.channel])
          .then(() => this.#held.delete(slot))
          .catch(() => {});
      },
    };
  }

  /** `text` on the cluster session, within the deadline; `values` read once it is open. */
  #query<R extends pg.QueryResultRow>(text: string, values: () => unknown[]): Promise<{ rows: R[]; session: Session }> {
    // One request at a time: a try must see the slots the one before it took (a session's
    // advisory locks are re-entrant, so it would take the same slot twice).
    const run = this.#tail.then(() => this.#send<R>(text, values));
    this.#tail = run.catch(() => {});
    return run;
  }

  async #send<R extends pg.QueryResultRow>(text: string, values: () => unknown[]): Promise<{ rows: R[]; session: Session }> {
    const session = this.#open('cluster');
    const client = await session.ready;
    socketOf(client).ref();
    try {
      const { rows } = await withDeadline(client.query<R>({ name: statementName(text), text, values: values() }), this.#options.timeoutMs, () => {
        this.#drop(session);
        return new Error(`the server did not answer within ${this.#options.timeoutMs} ms (the cluster connection)`);
      });
      return { rows, session };
    } finally {
      socketOf(client).unref();
    }
  }

  #open(role: 'cluster' | 'turnstile'): Session {
    const current = role === 'cluster' ? this.#cluster : this.#turnstile;
    if (current && !current.failure) return current;
    if (this.#closed) throw instanceClosed();
    const client = new pg.Client({ ...this.#config, application_name: `pg-background ${role}` });
    const session: Session = { client, ready: null!, failure: null };
    const fail = (error: Error) => {
      session.failure ??= error;
      if (role === 'cluster') this.#lost(session);
    };
    client.on('error', fail);
    client.on('end', () => fail(new Error('Connection terminated')));
    if (role === 'cluster') client.on('notification', () => this.#wake?.());
    (session as { ready: Promise<pg.Client> }).ready = (async () => {
      await client.connect();
      // Session advisory locks behind a pooler would stay on a server connection it hands to
      // others (transaction mode) or be freed under us: refused, whatever the pooler's mode.
      const { rows } = await client.query<{ pid: number }>(BACKEND_PID_SQL);
      if (rows[0]!.pid !== backendKey(client)?.processID) {
        throw poolerUnsupported('clusterMaxWorkers holds its slots as session advisory locks, which a connection pooler cannot keep on one backend');
      }
      if (role === 'cluster') await client.query(listenSql(this.channel));
      // Idle, it does not keep the process alive; every request refs it while it is out.
      socketOf(client).unref();
      return client;
    })().catch((error: unknown) => {
      fail(error instanceof Error ? error : new Error(String(error)));
      socketOf(client).destroy();
      throw error;
    });
    session.ready.catch(() => {});
    if (role === 'cluster') {
      this.#cluster = session;
      this.#held = new Set();
    } else {
      this.#turnstile = session;
    }
    return session;
  }

  /** The cluster session ended: the server freed its slots; the next request opens another. */
  #lost(session: Session): void {
    if (this.#cluster === session) this.#held = new Set();
  }

  #drop(session: Session): void {
    session.failure ??= DROPPED;
    socketOf(session.client).destroy();
  }

  async #end(session: Session | null): Promise<void> {
    if (!session) return;
    const client = await session.ready.catch(() => null);
    if (!client || session.failure) return void socketOf(session.client).destroy();
    if (!(await settlesWithin(client.end(), this.#options.timeoutMs))) socketOf(client).destroy();
  }
}

/** Each of the cluster's statements is prepared once per session (planning a CTE costs). */
const statementNames = new Map([
  [CLUSTER_TRY_SQL, 'pg_background_cluster_try'],
  [CLUSTER_HEAD_TRY_SQL, 'pg_background_cluster_head_try'],
  [CLUSTER_RELEASE_SQL, 'pg_background_cluster_release'],
]);

function statementName(text: string): string | undefined {
  return statementNames.get(text);
}

/** The local slot and the cluster slot as one: released together, cluster first. */
export function bothSlots(local: Slot, cluster: Slot): Slot {
  return {
    release() {
      cluster.release();
      local.release();
    },
  };
}

function instanceClosed(): PgBackgroundError {
  return new PgBackgroundError('PGBG_CLOSED', 'This PgBackground instance was closed while the launch waited for a cluster-wide slot');
}
