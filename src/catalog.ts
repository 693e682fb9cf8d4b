// Every SQL statement the library itself issues at run time, in one place (as pg-boss keeps
// plans.ts): the identity of a backend, the reset between tasks, cancel and terminate by backend
// identity, the liveness probe, and the transaction a task runs in behind a pooler. Schema
// objects live in numbered migrations (src/store/migrations.ts). A backend is always named by its
// pid *and* its start time: pids are reused, the pair is not.
import pg from 'pg';

/** The backend_start of a pg_stat_activity row, in the form BackendIdentity.started uses. */
export const BACKEND_STARTED_SQL = '(extract(epoch FROM backend_start) * 1000000)::int8::text';

/** A new worker connection's backend: pid, role, start, and whether the server watches for our death. */
export const IDENTITY_SQL = `SELECT pg_backend_pid() AS pid, current_user AS "user",
  (SELECT ${BACKEND_STARTED_SQL} FROM pg_stat_activity WHERE pid = pg_backend_pid()) AS started,
  (extract(epoch FROM current_setting('client_connection_check_interval', true)::interval) * 1000)::int AS caller_check`;

/**
 * Between tasks: settings, role, temp tables, prepared statements, cursors, LISTENs, advisory
 * locks and sequence state all go. (It refuses to run inside a transaction; none is ever open
 * after a task, and the explicit reset rolls back first.)
 */
export const RESET_SQL = 'DISCARD ALL';

/** A multi-statement task's own transaction block (see results/task-query.ts). */
export const BEGIN_SQL = 'BEGIN';

/** pg_cancel_backend of exactly that backend ($1 pid, $2 started). */
export const CANCEL_BACKEND_SQL = `SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE pid = $1 AND ${BACKEND_STARTED_SQL} = $2`;

/** pg_terminate_backend of exactly that backend ($1 pid, $2 started). */
export const TERMINATE_BACKEND_SQL = `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = $1 AND ${BACKEND_STARTED_SQL} = $2`;

/**
 * What the server says of some backends ($1 int[] of pids): their start, state, wait event and
 * how long they have been in that state, measured on the server (no clock skew).
 */
export const PROBE_BACKENDS_SQL = `SELECT pid, ${BACKEND_STARTED_SQL} AS started, state, wait_event,
        (extract(epoch FROM clock_timestamp() - state_change) * 1000)::float8 AS state_ms
   FROM pg_stat_activity WHERE pid = ANY($1::int[])`;

/** Ends a task's transaction: a multi-statement task's block, a pinned task's (see pool/pooler.ts). */
export const COMMIT_SQL = 'COMMIT';
export const ROLLBACK_SQL = 'ROLLBACK';

/** What `default_transaction_*` becomes inside the task's own transaction (BEGIN has used the defaults). */
const transactionSettings: Record<string, string> = {
  default_transaction_isolation: 'transaction_isolation',
  default_transaction_read_only: 'transaction_read_only',
  default_transaction_deferrable: 'transaction_deferrable',
};

/**
 * Behind a pooler, one simple query: BEGIN, the settings and role for this transaction only
 * (set_config(..., true), as SET LOCAL; the role last, settings may need the login's rights), and
 * the identity of the backend. transaction_* first, as utility statements: they must come before
 * any snapshot.
 */
export function pinSql(settings: readonly (readonly [string, string])[], role: string | null): string {
  const statements = ['BEGIN'];
  for (const [name, value] of settings) {
    const now = transactionSettings[name.toLowerCase()];
    if (now) statements.push(`SET LOCAL ${now} TO ${pg.escapeLiteral(value)}`);
  }
  const calls = [...settings, ...(role === null ? [] : [['role', role] as const])].map(
    ([name, value]) => `set_config(${pg.escapeLiteral(name)}, ${pg.escapeLiteral(value)}, true)`,
  );
  const identity = `pg_backend_pid() AS pid, (SELECT ${BACKEND_STARTED_SQL} FROM pg_stat_activity WHERE pid = pg_backend_pid()) AS started`;
  // set_config runs before the identity is read (select-list order), in the same statement.
  statements.push(`SELECT ${[...calls, identity].join(', ')}`);
  return statements.join('; ');
}
