// The catalog: every statement the library issues on its own behalf (not the user's SQL), one
// section per purpose, so a reviewer sees in one file what pg-background runs on a server: the
// identity of a backend, the reset between tasks, a task's own transaction, cancel and terminate
// by backend identity, the liveness probe, the poll of what running backends do (wait events,
// blockers, pg_stat_progress_*), the transaction a task runs in behind a pooler, the advisory
// locks of the cluster-wide cap, and what install() runs around the schema migrations (their
// bodies are in store/migrations.ts).
// A backend is always named by its pid *and* its start time: pids are reused, the pair is not.
// Identifiers are passed in already quoted; values are parameters wherever the protocol allows.
import pg from 'pg';

// ---- workers and their backends --------------------------------------------------------------

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

/**
 * A connection's tag while it runs a task (store/worker-identity.ts workerTag: printable ASCII),
 * sent ahead of the task in the same write (results/task-query.ts). A utility statement: no
 * snapshot, no plan, no row. `local` behind a pooler: it ends with the task's transaction there.
 */
export function tagSql(tag: string, local: boolean): string {
  // A task's write takes this statement in parts (store/worker-identity.ts workerTagStatement),
  // byte for byte the same.
  const literal = plainLiteral(tag) ? `'${tag}'` : pg.escapeLiteral(tag);
  return `SET ${local ? 'LOCAL ' : ''}application_name TO ${literal}`;
}

/** Text without a quote or backslash (nearly every tag) is its literal between quotes, unescaped. */
export function plainLiteral(text: string): boolean {
  return !text.includes("'") && !text.includes('\\');
}

/** A multi-statement task's own transaction block (see results/task-query.ts). */
export const BEGIN_SQL = 'BEGIN';

/** pg_cancel_backend of exactly that backend ($1 pid, $2 started). */
export const CANCEL_BACKEND_SQL = `SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE pid = $1 AND ${BACKEND_STARTED_SQL} = $2`;

/** A row while exactly that backend ($1 pid, $2 started) exists. */
export const BACKEND_EXISTS_SQL = `SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND ${BACKEND_STARTED_SQL} = $2`;

/** pg_terminate_backend of exactly that backend ($1 pid, $2 started). */
export const TERMINATE_BACKEND_SQL = `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = $1 AND ${BACKEND_STARTED_SQL} = $2`;

/**
 * What the server says of some backends ($1 int[] of pids): their start, state, wait event and
 * how long they have been in that state, measured on the server (no clock skew).
 */
export const PROBE_BACKENDS_SQL = `SELECT pid, ${BACKEND_STARTED_SQL} AS started, state, wait_event,
        (extract(epoch FROM clock_timestamp() - state_change) * 1000)::float8 AS state_ms
   FROM pg_stat_activity WHERE pid = ANY($1::int[])`;

/**
 * What the server says of running workers' backends ($1 int[] of pids), for list(): the wait
 * event, the backends holding the lock it waits for, and, for a backend in one of the
 * pg_stat_progress_* views, its phase and the fraction done of the counters that fit that phase.
 * Only columns PostgreSQL 14 to 18 all have (17 turned vacuum's dead tuple counts into bytes:
 * they are not used). pg_blocking_pids() takes the lock manager's locks, so it is only called for
 * a backend that waits on a lock. One row per backend still running.
 */
/**
 * One row (pid, phase, done, total) per backend in a pg_stat_progress_* view, each view's rows
 * limited by `where` (a WHERE clause on its pid, or ''). Part of OBSERVE_BACKENDS_SQL and of the
 * pg_background_workers view (store/migrations.ts): a released migration's view keeps the text
 * it was created with, so a change here reaches servers only through a new migration.
 */
