// The schema objects install() creates, as numbered migrations applied in order (see migrate.ts).
// A migration is never edited once released: a change to an object is a new migration with the
// next id. Each names the functions it creates so install() can check on every run that they
// are still pg-background's (its marker, the current user's) before it touches anything, and
// re-run it when one was dropped by hand: a migration's statements must therefore be re-runnable
// where its objects are missing (CREATE OR REPLACE, IF NOT EXISTS). A later migration that
// redefines an earlier one's function lists it too, so such a repair ends on the latest body.

export const PROGRESS_SQLSTATE = 'PGBGP';
export const PROGRESS_MESSAGE = 'pg_background_progress';
export const PROGRESS_FUNCTION = 'pg_background_progress';
/** Marks the functions install() created (and may therefore replace). */
export const FUNCTION_MARKER = 'pg-background progress reporter';

export interface Migration {
  /** 1, 2, 3…: the order of application and the row recorded in the migrations table. */
  readonly id: number;
  readonly name: string;
  /** Names of the functions (in the target schema) it creates or redefines. */
  readonly functions: readonly string[];
  /** Its statements, in order; `schema` is already quoted. */
  statements(schema: string): string[];
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

/** Every migration, by ascending id (1, 2, … without gaps). */
export const MIGRATIONS: readonly Migration[] = Object.freeze([progressFunction]);

/** The functions any of `migrations` creates: install() checks each on every run. */
export function guardedFunctions(migrations: readonly Migration[] = MIGRATIONS): string[] {
  return [...new Set(migrations.flatMap((m) => m.functions))];
}
