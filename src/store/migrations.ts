// The schema objects install() creates, as numbered migrations applied in order (see migrate.ts).
// A migration is never edited once released: a change to an object is a new migration with the
// next id. Each names the functions, tables and views it creates so install() can check on every
// run that they are still pg-background's (its marker, the current user's) before it touches
// anything, and re-run it when one was dropped by hand: a migration's statements must therefore
// be re-runnable where its objects are missing (CREATE OR REPLACE, IF NOT EXISTS). A later
// migration that redefines an earlier one's object lists it too, so such a repair ends on the
// latest definition.
//
// Optional migrations. Ids stay one line (1, 2, 3, …), but a migration may belong to a feature
// (`feature: 'journal'`): install() applies it only when asked for that feature
// (install({ journal: true })) or when the schema already has the feature (a migration of it is
// recorded); a plain install() skips it and leaves a gap in the recorded ids, filled by a later
// install({ journal: true }). So an optional migration can be applied after base migrations with
// higher ids, and an object both define (the view, which the journal migration redefines to add
// journaled rows) would end on the older text. Two rules keep it right:
//  - a base migration that redefines such an object after an optional one gives the definition
//    for each case: its `statements` receive the features the schema has (`features.has('journal')`);
//  - after applying an optional migration out of order, migrate() runs again the newest applied
//    migration that lists each of its objects, so the object ends on its newest definition.
// Migration 3 is the SQL control functions (another branch); 4 is the journal.
import { progressRows, WORKERS_VIEW } from '../catalog.js';

import { CONTROL_CHANNEL, CONTROL_LISTENER_KEY, CONTROL_REQUESTS_MARKER, CONTROL_REQUESTS_TABLE, TAG_PREFIX_LENGTH } from '../catalog.js';

export const PROGRESS_SQLSTATE = 'PGBGP';
export const PROGRESS_MESSAGE = 'pg_background_progress';
export const PROGRESS_FUNCTION = 'pg_background_progress';
/** Marks the functions install() created (and may therefore replace). */
export const FUNCTION_MARKER = 'pg-background progress reporter';

/** A part of the schema install() adds only when asked for it. */
export type Feature = 'journal';

/** A table or view a migration creates, and the comment that marks it as install()'s. */
export interface Relation {
  readonly name: string;
  /** pg_class.relkind: 'r' a table, 'v' a view. */
  readonly kind: 'r' | 'v';
  /** Its comment starts with this (the check of ownership). */
  readonly marker: string;
}

export interface Migration {
  /** 1, 2, 3…: the order of application and the row recorded in the migrations table. */
  readonly id: number;
  readonly name: string;
  /** The feature it belongs to (applied only with it: see above); absent for every install(). */
  readonly feature?: Feature;
  /** Names of the functions (in the target schema) it creates or redefines. */
  readonly functions: readonly string[];
  /** The comment its functions start with; FUNCTION_MARKER when absent. */
  readonly functionMarker?: string;
  /** The tables and views it creates or redefines. */
  readonly relations?: readonly Relation[];
  /** Its statements, in order; `schema` is already quoted; `features`: those the schema has after this run. */
  statements(schema: string, features: ReadonlySet<Feature>): string[];
}

const progressFunction: Migration = {
  id: 1,
  name: 'progress function',
  functions: [PROGRESS_FUNCTION],
  statements: (schema) => [
    `CREATE OR REPLACE FUNCTION ${schema}.${PROGRESS_FUNCTION}(pct integer, msg text DEFAULT '')
RETURNS void
LANGUAGE plpgsql
VOLATILE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $pgbg$
BEGIN
  IF pct IS NULL OR pct < 0 OR pct > 100 THEN
    RAISE EXCEPTION 'pg_background_progress: pct must be from 0 to 100, got %', pct USING ERRCODE = '22023';
  END IF;
  RAISE INFO '${PROGRESS_MESSAGE}' USING ERRCODE = '${PROGRESS_SQLSTATE}',
    DETAIL = json_build_object('pct', pct, 'message', coalesce(msg, ''))::text;
END
$pgbg$`,
    `COMMENT ON FUNCTION ${schema}.${PROGRESS_FUNCTION}(integer, text)
  IS '${FUNCTION_MARKER} v1: reports progress to the pg-background caller'`,
  ],
};

export { WORKERS_VIEW };
export const JOURNAL_TABLE = 'pg_background_journal';
/** Where a journaled worker's own transaction, last, records that it committed (see migration 4). */
export const JOURNAL_ENDS_TABLE = 'pg_background_journal_ends';
export const VIEW_MARKER = 'pg-background workers view';
export const JOURNAL_MARKER = 'pg-background journal';