export function progressRows(where: string): string {
  return `  SELECT pid, phase,
         CASE phase WHEN 'scanning heap' THEN heap_blks_scanned WHEN 'vacuuming heap' THEN heap_blks_vacuumed END AS done,
         heap_blks_total AS total
    FROM pg_catalog.pg_stat_progress_vacuum${where}
  UNION ALL
  SELECT pid, phase,
         CASE phase WHEN 'acquiring sample rows' THEN sample_blks_scanned
                    WHEN 'acquiring inherited sample rows' THEN child_tables_done
                    WHEN 'computing extended statistics' THEN ext_stats_computed END,
         CASE phase WHEN 'acquiring sample rows' THEN sample_blks_total
                    WHEN 'acquiring inherited sample rows' THEN child_tables_total
                    WHEN 'computing extended statistics' THEN ext_stats_total END
    FROM pg_catalog.pg_stat_progress_analyze${where}
  UNION ALL
  SELECT pid, phase,
         CASE WHEN phase LIKE 'waiting for%' THEN lockers_done
              WHEN phase LIKE '%scanning table%' OR phase = 'building index' THEN blocks_done
              WHEN phase NOT LIKE '%sorting%' AND tuples_total > 0 THEN tuples_done END,
         CASE WHEN phase LIKE 'waiting for%' THEN lockers_total
              WHEN phase LIKE '%scanning table%' OR phase = 'building index' THEN blocks_total
              WHEN phase NOT LIKE '%sorting%' AND tuples_total > 0 THEN tuples_total END
    FROM pg_catalog.pg_stat_progress_create_index${where}
  UNION ALL
  SELECT pid, phase,
         CASE phase WHEN 'seq scanning heap' THEN heap_blks_scanned WHEN 'writing new heap' THEN heap_tuples_written END,
         CASE phase WHEN 'seq scanning heap' THEN heap_blks_total WHEN 'writing new heap' THEN heap_tuples_scanned END
    FROM pg_catalog.pg_stat_progress_cluster${where}
  UNION ALL
  SELECT pid, command, bytes_processed, bytes_total
    FROM pg_catalog.pg_stat_progress_copy${where}`;
}

export const OBSERVE_BACKENDS_SQL = `WITH progress AS (
${progressRows(' WHERE pid = ANY ($1::int4[])')}
)
SELECT DISTINCT ON (a.pid) a.pid, ${BACKEND_STARTED_SQL} AS started, a.wait_event_type, a.wait_event,
       CASE WHEN a.wait_event_type = 'Lock' THEN pg_catalog.pg_blocking_pids(a.pid) ELSE '{}'::int4[] END AS blocked_by,
       p.phase,
       CASE WHEN p.done IS NOT NULL AND p.total > 0 THEN LEAST(1, p.done::float8 / p.total::float8) END AS fraction
  FROM pg_catalog.pg_stat_activity a LEFT JOIN progress p ON p.pid = a.pid
 WHERE a.pid = ANY ($1::int4[])
 ORDER BY a.pid`;

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

// ---- the cluster-wide cap (pool/cluster-slots.ts) ---------------------------------------------
// Session advisory locks in the two-int4 key space, all under one classid derived from the
// clusterKey: slot i is the key (classid, i), the turnstile (the head of the cross-process
// queue) is (classid, -1). The locks live on the instance's cluster connection, so the server
// frees every slot of a process whose session ends. CASE fixes the order of evaluation where
// a lock must or must not be tried; MATERIALIZED keeps the gate's lock tried once.

/** The turnstile's objid: never a slot number. */
export const TURNSTILE_OBJID = -1;

/** The session's real backend pid (compared with BackendKeyData to see a pooler). */
export const BACKEND_PID_SQL = 'SELECT pg_catalog.pg_backend_pid() AS pid';

/** `channel` quoted. Wake-ups when a slot is given back. */
export const listenSql = (channel: string) => `LISTEN ${channel}`;

/** A free slot (the first of 0..$2-1 not held by this session, $3 int4[], nor by any other) or null. */
const TRY_SLOT = `(SELECT s FROM pg_catalog.generate_series(0, $2::int4 - 1) AS s
   WHERE CASE WHEN s = ANY ($3::int4[]) THEN false ELSE pg_catalog.pg_try_advisory_lock($1::int4, s) END
   LIMIT 1)`;

