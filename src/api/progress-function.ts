// pg_background_progress(pct, msg): a plain PL/pgSQL function that reports progress as an INFO
// message. INFO is always sent to the client whatever client_min_messages says, the server
// flushes it at once, and it needs no extension, so it works on managed PostgreSQL. The worker
// connection recognises it by its SQLSTATE and turns it into progress instead of a notice.
// install() is store/migrate.ts on the control connection (the function is migration 1); this
// file keeps what it means for the caller: the notice's decoding and install()'s error codes.
import pg from 'pg';
import type { ServerNotice } from '../pool/worker-connection.js';
import { PgBackgroundError } from '../errors.js';
import type { WorkerProgress } from './types.js';
import type { ControlConnection } from '../pool/control-connection.js';
import { migrate } from '../store/migrate.js';
import { MIGRATIONS, PROGRESS_MESSAGE, PROGRESS_SQLSTATE } from '../store/migrations.js';

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

export async function installProgressFunction(
  control: ControlConnection,
  schema: string,
  quote: (identifier: string) => string,
  journal = false,
): Promise<void> {
  let stage: InstallStage = 'connecting';
  try {
    await install(control, schema, quote, (reached) => (stage = reached), journal);
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

async function install(
  control: ControlConnection,
  schema: string,
  quote: (identifier: string) => string,
  reached: (stage: InstallStage) => void,
  journal: boolean,
): Promise<void> {
  await control.use(async (client) => {
    reached('installing');
    await migrate(client, schema, quote, () => reached('committing'), MIGRATIONS, new Set(journal ? (['journal'] as const) : []));
  });
}