/** What the view says of a journaled worker whose backend is gone while its row says it was not done. */
export const NOTHING_COMMITTED_RUNNING =
  "the worker's backend ended before its transaction committed, and the process that launched it did not record its end: nothing committed";
export const NOTHING_COMMITTED_PENDING = 'the process that launched the worker is gone and no backend runs it: nothing committed';
/** What the view says of a job's root (no SQL of its own) whose process is gone while it ran. */
export const JOB_OWNER_GONE = "outcome unknown: the process that ran the job is gone; each subtask's row says what it did";

export const OUTCOME_UNKNOWN_GONE =
  "outcome unknown: the worker's backend ended and the process that launched it did not record how; its SQL ran without the proof of its commit (it cannot run in a transaction block, or its role or a read-only transaction could not write the proof), so it may have committed";
/** Migration 4's wording of OUTCOME_UNKNOWN_GONE (its view stays as it was installed). */
const OUTCOME_UNKNOWN_GONE_V4 =
  "outcome unknown: the worker's backend ended and the process that launched it did not record how; its SQL cannot run in a transaction block, so it may have committed";
/** Migration 5's function: whether a worker's end is recorded, seen with a snapshot of its own (see there). */
const JOURNAL_COMMITTED_FUNCTION = 'pg_background_journal_committed';

/** The journal row `j`'s owner still runs: its control connection (pid and start) is there. */
const ownerAlive = `EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity o
                 WHERE o.pid = j.owner_control_pid AND (o.backend_start IS NULL OR (extract(epoch FROM o.backend_start) * 1000000)::int8 = j.owner_control_started))`;

/** A backend's start as the journal keeps it (BACKEND_STARTED_SQL's microseconds, as int8). */
const started = (alias: string) => `(extract(epoch FROM ${alias}.backend_start) * 1000000)::int8`;

/**
 * Backends of this database (the one whose journal and control functions the view sits beside:
 * a worker it shows is one they act on) that match `where` (alias `a`), with the tag's cookie (null for
 * an untagged backend), the wait event, the blockers (pg_blocking_pids only for a lock waiter)
 * and the phase and fraction of the progress views: OBSERVE_BACKENDS_SQL's logic for the view.
 */
function liveBackends(where: string): string {
  return `progress AS (
${progressRows('')}
), live AS (
  SELECT DISTINCT ON (a.pid) a.pid, ${started('a')} AS started, a.application_name,
         CASE WHEN a.application_name ~ '^pgbg:[0-9a-f]{16}:' THEN ('x' || substr(a.application_name, 6, 16))::bit(64)::int8 END AS cookie,
         a.usename::text AS user_name, a.state, a.query, coalesce(a.xact_start, a.query_start) AS since, a.state_change,
         CASE WHEN a.wait_event IS NOT NULL THEN a.wait_event_type || ':' || a.wait_event END AS wait_event,
         CASE WHEN a.wait_event_type = 'Lock' THEN pg_catalog.pg_blocking_pids(a.pid) ELSE '{}'::int4[] END AS blocked_by,
         p.phase::text AS phase,
         CASE WHEN p.done IS NOT NULL AND p.total > 0 THEN LEAST(1, p.done::float8 / p.total::float8) END AS fraction
    FROM pg_catalog.pg_stat_activity a LEFT JOIN progress p ON p.pid = a.pid
   WHERE a.datid = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()) AND (${where})
   ORDER BY a.pid, p.phase
)`;
}

/** The view's columns for a tagged backend nobody journaled (`l` a row of liveBackends). */
const TAGGED_COLUMNS = `l.cookie, l.pid, NULLIF(substr(l.application_name, 23), '') AS label, 'root'::text AS scope, NULL::int8 AS parent,
       'running'::text AS state, l.phase, l.fraction AS fraction_completed, left(l.query, 120) AS sql_preview,
       l.user_name, NULL::text AS owner, 1::int4 AS attempts,
       l.since AS launched_at, l.since AS started_at, l.state_change AS updated_at, NULL::timestamptz AS finished_at,
       (extract(epoch FROM clock_timestamp() - l.since) * 1000)::int8 AS elapsed_ms,
       l.wait_event, l.blocked_by, NULL::text AS sqlstate, NULL::text AS error_message, NULL::text AS command_tag, NULL::int8 AS row_count`;

const viewComment = (schema: string, version: string) =>
  `COMMENT ON VIEW ${schema}.${WORKERS_VIEW} IS '${VIEW_MARKER} ${version}: the workers of every process, from their connections'' tags and the journal'`;