/**
 * $1 classid, $2 clusterMaxWorkers, $3 slots this session holds. A slot, only while nobody waits
 * (the turnstile is free): a launch that finds the cap reached never overtakes a waiting one.
 * `slot` null and `open` false: launches are waiting; `open` true: all slots are taken.
 */
export const CLUSTER_TRY_SQL = `WITH gate AS MATERIALIZED (SELECT pg_catalog.pg_try_advisory_lock_shared($1::int4, ${TURNSTILE_OBJID}) AS open),
     taken AS MATERIALIZED (SELECT CASE WHEN gate.open THEN ${TRY_SLOT} END AS slot FROM gate)
SELECT taken.slot, gate.open,
       CASE WHEN gate.open THEN pg_catalog.pg_advisory_unlock_shared($1::int4, ${TURNSTILE_OBJID}) END AS gate_unlocked
  FROM gate, taken`;

/** Same parameters; for the head of the queue (its turnstile session holds the turnstile). */
export const CLUSTER_HEAD_TRY_SQL = `SELECT ${TRY_SLOT} AS slot`;

/**
 * $1 classid, $2 slot, $3 channel. Gives the slot back, then wakes the head of the queue if
 * there is one (it holds the turnstile): the unlock comes first, so the head's next try sees it.
 */
export const CLUSTER_RELEASE_SQL = `SELECT pg_catalog.pg_advisory_unlock($1::int4, $2::int4) AS released,
       CASE WHEN pg_catalog.pg_try_advisory_lock_shared($1::int4, ${TURNSTILE_OBJID})
            THEN pg_catalog.pg_advisory_unlock_shared($1::int4, ${TURNSTILE_OBJID})::text
            ELSE pg_catalog.pg_notify($3, '')::text END AS woke`;

/** $1 classid. Waits (on the turnstile session) to be the head of the queue: the server's lock queue is FIFO. */
export const TURNSTILE_LOCK_SQL = `SELECT pg_catalog.pg_advisory_lock($1::int4, ${TURNSTILE_OBJID})`;
export const TURNSTILE_UNLOCK_SQL = `SELECT pg_catalog.pg_advisory_unlock($1::int4, ${TURNSTILE_OBJID})`;

// ---- control from SQL (store/migrations.ts migration 3, control/remote-control.ts) -----------
// Every instance's control connection LISTENs on one channel and holds a shared session advisory
// lock on one int8 key (objsubid 1 in pg_locks, apart from the cluster cap's int4 pairs), so that
// the SQL functions see in pg_locks, visible to every role, which sessions hear their requests.
// A worker's backend is named by its pid and its tag's prefix ('pgbg:' + 16 hex digits + ':').

/** The channel of control requests and their acks (one per database). */
export const CONTROL_CHANNEL = 'pgbg_control';
/** Held (shared) by every listening control connection. */
export const CONTROL_LISTENER_KEY = 7_302_948_117_394_113n;
/** 'pgbg:' + the cookie as 16 hex digits + ':'. */
export const TAG_PREFIX_LENGTH = 22;

/** On a direct control connection: listen for requests and say so. */
export const CONTROL_LISTEN_SQL = `LISTEN ${CONTROL_CHANNEL}; SELECT pg_catalog.pg_advisory_lock_shared(${CONTROL_LISTENER_KEY})`;

/** $1 payload. An ack (or any message) on the control channel. */
export const CONTROL_NOTIFY_SQL = `SELECT pg_catalog.pg_notify('${CONTROL_CHANNEL}', $1)`;

/** The table of control requests, in the schema of the functions (migration 3). */
export const CONTROL_REQUESTS_TABLE = 'pg_background_control_requests';
/** Marks the requests table install() created (and a handler may therefore trust). */
export const CONTROL_REQUESTS_MARKER = 'pg-background control requests';

