// Connection poolers (PgBouncer, pgcat, Supavisor, RDS Proxy...). A connection is *pooled* when
// the BackendKeyData the server side sent us does not name the backend that answers our
// queries (pg_backend_pid()): a pooler stands in between, and whatever its mode, it may hand us
// another backend after every transaction (and ours to another client). That is a fact read at
// connect, not a guess: a direct connection (or a plain TCP proxy) always gets its backend's key.
//
// Behind a pooler a task is *pinned*: it runs inside a transaction that we open (with its role,
// settings and an identity probe, all in that transaction) and that only we end. While it is
// open, every pooler must keep that backend ours, so its pid is the task's, and cancelling or
// terminating it by pid touches nothing else. We end the transaction ourselves: COMMIT after a
// task that succeeded and was not cancelled; after a cancel request the session is dropped
// instead (never committed, and the backend, which a signal may still be on its way to, is never
// handed to anyone: the pooler closes a server connection left in a transaction).
// A pooler that cannot hold a transaction (PgBouncer's statement mode) is refused at launch.
import { PgBackgroundError } from '../errors.js';

/** The identity of the backend that holds the pinned transaction. */
export interface PinnedBackend {
  readonly pid: number;
  readonly started: string;
}

/** PgBouncer in statement mode refuses a transaction that stays open past one statement. */
export function refusesTransactions(error: unknown): boolean {
  return error instanceof Error && /transaction blocks not allowed|long transactions not allowed|statement pooling/i.test(error.message);
}

export function poolerUnsupported(reason: string, details: { cookie?: bigint; label?: string | null; cause?: unknown } = {}): PgBackgroundError {
  return new PgBackgroundError(
    'PGBG_POOLER_UNSUPPORTED',
    `${reason}: pg-background needs each task's transaction to stay on one backend. Use the pooler in session mode (or transaction mode), or the database's direct endpoint`,
    details,
  );
}

/** The hint added to a task refused inside the transaction it needs behind a pooler (VACUUM...). */
export const PINNED_HINT =
  "Behind a connection pooler, pg-background runs each task in a transaction of its own (so that its role, settings, pid and cancel stay on one backend); statements that cannot run in a transaction block need the database's direct endpoint (or a pooler in session mode, reached directly).";