const workersView: Migration = {
  id: 2,
  name: 'workers view',
  functions: [],
  relations: [{ name: WORKERS_VIEW, kind: 'v', marker: VIEW_MARKER }],
  // Without the journal: the running workers, from the application_name of their connections
  // (pgbg:<cookie as 16 hex digits>:<label>) while they run something (not 'idle'). Launch and start are what the server saw: the
  // start of the task's transaction.
  statements: (schema) => [
    `CREATE OR REPLACE VIEW ${schema}.${WORKERS_VIEW} AS
WITH ${liveBackends("a.application_name LIKE 'pgbg:%'")}
SELECT ${TAGGED_COLUMNS}
  FROM live l
 WHERE l.cookie IS NOT NULL AND l.state IS DISTINCT FROM 'idle'`,
    viewComment(schema, 'v2'),
  ],
};

/** The states a journal row may hold (SPEC Part 2's list, frozen with this migration). */
const JOURNAL_STATES = ['pending', 'paused', 'running', 'cancelling', 'stopped', 'canceled', 'error'];

const journal: Migration = {
  id: 4,
  name: 'journal',
  feature: 'journal',
  functions: [],
  relations: [
    { name: JOURNAL_TABLE, kind: 'r', marker: JOURNAL_MARKER },
    { name: JOURNAL_ENDS_TABLE, kind: 'r', marker: JOURNAL_MARKER },
    { name: WORKERS_VIEW, kind: 'v', marker: VIEW_MARKER },
  ],
  statements: (schema) => [
    // One row per worker of every journaling process, upserted by its owner's control
    // connection in batches; `proven`: its SQL ran in a transaction whose last statement
    // inserts its cookie into pg_background_journal_ends, so a row without one whose backend
    // ended did not commit.
    `CREATE TABLE IF NOT EXISTS ${schema}.${JOURNAL_TABLE} (
  cookie int8 PRIMARY KEY,
  pid int4,
  backend_started int8,
  label text,
  scope text NOT NULL,
  parent int8,
  state text NOT NULL CHECK (state IN (${JOURNAL_STATES.map((state) => `'${state}'`).join(', ')})),
  phase text,
  fraction_completed float8,
  explicit_progress boolean NOT NULL DEFAULT false,
  sql_preview text,
  user_name text,
  owner_host text,
  owner_pid int4,
  owner_application text,
  owner_control_pid int4,
  owner_control_started int8,
  attempts int4 NOT NULL DEFAULT 1,
  launched_at timestamptz,
  started_at timestamptz,
  updated_at timestamptz NOT NULL,
  finished_at timestamptz,
  wait_event text,
  blocked_by int4[] NOT NULL DEFAULT '{}',
  sqlstate text,
  error_message text,
  command_tag text,
  row_count int8,
  proven boolean NOT NULL DEFAULT false,
  job boolean NOT NULL DEFAULT false
)`,
    `COMMENT ON TABLE ${schema}.${JOURNAL_TABLE} IS '${JOURNAL_MARKER} v4: one row per worker of every journaling pg-background process'`,
    // The end of a worker, written by its own transaction as its last statement: it commits
    // exactly when the work does, whether or not a batch landed. Insert-only and narrow (a
    // task pays ~the cost of one more tiny row, no upsert). Every transactional worker writes
    // it, a read-only one too: a transaction that seems to write nothing may still commit
    // something (a notification a function sends), so there is no "wrote nothing" to skip.
    `CREATE TABLE IF NOT EXISTS ${schema}.${JOURNAL_ENDS_TABLE} (
  cookie int8 PRIMARY KEY,
  committed_at timestamptz NOT NULL
)`,
    `COMMENT ON TABLE ${schema}.${JOURNAL_ENDS_TABLE} IS '${JOURNAL_MARKER} v4: the workers whose own transaction committed, written by it'`,
    // The view, now with every journaled worker: its live columns from its backend while it
    // runs, and the truth about one whose backend is gone while its row says it was not done.
    journalView(schema, false),
    viewComment(schema, 'v4'),
  ],
};

/**
 * The view over the journal: migration 4's (`fresh` false, as it was installed), and migration
 * 5's. The statement's snapshot, which reads pg_background_journal_ends, is taken before
 * pg_stat_activity is read: a worker of a dead owner that commits and exits in between would be
 * found gone with no end, "nothing committed". So 5 looks again, for each row it would judge
 * gone, with a snapshot of its own taken after (the VOLATILE function JOURNAL_COMMITTED_FUNCTION:
 * under READ COMMITTED each of its queries takes a new one); under REPEATABLE READ or
 * SERIALIZABLE no later snapshot exists, so it gives no such verdict at all (the row says what
 * its owner last wrote).
 */