/** Whether role `role` (an expression) could pg_cancel_backend a backend of role `t` (signalfuncs.c's rule). */
const maySignal = (role: string) => `((NOT t.rolsuper OR (SELECT rolsuper FROM pg_catalog.pg_roles WHERE oid = ${role}))
       AND (pg_catalog.pg_has_role(${role}, t.oid, 'USAGE') OR pg_catalog.pg_has_role(${role}, 'pg_signal_backend', 'USAGE')))`;

/**
 * `schema` quoted: the schema a request names. $1 request id, $2 the worker's backend pid (0 when
 * pending), $3 its tag prefix, $4 the table's name, schema-qualified and quoted. The request's row, if that schema's requests table is one a
 * forger cannot have filled: marked, with forced row level security (its insert policy stamps the
 * inserting role), owned by a role that could itself signal the worker; and only while the
 * request is fresh (a minute), so an old one notified again changes nothing later. `allowed` when its
 * requester could pg_cancel_backend the worker's backend (for a pending worker, a backend of the
 * current user); `running` when that backend still carries the tag.
 */
export const controlRequestSql = (schema: string) => `WITH target AS (
  SELECT w.usesysid AS role FROM pg_catalog.pg_stat_activity w
   WHERE w.pid = $2 AND left(w.application_name, ${TAG_PREFIX_LENGTH}) = $3)
SELECT q.action, q.cookie::text AS cookie, q.grace_ms, EXISTS (SELECT 1 FROM target) AS running,
       ${maySignal('(SELECT oid FROM pg_catalog.pg_roles WHERE rolname = q.requester)')} AND ${maySignal('c.relowner')} AS allowed
  FROM ${schema}.${CONTROL_REQUESTS_TABLE} q
  JOIN pg_catalog.pg_class c ON c.oid = pg_catalog.to_regclass($4)
  JOIN pg_catalog.pg_roles t ON t.oid = coalesce((SELECT role FROM target), (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user))
 WHERE q.id = $1::uuid AND q.requested_at > pg_catalog.now() - interval '1 minute'
   AND c.relkind = 'r' AND c.relrowsecurity AND c.relforcerowsecurity
   AND pg_catalog.obj_description(c.oid, 'pg_class') LIKE '${CONTROL_REQUESTS_MARKER}:%'`;

/** $1 pid, $2 tag prefix: pg_cancel_backend of that backend while it carries the tag. */
export const CANCEL_TAGGED_SQL = `SELECT pg_catalog.pg_cancel_backend(pid) AS sent FROM pg_catalog.pg_stat_activity
 WHERE pid = $1 AND left(application_name, ${TAG_PREFIX_LENGTH}) = $2`;

/** $1 pid, $2 tag prefix: pg_terminate_backend of that backend while it carries the tag. */
export const TERMINATE_TAGGED_SQL = `SELECT pg_catalog.pg_terminate_backend(pid) AS sent FROM pg_catalog.pg_stat_activity
 WHERE pid = $1 AND left(application_name, ${TAG_PREFIX_LENGTH}) = $2`;

/** $1 pid, $2 tag prefix: a row while that backend carries the tag and is not idle (its work not ended). */
export const TAGGED_BUSY_SQL = `SELECT 1 FROM pg_catalog.pg_stat_activity
 WHERE pid = $1 AND left(application_name, ${TAG_PREFIX_LENGTH}) = $2
   AND state IS DISTINCT FROM 'idle' AND state IS DISTINCT FROM 'idle in transaction (aborted)'`;

// ---- install ---------------------------------------------------------------------------------

/** Advisory lock key serialising concurrent installs (any schema, any database of the server). */
export const INSTALL_LOCK_KEY = 7_302_948_117_394_112n;
/** The table in the target schema recording which migrations install() applied. */
export const MIGRATIONS_TABLE = 'pg_background_migrations';
/** Marks the migrations table install() created (and may therefore use). */
export const MIGRATIONS_TABLE_MARKER = 'pg-background migrations';

