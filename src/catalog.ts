// The catalog: every statement the library issues on its own behalf (not the user's SQL), one
// section per purpose, so a reviewer sees in one file what pg-background runs on a server. The
// bodies of the schema migrations are in store/migrations.ts; what install() runs around them
// is here. Identifiers are passed in already quoted; values are always parameters. Catalog
// functions are qualified with pg_catalog so a caller's search_path cannot substitute its own.

// ---- install ---------------------------------------------------------------------------------

/** Advisory lock key serialising concurrent installs (any schema, any database of the server). */
export const INSTALL_LOCK_KEY = 7_302_948_117_394_112n;
/** The table in the target schema recording which migrations install() applied. */
export const MIGRATIONS_TABLE = 'pg_background_migrations';
/** Marks the migrations table install() created (and may therefore use). */
export const MIGRATIONS_TABLE_MARKER = 'pg-background migrations';

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
       pg_catalog.pg_get_userbyid(p.proowner) AS owner,
       p.proowner = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user) AS mine,
       pg_catalog.obj_description(p.oid, 'pg_proc') AS comment,
       (SELECT e.extname FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
         WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.objid = p.oid AND d.deptype = 'e') AS extension
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
       pg_catalog.pg_get_userbyid(c.relowner) AS owner,
       c.relowner = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user) AS mine,
       pg_catalog.obj_description(c.oid, 'pg_class') AS comment,
       (SELECT e.extname FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
         WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = c.oid AND d.deptype = 'e') AS extension,
       EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal)
         OR EXISTS (SELECT 1 FROM pg_catalog.pg_rewrite r WHERE r.ev_class = c.oid) AS hooked,
       EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i WHERE i.inhrelid = c.oid OR i.inhparent = c.oid) AS inherits,
       (SELECT CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(a.grantee) END FROM pg_catalog.aclexplode(c.relacl) a
         WHERE a.grantee <> c.relowner AND a.privilege_type <> 'SELECT' LIMIT 1) AS writer
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = $1 AND c.relname = $2`,
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