function journalView(schema: string, fresh: boolean): string {
  return `CREATE OR REPLACE VIEW ${schema}.${WORKERS_VIEW} AS
WITH ${liveBackends(`a.application_name LIKE 'pgbg:%' OR a.pid IN (SELECT pid FROM ${schema}.${JOURNAL_TABLE} WHERE finished_at IS NULL)`)},
${fresh ? 'seen' : 'journaled'} AS (
  SELECT j.*, e.committed_at${fresh ? ' AS seen_committed_at' : ''}, l.pid AS live_pid, l.phase AS live_phase, l.fraction AS live_fraction, l.wait_event AS live_wait_event, l.blocked_by AS live_blocked_by,
         CASE
           WHEN e.cookie IS NOT NULL OR j.finished_at IS NOT NULL OR j.state NOT IN ('pending', 'paused', 'running', 'cancelling') THEN false
           -- Started: its backend (pid and start; a start the viewer may not see counts as it) no
           -- longer runs it, and its owner is gone: nobody will say more. (A live owner records
           -- the end within a batch, whatever became of the backend: until then the row says
           -- what the owner last said, rather than a verdict the next batch would contradict.)
           WHEN j.pid IS NOT NULL AND j.pid <> 0 THEN l.pid IS NULL AND NOT ${ownerAlive}
           -- Not started: its owner's control connection is gone and no backend carries its tag.
           ELSE j.owner_control_pid IS NOT NULL AND NOT ${ownerAlive}
                AND NOT EXISTS (SELECT 1 FROM live t WHERE t.cookie = j.cookie)
         END AS ${fresh ? 'seen_gone' : 'gone'}
    FROM ${schema}.${JOURNAL_TABLE} j
    LEFT JOIN ${schema}.${JOURNAL_ENDS_TABLE} e ON e.cookie = j.cookie
    LEFT JOIN live l ON j.finished_at IS NULL AND e.cookie IS NULL AND l.pid = j.pid
                    AND (l.started IS NULL OR l.started = j.backend_started)
                    AND (l.cookie = j.cookie OR l.application_name NOT LIKE 'pgbg:%')
)${fresh ? FRESH_VERDICT(schema) : ''}
SELECT j.cookie, j.pid, j.label, j.scope, j.parent,
       -- Its own transaction said it committed: stopped, whatever the owner could tell.
       CASE WHEN j.committed_at IS NOT NULL THEN 'stopped' WHEN j.gone THEN 'error' ELSE j.state END AS state,
       CASE WHEN j.live_pid IS NOT NULL AND NOT j.explicit_progress THEN coalesce(j.live_phase, j.phase) ELSE j.phase END AS phase,
       CASE WHEN j.live_pid IS NOT NULL AND NOT j.explicit_progress THEN coalesce(j.live_fraction, j.fraction_completed) ELSE j.fraction_completed END AS fraction_completed,
       j.sql_preview, j.user_name, j.owner_host || ':' || j.owner_pid AS owner, j.attempts,
       j.launched_at, j.started_at, coalesce(j.finished_at, j.committed_at, j.updated_at) AS updated_at, coalesce(j.finished_at, j.committed_at) AS finished_at,
       (extract(epoch FROM coalesce(j.finished_at, j.committed_at, CASE WHEN j.gone THEN j.updated_at ELSE clock_timestamp() END) - j.launched_at) * 1000)::int8 AS elapsed_ms,
       CASE WHEN j.live_pid IS NOT NULL THEN j.live_wait_event WHEN j.finished_at IS NULL AND NOT j.gone THEN j.wait_event END AS wait_event,
       CASE WHEN j.live_pid IS NOT NULL THEN j.live_blocked_by WHEN j.finished_at IS NULL AND NOT j.gone THEN j.blocked_by ELSE '{}'::int4[] END AS blocked_by,
       CASE WHEN j.committed_at IS NOT NULL THEN NULL WHEN j.gone THEN '08006' ELSE j.sqlstate END AS sqlstate,
       CASE WHEN j.committed_at IS NOT NULL THEN NULL
            WHEN NOT j.gone THEN j.error_message
            WHEN j.job THEN '${JOB_OWNER_GONE.replaceAll("'", "''")}'
            WHEN NOT j.proven THEN '${(fresh ? OUTCOME_UNKNOWN_GONE : OUTCOME_UNKNOWN_GONE_V4).replaceAll("'", "''")}'
            WHEN j.pid IS NOT NULL AND j.pid <> 0 THEN '${NOTHING_COMMITTED_RUNNING.replaceAll("'", "''")}'
            ELSE '${NOTHING_COMMITTED_PENDING.replaceAll("'", "''")}' END AS error_message,
       j.command_tag, j.row_count
  FROM journaled j
UNION ALL
SELECT ${TAGGED_COLUMNS}
  FROM live l
 WHERE l.cookie IS NOT NULL AND l.state IS DISTINCT FROM 'idle' AND NOT EXISTS (SELECT 1 FROM ${schema}.${JOURNAL_TABLE} j WHERE j.cookie = l.cookie)`;
}