/**
 * Whose an object is, as install() must know before it adopts it: its owner, whether that is the
 * current user, its comment (our marker) and the extension it belongs to, if any. `alias` is the
 * catalog row (`p` of pg_proc, `c` of pg_class), `owner` its owner column, `catalog` its table.
 */
function ownership(alias: string, owner: string, catalog: string): string {
  return `pg_catalog.pg_get_userbyid(${alias}.${owner}) AS owner,
       ${alias}.${owner} = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user) AS mine,
       pg_catalog.obj_description(${alias}.oid, '${catalog}') AS comment,
       (SELECT e.extname FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
         WHERE d.classid = 'pg_catalog.${catalog}'::pg_catalog.regclass AND d.objid = ${alias}.oid AND d.deptype = 'e') AS extension`;
}

export const installSql = {
  begin: 'BEGIN',
  commit: 'COMMIT',
  rollback: 'ROLLBACK',
  /** $1 = INSTALL_LOCK_KEY as text. Held to the end of the transaction. */
  lock: 'SELECT pg_catalog.pg_advisory_xact_lock($1::bigint)',
  /** $1 = schema name. A row when it exists. */
  schemaExists: 'SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1',
  /** $1 = schema name, $2 = function names. Every overload, whose it is, and whether it is ours. */
  functions: `SELECT p.oid::pg_catalog.regprocedure::text AS signature,
       p.proname::text AS name,
       ${ownership('p', 'proowner', 'pg_proc')}
  FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = $1 AND p.proname = ANY ($2::text[])`,
  /**
   * $1 = schema name, $2 = MIGRATIONS_TABLE. The relation of that name, if any, with everything
   * that would let another role change what install() reads or run code when it writes: its
   * owner, kind, extension, triggers, rules, inheritance, and privileges beyond SELECT granted
   * to others.
   */
  migrationsTable: `SELECT c.oid::pg_catalog.regclass::text AS name,
       c.relkind::text AS kind,
       ${ownership('c', 'relowner', 'pg_class')},
       EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal)
         OR EXISTS (SELECT 1 FROM pg_catalog.pg_rewrite r WHERE r.ev_class = c.oid) AS hooked,
       EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i WHERE i.inhrelid = c.oid OR i.inhparent = c.oid) AS inherits,
       (SELECT CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(a.grantee) END FROM pg_catalog.aclexplode(c.relacl) a
         WHERE a.grantee <> c.relowner AND a.privilege_type <> 'SELECT' LIMIT 1) AS writer
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = $1 AND c.relname = $2`,
  /**
   * $1 = schema name, $2 = names of the tables and views migrations create. Each that exists,
   * whose it is, and whether anything would run when it is read or written: triggers, or rules
   * other than a view's own _RETURN.
   */
  relations: `SELECT c.oid::pg_catalog.regclass::text AS name,
       c.relname::text AS relname,
       c.relkind::text AS kind,
       ${ownership('c', 'relowner', 'pg_class')},
       EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal)
         OR EXISTS (SELECT 1 FROM pg_catalog.pg_rewrite r WHERE r.ev_class = c.oid AND r.rulename <> '_RETURN') AS hooked
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = $1 AND c.relname = ANY ($2::text[])`,
  /** `schema` quoted. */
  createMigrationsTable: (schema: string) => [
    `CREATE TABLE ${schema}.${MIGRATIONS_TABLE} (
  id integer PRIMARY KEY,
  name text NOT NULL,
  applied_at timestamptz NOT NULL
)`,
    `COMMENT ON TABLE ${schema}.${MIGRATIONS_TABLE} IS '${MIGRATIONS_TABLE_MARKER}: one row per schema migration install() applied'`,
  ],
  /** `schema` quoted. ONLY: no child table's rows (there is none: checked). */
  recorded: (schema: string) => `SELECT id FROM ONLY ${schema}.${MIGRATIONS_TABLE} ORDER BY id`,
  /** `schema` quoted; $1 = id, $2 = name. */
  record: (schema: string) => `INSERT INTO ${schema}.${MIGRATIONS_TABLE} (id, name, applied_at) VALUES ($1, $2, pg_catalog.now())`,
} as const;

