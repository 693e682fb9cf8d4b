// pg_background_progress(pct, msg): a plain PL/pgSQL function that reports progress as an INFO
// message. INFO is always sent to the client whatever client_min_messages says, the server
// flushes it at once, and it needs no extension, so it works on managed PostgreSQL. The worker
// connection recognises it by its SQLSTATE and turns it into progress instead of a notice.
import pg from 'pg';
import type { ServerNotice } from '../pool/worker-connection.js';
import { PgBackgroundError } from '../errors.js';
import type { WorkerProgress } from './types.js';
import type { ControlConnection } from '../pool/control-connection.js';

export const PROGRESS_SQLSTATE = 'PGBGP';
const PROGRESS_MESSAGE = 'pg_background_progress';
/** Marks the functions install() created (and may therefore replace). */
const MARKER = 'pg-background progress reporter';
const INSTALL_LOCK = 7_302_948_117_394_112n; // advisory lock key serialising concurrent installs

export function progressFromNotice(notice: ServerNotice): WorkerProgress | null {
  if (notice.code !== PROGRESS_SQLSTATE || notice.message !== PROGRESS_MESSAGE || !notice.detail) return null;
  try {
    const { pct, message } = JSON.parse(notice.detail) as { pct: unknown; message: unknown };
    if (typeof pct !== 'number' || typeof message !== 'string') return null;
    return { pct, message };
  } catch {
    return null;
  }
}

function functionSql(schema: string): string {
  return `CREATE OR REPLACE FUNCTION ${schema}.pg_background_progress(pct integer, msg text DEFAULT '')
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
$pgbg$`;
}

interface ExistingFunction {
  signature: string;
  owner: string;
  mine: boolean;
  comment: string | null;
  extension: string | null;
}

export async function installProgressFunction(control: ControlConnection, schema: string, quote: (identifier: string) => string): Promise<void> {
  let stage: InstallStage = 'connecting';
  try {
    await install(control, schema, quote, (reached) => (stage = reached));
  } catch (error) {
    throw installError(error, stage);
  }
}

/** How far install() got: what a failure means depends on it. */
type InstallStage = 'connecting' | 'installing' | 'committing';

/**
 * A failure as a PgBackgroundError: the connection's (PGBG_CONNECTION_FAILED, like a launch's),
 * or the installation's (PGBG_INSTALL_FAILED). Only the message and the SQLSTATE are kept: a
 * connection error may carry the connection string (an invalid URL's `input`).
 */
function installError(error: unknown, stage: InstallStage): PgBackgroundError {
  if (error instanceof PgBackgroundError) return error;
  const message = error instanceof Error ? error.message : String(error);
  const database = error instanceof pg.DatabaseError;
  const sqlstate = database ? error.code : undefined;
  if (stage === 'connecting') return new PgBackgroundError('PGBG_CONNECTION_FAILED', `install() could not connect: ${message}`, { sqlstate });
  if (database) return new PgBackgroundError('PGBG_INSTALL_FAILED', `install() failed: ${message}`, { sqlstate, cause: error });
  // No answer from the server: its transaction rolls back with the connection, unless COMMIT went out.
  const outcome = stage === 'committing' ? 'whether the function was installed is unknown (its COMMIT was sent); run install() again' : 'nothing was installed';
  return new PgBackgroundError('PGBG_INSTALL_FAILED', `install() failed: ${message}; ${outcome}`);
}

async function install(control: ControlConnection, schema: string, quote: (identifier: string) => string, reached: (stage: InstallStage) => void): Promise<void> {
  await control.use(async (client) => {
    reached('installing');
    await client.query('BEGIN');
    try {
      await client.query('SELECT pg_advisory_xact_lock($1)', [INSTALL_LOCK.toString()]);
      const { rowCount } = await client.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema]);
      if (!rowCount) {
        throw new PgBackgroundError('PGBG_INSTALL_FAILED', `install(): schema "${schema}" does not exist`, { sqlstate: '3F000' });
      }
      const existing = await client.query<ExistingFunction>(
        `SELECT p.oid::regprocedure::text AS signature,
                pg_get_userbyid(p.proowner) AS owner,
                p.proowner = (SELECT oid FROM pg_roles WHERE rolname = current_user) AS mine,
                obj_description(p.oid, 'pg_proc') AS comment,
                (SELECT e.extname FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
                  WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e') AS extension
           FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
          WHERE n.nspname = $1 AND p.proname = 'pg_background_progress'`,
        [schema],
      );
      for (const fn of existing.rows) {
        const ours = fn.extension === null && fn.comment?.startsWith(MARKER) === true;
        if (!ours || !fn.mine) {
          // Only the current user's own function may be replaced: one owned by another role (even
          // one we are a member of, or any role for a superuser) could be changed behind our back
          // and would run with the privileges of every worker that calls it.
          const whose = fn.extension !== null ? `belongs to extension "${fn.extension}"` : !ours ? `was not created by pg-background` : `is owned by role "${fn.owner}", not by the current user`;
          throw new PgBackgroundError(
            'PGBG_INSTALL_CONFLICT',
            `install(): ${fn.signature} already exists and ${whose}; pg-background will not replace it. Install into another schema ({ schema }) or drop that function first.`,
          );
        }
      }
      await client.query(functionSql(quote(schema)));
      await client.query(`COMMENT ON FUNCTION ${quote(schema)}.pg_background_progress(integer, text) IS '${MARKER} v1: reports progress to the pg-background caller'`);
      reached('committing');
      await client.query('COMMIT');
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      throw error;
    }
  });
}