/** Migration 5's verdict, from `seen`: gone only if a fresh look finds no end either. */
const FRESH_VERDICT = (schema: string) => `,
journaled AS (
  SELECT s.*, coalesce(s.seen_committed_at, f.late_committed_at) AS committed_at, s.seen_gone AND r.fresh AND f.late_committed_at IS NULL AS gone
    FROM seen s
   CROSS JOIN (SELECT pg_catalog.current_setting('transaction_isolation') = 'read committed' AS fresh) r
   CROSS JOIN LATERAL (SELECT CASE WHEN s.seen_gone AND r.fresh THEN ${schema}.${JOURNAL_COMMITTED_FUNCTION}(s.cookie) END AS late_committed_at) f
)`;

const journalFresh: Migration = {
  id: 5,
  name: 'journal view with a fresh look at ends',
  feature: 'journal',
  functions: [JOURNAL_COMMITTED_FUNCTION],
  relations: [{ name: WORKERS_VIEW, kind: 'v', marker: VIEW_MARKER }],
  statements: (schema) => [
    // SECURITY DEFINER: the view reads the ends table with its owner's rights, and so must its
    // second look (a viewer may read the view without reading the table). It says only when a
    // worker's end was recorded, which the view shows anyway.
    `CREATE OR REPLACE FUNCTION ${schema}.${JOURNAL_COMMITTED_FUNCTION}(cookie int8)
RETURNS timestamptz LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $pgbg$ SELECT e.committed_at FROM ${schema}.${JOURNAL_ENDS_TABLE} e WHERE e.cookie = $1 $pgbg$`,
    `COMMENT ON FUNCTION ${schema}.${JOURNAL_COMMITTED_FUNCTION}(int8)
  IS '${FUNCTION_MARKER} v1: whether a worker recorded its end, seen with a new snapshot (internal, for the view)'`,
    journalView(schema, true),
    viewComment(schema, 'v5'),
  ],
};

// ---- migration 3: control from SQL ---------------------------------------------------------
// pg_background_cancel_worker(cookie, grace_ms), pg_background_pause_worker(cookie) and
// pg_background_resume_worker(cookie), over one internal function. They run with the caller's
// rights (SECURITY INVOKER) and act on a worker of any process of this database:
// - The worker is found by its tag (pg_stat_activity.application_name 'pgbg:<cookie hex>:...',
//   visible to every role) while it runs, and, where the journal exists (to_regclass: this
//   migration does not need it) and the caller may read it, by its journal row while it is
//   pending or paused.
// - Whoever could not pg_cancel_backend the worker's backend (not a member of its role nor of
//   pg_signal_backend, or the target is a superuser and the caller is not) is refused with
//   SQLSTATE 42501, for pause and resume too; a pending worker is judged by its owner's role.
// - The owning process does the work, so its states stay exact: every live instance's control
//   connection LISTENs on CONTROL_CHANNEL and holds a shared advisory lock on
//   CONTROL_LISTENER_KEY (pg_locks, visible to all, says which sessions listen). The function
//   writes the request as a row of <schema>.pg_background_control_requests (forced row level
//   security stamps the inserting role, so a NOTIFY of anyone's own cannot pass for it; rows
//   older than an hour are pruned by the next request) and NOTIFYs its id, naming a handler: the owner when the journal names it and it listens,
//   else (no journal, or its row not written yet) the listening session of lowest pid. NOTIFY is
//   delivered at commit, so the function cannot wait for an answer and returns true at once. The
//   owner acts and NOTIFYs an ack; a handler that does not own the worker waits ~1 s for that
//   ack and, when none comes (the owner is dead, detached it, or cannot listen), acts on the
//   backend directly (control/remote-control.ts).
// - When nobody can be told (no session listens, or the journal's owner does not), the function
//   itself cancels the backend, polls it up to grace_ms and then terminates it, and returns once
//   it stopped: a cancel still reaches a worker whose owner is gone. Pause and resume then
//   return false.
// - A running worker cannot be paused: pause and resume of one return false. A wrong cookie
//   returns false and does nothing.
export const CONTROL_FUNCTIONS = ['pg_background_cancel_worker', 'pg_background_pause_worker', 'pg_background_resume_worker', 'pg_background_control'] as const;