// ---- the journal (control/journal-writer.ts; the table and view are migration 4) --------------

/**
 * Where the journal is: the schema (quoted) of the pg_background_journal the control
 * connection's search_path finds, when pg_background_journal_ends is beside it, and whether the
 * login may insert into the latter (else its workers' ends go unproven rather than fail them):
 * not in a session that starts read-only (a read replica, a database's or role's
 * default_transaction_read_only), where the insert would fail every worker with 25006.
 * No row: not installed.
 */
export const JOURNAL_LOCATE_SQL = `SELECT pg_catalog.quote_ident(n.nspname) AS schema,
       pg_catalog.has_table_privilege(e.oid, 'INSERT') AND NOT pg_catalog.current_setting('transaction_read_only')::bool AS provable
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_catalog.pg_class e ON e.relnamespace = n.oid AND e.relname = 'pg_background_journal_ends' AND e.relkind = 'r'
 WHERE c.oid = pg_catalog.to_regclass('pg_background_journal') AND c.relkind = 'r'`;

/**
 * One batch of journal rows: a multi-row upsert from one array per column (`columns`, names and
 * the type of each one's elements: `ms` a timestamptz as epoch milliseconds; store/journal.ts
 * journalBatch builds them), unnested side by side, then the owner's host, pid and application,
 * once for every row; the owner's control connection is the writing backend. A row never goes
 * back from an end to a running state. `schema` quoted. A row is locked only while its worker's
 * own transaction commits (its journal statement is its last): the write waits that long at
 * most, within the control deadline. (Arrays, not a JSON document: ~30% less server time per row,
 * bench/journal-cost.mjs.) `upsert` false: a plain INSERT, for rows of workers never written
 * (another third less per row; a row already there fails it with 23505).
 */
export function journalWriteSql(schema: string, columns: readonly (readonly [string, string])[], upsert = true): string {
  const names = columns.map(([name]) => name);
  const all = [...names, 'owner_host', 'owner_pid', 'owner_application', 'owner_control_pid', 'owner_control_started'];
  const value = ([name, type]: readonly [string, string]) =>
    type === 'ms' ? `pg_catalog.to_timestamp(r.${name} / 1000)` : type === 'int4[]' ? `coalesce(r.${name}::int4[], '{}')` : `r.${name}`;
  const arrayType = (type: string) => (type === 'ms' ? 'float8' : type === 'int4[]' ? 'text' : type);
  const n = columns.length;
  const insert = `INSERT INTO ${schema}.pg_background_journal AS j (${all.join(', ')})
SELECT ${columns.map(value).join(', ')}, $${n + 1}::text, $${n + 2}::int4, $${n + 3}::text, pg_catalog.pg_backend_pid(),
       (SELECT ${BACKEND_STARTED_SQL} FROM pg_catalog.pg_stat_activity WHERE pid = pg_catalog.pg_backend_pid())::int8
  FROM ROWS FROM (${columns.map(([, type], i) => `pg_catalog.unnest($${i + 1}::${arrayType(type)}[])`).join(', ')}) AS r(${names.join(', ')})`;
  if (!upsert) return insert;
  return `${insert}
ON CONFLICT (cookie) DO UPDATE SET ${all
    .filter((column) => column !== 'cookie')
    .map((column) => `${column} = EXCLUDED.${column}`)
    .join(', ')}
 WHERE j.finished_at IS NULL OR EXCLUDED.finished_at IS NOT NULL`;
}

/**
 * $1 = retention in ms. Rows of workers finished (or committed) longer ago than that go. `schema`
 * quoted. An end stays while a row not finished names it: that row's owner died before it
 * recorded the end, and the end is all that says the work committed (without it the view would
 * call committed work "nothing committed").
 */