/** `schema` quoted, as an SQL literal of `<schema>.<name>` (for to_regclass). */
const qualifiedLiteral = (schema: string, name: string) => `'${`${schema}.${name}`.replace(/'/g, "''")}'`;
/** `schema` quoted, as an SQL literal of the quoted name. */
const schemaLiteral = (schema: string) => `'${schema.replace(/'/g, "''")}'`;
const classId = CONTROL_LISTENER_KEY >> 32n;
const objId = CONTROL_LISTENER_KEY & 0xffffffffn;

const controlFunctions: Migration = {
  id: 3,
  name: 'control functions',
  functions: CONTROL_FUNCTIONS,
  statements: (schema) => [
    // The requests table: created once, or else already ours (the current user's, marked).
    `DO $pgbg$
BEGIN
  IF to_regclass(${qualifiedLiteral(schema, CONTROL_REQUESTS_TABLE)}) IS NULL THEN
    CREATE TABLE ${schema}.${CONTROL_REQUESTS_TABLE} (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      requester name NOT NULL DEFAULT current_user,
      action text NOT NULL,
      cookie int8 NOT NULL,
      grace_ms int4 NOT NULL,
      requested_at timestamptz NOT NULL DEFAULT now()
    );
    ALTER TABLE ${schema}.${CONTROL_REQUESTS_TABLE} ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
    CREATE POLICY request ON ${schema}.${CONTROL_REQUESTS_TABLE} FOR INSERT TO PUBLIC WITH CHECK (requester = current_user);
    CREATE POLICY read ON ${schema}.${CONTROL_REQUESTS_TABLE} FOR SELECT TO PUBLIC USING (true);
    CREATE POLICY prune ON ${schema}.${CONTROL_REQUESTS_TABLE} FOR DELETE TO PUBLIC USING (requested_at < now() - interval '1 hour');
    GRANT SELECT, INSERT, DELETE ON ${schema}.${CONTROL_REQUESTS_TABLE} TO PUBLIC;
    COMMENT ON TABLE ${schema}.${CONTROL_REQUESTS_TABLE} IS '${CONTROL_REQUESTS_MARKER}: one row per control request sent to an instance';
  ELSIF NOT EXISTS (
    SELECT 1 FROM pg_catalog.pg_class c
     WHERE c.oid = to_regclass(${qualifiedLiteral(schema, CONTROL_REQUESTS_TABLE)}) AND c.relkind = 'r'
       AND c.relowner = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user)
       AND c.relrowsecurity AND c.relforcerowsecurity
       AND pg_catalog.obj_description(c.oid, 'pg_class') LIKE '${CONTROL_REQUESTS_MARKER}:%') THEN
    RAISE EXCEPTION 'install(): table %.${CONTROL_REQUESTS_TABLE} already exists and is not pg-background''s own (the current user''s, marked, with row level security); pg-background will not use it',
      ${schemaLiteral(schema)} USING ERRCODE = '42P07';
  END IF;
END
$pgbg$`,
    `CREATE OR REPLACE FUNCTION ${schema}.pg_background_control(p_action text, p_cookie int8, p_grace_ms int4)
RETURNS boolean
LANGUAGE plpgsql
VOLATILE
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $pgbg$
DECLARE
  fn text := 'pg_background_' || p_action || '_worker';
  tag text := 'pgbg:' || lpad(to_hex(p_cookie), 16, '0') || ':';
  here oid := (SELECT oid FROM pg_database WHERE datname = current_database());
  me oid := (SELECT oid FROM pg_roles WHERE rolname = current_user);
  journal regclass := to_regclass(${qualifiedLiteral(schema, 'pg_background_journal')});
  ends regclass;
  target_pid int4;
  target_role oid;
  journal_state text;
  journal_job boolean := false;
  owner_pid int4;
  listeners int4[];
  handler int4;
  deadline timestamptz;
  resend timestamptz;
  request uuid;
BEGIN
  IF p_action IS NULL OR p_action NOT IN ('cancel', 'pause', 'resume') THEN
    RAISE EXCEPTION 'pg_background_control: action must be cancel, pause or resume, got %', coalesce(p_action, 'NULL') USING ERRCODE = '22023';
  END IF;
  IF p_grace_ms IS NULL OR p_grace_ms < 0 THEN
    RAISE EXCEPTION '%: grace_ms must be 0 or more, got %', fn, coalesce(p_grace_ms::text, 'NULL') USING ERRCODE = '22023';
  END IF;
  IF p_cookie IS NULL THEN
    RETURN false;
  END IF;
  PERFORM pg_stat_clear_snapshot();
  SELECT a.pid, a.usesysid INTO target_pid, target_role
    FROM pg_stat_activity a
   WHERE a.datid = here AND left(a.application_name, ${TAG_PREFIX_LENGTH}) = tag
   LIMIT 1;
  -- A caller who may not read the journal finds only running workers (by their tags).
  IF journal IS NOT NULL AND has_table_privilege(journal, 'SELECT') THEN
    -- Its row, unless it has finished: the batch that says so may not have landed yet, but a
    -- worker whose own transaction recorded its commit (the journal's ends table) is done.
    ends := to_regclass(${qualifiedLiteral(schema, 'pg_background_journal_ends')});
    EXECUTE format('SELECT state, owner_control_pid, coalesce((to_jsonb(j) ->> ''job'')::boolean, false) FROM %s j WHERE cookie = $1 AND finished_at IS NULL', journal)
         || CASE WHEN ends IS NULL THEN '' ELSE format(' AND NOT EXISTS (SELECT 1 FROM %s e WHERE e.cookie = j.cookie)', ends) END
         || ' LIMIT 1'
       INTO journal_state, owner_pid, journal_job USING p_cookie;
  END IF;
  IF target_pid IS NULL THEN
    -- Not running: only the journal can know of it, while it waits (pending or paused).
    -- (A job's root has no backend of its own: it is reached through its owner while active.)
    IF journal_state IS NULL OR journal_state NOT IN ('pending', 'paused') AND NOT (journal_job AND journal_state IN ('running', 'cancelling')) THEN
      RETURN false;
    END IF;
    SELECT a.usesysid INTO target_role FROM pg_stat_activity a WHERE a.pid = owner_pid;
    IF target_role IS NULL THEN
      RETURN false; -- its owner is gone: it never starts, and nobody could act on it
    END IF;
  END IF;
  -- pg_cancel_backend's own rule (signalfuncs.c), checked first so that pause and resume refuse alike.
  IF (SELECT rolsuper FROM pg_roles WHERE oid = target_role) AND NOT (SELECT rolsuper FROM pg_roles WHERE oid = me)
     OR NOT (pg_has_role(me, target_role, 'USAGE') OR pg_has_role(me, 'pg_signal_backend', 'USAGE')) THEN
    RAISE EXCEPTION '%: permission denied to signal worker %', fn, p_cookie USING ERRCODE = '42501',
      DETAIL = format('Its backend belongs to role "%s"; role "%s" could not pg_cancel_backend() it.', pg_get_userbyid(target_role), current_user),
      HINT = 'Only roles with privileges of the role of the worker''s backend, or of pg_signal_backend, may control it (and only superusers a superuser''s).';
  END IF;
  -- A job's root may be paused while it runs (its unstarted subtasks are held).
  IF p_action = 'pause' AND (target_pid IS NOT NULL OR journal_state <> 'pending' AND NOT (journal_job AND journal_state = 'running'))
     OR p_action = 'resume' AND (target_pid IS NOT NULL OR journal_state <> 'paused') THEN
    RETURN false; -- a running statement cannot be paused; nothing to resume
  END IF;
  listeners := ARRAY(
    SELECT l.pid FROM pg_locks l
     WHERE l.locktype = 'advisory' AND l.database = here AND l.granted
       AND l.classid = ${classId} AND l.objid = ${objId} AND l.objsubid = 1
     ORDER BY l.pid);
  handler := CASE WHEN owner_pid IS NULL THEN listeners[1] WHEN owner_pid = ANY (listeners) THEN owner_pid END;
  IF handler IS NOT NULL THEN
    -- The row is the request's proof: its requester is the inserting role (the table's policy),
    -- so a NOTIFY of anyone else's cannot pass for it. Rows older than an hour go.
    DELETE FROM ${schema}.${CONTROL_REQUESTS_TABLE} WHERE requested_at < now() - interval '1 hour';
    INSERT INTO ${schema}.${CONTROL_REQUESTS_TABLE} (action, cookie, grace_ms) VALUES (p_action, p_cookie, p_grace_ms)
      RETURNING id INTO request;
    PERFORM pg_notify('${CONTROL_CHANNEL}', json_build_object('v', 1, 'id', request,
      'schema', (SELECT nspname FROM pg_namespace WHERE oid = to_regnamespace(${schemaLiteral(schema)})), 'action', p_action,
      'cookie', p_cookie::text, 'pid', coalesce(target_pid, 0), 'handler', handler)::text);
    RETURN true;
  END IF;
  IF p_action <> 'cancel' OR target_pid IS NULL THEN
    RETURN false; -- nobody could hold or release it
  END IF;
  -- Nobody listens for it: stop the backend here, named by pid and tag.
  deadline := clock_timestamp() + p_grace_ms * interval '1 millisecond';
  resend := clock_timestamp();
  LOOP
    PERFORM pg_stat_clear_snapshot();
    EXIT WHEN NOT EXISTS (
      SELECT 1 FROM pg_stat_activity a
       WHERE a.pid = target_pid AND left(a.application_name, ${TAG_PREFIX_LENGTH}) = tag
         AND a.state IS DISTINCT FROM 'idle' AND a.state IS DISTINCT FROM 'idle in transaction (aborted)');
    IF clock_timestamp() >= deadline THEN
      PERFORM pg_terminate_backend(a.pid, 5000) FROM pg_stat_activity a
        WHERE a.pid = target_pid AND left(a.application_name, ${TAG_PREFIX_LENGTH}) = tag;
      EXIT;
    END IF;
    IF clock_timestamp() >= resend THEN
      -- Sent again now and then: one that lands before the statement started cancels nothing.
      PERFORM pg_cancel_backend(a.pid) FROM pg_stat_activity a
        WHERE a.pid = target_pid AND left(a.application_name, ${TAG_PREFIX_LENGTH}) = tag;
      resend := clock_timestamp() + interval '200 milliseconds';
    END IF;
    PERFORM pg_sleep(least(0.01, greatest(0, extract(epoch FROM deadline - clock_timestamp()))));
  END LOOP;
  RETURN true;
END
$pgbg$`,
    `COMMENT ON FUNCTION ${schema}.pg_background_control(text, int8, int4)
  IS '${FUNCTION_MARKER} v1: control of workers from SQL (internal; call pg_background_cancel_worker and the others)'`,
    `CREATE OR REPLACE FUNCTION ${schema}.pg_background_cancel_worker(cookie int8, grace_ms int4 DEFAULT 5000)
RETURNS boolean LANGUAGE sql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $pgbg$ SELECT ${schema}.pg_background_control('cancel', $1, $2) $pgbg$`,
    `COMMENT ON FUNCTION ${schema}.pg_background_cancel_worker(int8, int4)
  IS '${FUNCTION_MARKER} v1: cancels a worker of any process, through its owner'`,
    `CREATE OR REPLACE FUNCTION ${schema}.pg_background_pause_worker(cookie int8)
RETURNS boolean LANGUAGE sql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $pgbg$ SELECT ${schema}.pg_background_control('pause', $1, 0) $pgbg$`,
    `COMMENT ON FUNCTION ${schema}.pg_background_pause_worker(int8)
  IS '${FUNCTION_MARKER} v1: holds a pending worker of any process, through its owner'`,
    `CREATE OR REPLACE FUNCTION ${schema}.pg_background_resume_worker(cookie int8)
RETURNS boolean LANGUAGE sql VOLATILE SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $pgbg$ SELECT ${schema}.pg_background_control('resume', $1, 0) $pgbg$`,
    `COMMENT ON FUNCTION ${schema}.pg_background_resume_worker(int8)
  IS '${FUNCTION_MARKER} v1: releases a paused worker of any process, through its owner'`,
  ],
};

/** Every migration, by ascending id (1, 2, … without gaps). */
export const MIGRATIONS: readonly Migration[] = Object.freeze([progressFunction, workersView, controlFunctions, journal, journalFresh]);

/** The functions any of `migrations` creates: install() checks each on every run. */
export function guardedFunctions(migrations: readonly Migration[] = MIGRATIONS): string[] {
  return [...new Set(migrations.flatMap((m) => m.functions))];
}

/** The tables and views any of `migrations` creates, by name: install() checks each on every run. */
export function guardedRelations(migrations: readonly Migration[] = MIGRATIONS): Map<string, Relation> {
  return new Map(migrations.flatMap((m) => m.relations ?? []).map((relation) => [relation.name, relation]));
}

/** The marker of the function `name` (the comment install() left on it). */
export function functionMarker(name: string, migrations: readonly Migration[] = MIGRATIONS): string {
  return migrations.find((m) => m.functions.includes(name))?.functionMarker ?? FUNCTION_MARKER;
}