export const journalPruneSql = (schema: string) =>
  `WITH ends AS (DELETE FROM ${schema}.pg_background_journal_ends e WHERE e.committed_at < pg_catalog.now() - $1::float8 * interval '1 millisecond'
   AND NOT EXISTS (SELECT 1 FROM ${schema}.pg_background_journal j WHERE j.cookie = e.cookie AND j.finished_at IS NULL))
DELETE FROM ${schema}.pg_background_journal WHERE finished_at < pg_catalog.now() - $1::float8 * interval '1 millisecond'`;

/**
 * The last statement of a journaled worker's own transaction: records that it committed, so the
 * row commits exactly when the work does. Unconditional, whatever the transaction did: one that
 * seems to have written nothing may still have committed something (a NOTIFY takes its xid only
 * at commit, from a function as well as from the text), and a read-only one only pays its xid and
 * its commit's WAL flush. An INSERT ... VALUES, the cheapest form (no subquery to plan;
 * bench/journal-cost.mjs). `schema` quoted; the cookie as a quoted literal (an int8 literal of
 * -2^63 would be numeric).
 */
export const journalCommitSql = (schema: string, cookie: bigint) =>
  `INSERT INTO ${schema}.pg_background_journal_ends (cookie, committed_at) VALUES ('${cookie}'::int8, pg_catalog.clock_timestamp())`;

// ---- the operator's view, from another process (monitor/worker-monitor.ts) -------------------
// The view pg_background_workers and the control functions live in install()'s schema; `schema`
// is passed in quoted. The int8 columns come back as text (the monitor makes bigints and
// numbers of them), so a caller's type parsers can never change what the monitor reads.

/** The view every process's workers are shown in (created by install()). */
export const WORKERS_VIEW = 'pg_background_workers';

/**
 * `schema` quoted; $1 int8 or null: finished workers older than that many ms are left out (null:
 * every retained one). Newest first; a tie (one launch instant) by cookie, so the order is stable.
 */
export const monitorListSql = (schema: string) => `SELECT cookie::text AS cookie, pid, label, scope, parent::text AS parent, state, phase,
       fraction_completed, sql_preview, user_name, owner, attempts, launched_at, started_at, updated_at, finished_at,
       elapsed_ms::text AS elapsed_ms, wait_event, blocked_by, sqlstate, error_message, command_tag, row_count::text AS row_count
  FROM ${schema}.${WORKERS_VIEW}
 WHERE $1::int8 IS NULL OR finished_at IS NULL
    OR finished_at >= pg_catalog.clock_timestamp() - $1::int8 * interval '1 millisecond'
 ORDER BY launched_at DESC, cookie`;

/** `schema` quoted; $1 cookie (int8 as text). The view's row of that worker, if it shows one. */
export const monitorInfoSql = (schema: string) => `SELECT cookie::text AS cookie, pid, label, scope, parent::text AS parent, state, phase,
       fraction_completed, sql_preview, user_name, owner, attempts, launched_at, started_at, updated_at, finished_at,
       elapsed_ms::text AS elapsed_ms, wait_event, blocked_by, sqlstate, error_message, command_tag, row_count::text AS row_count
  FROM ${schema}.${WORKERS_VIEW}
 WHERE cookie = $1::int8
 LIMIT 1`;

/** `schema` quoted; $1 cookie (int8 as text), $2 grace (ms). Whether it changed anything. */
export const monitorCancelSql = (schema: string) => `SELECT ${schema}.pg_background_cancel_worker($1::int8, $2::int4) AS changed`;
/** `schema` quoted; $1 cookie (int8 as text). */
export const monitorPauseSql = (schema: string) => `SELECT ${schema}.pg_background_pause_worker($1::int8) AS changed`;
export const monitorResumeSql = (schema: string) => `SELECT ${schema}.pg_background_resume_worker($1::int8) AS changed`;
