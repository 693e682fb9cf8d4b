// A worker's failure as plain data: the server's ErrorResponse fields when PostgreSQL raised
// it, or a connection-level SQLSTATE when the connection itself failed.
import pg from 'pg';
import type { WorkerErrorInfo } from '../api/errors.js';

/** SQLSTATE for a connection that broke without an ErrorResponse (class 08: connection_failure). */
export const CONNECTION_FAILURE = '08006';

export function errorInfo(error: unknown): WorkerErrorInfo {
  if (error instanceof pg.DatabaseError && error.code) {
    return {
      sqlstate: error.code,
      message: error.message,
      detail: error.detail ?? null,
      hint: error.hint ?? null,
      context: error.where ?? null,
      severity: error.severity ?? null,
      position: error.position === undefined ? null : Number(error.position),
      schema: error.schema ?? null,
      table: error.table ?? null,
      column: error.column ?? null,
      dataType: error.dataType ?? null,
      constraint: error.constraint ?? null,
    };
  }
  const message = error instanceof Error ? error.message : String(error);
  return syntheticError(CONNECTION_FAILURE, message);
}

export function syntheticError(sqlstate: string, message: string, detail: string | null = null, hint: string | null = null): WorkerErrorInfo {
  return {
    sqlstate,
    message,
    detail,
    hint,
    context: null,
    severity: 'ERROR',
    position: null,
    schema: null,
    table: null,
    column: null,
    dataType: null,
    constraint: null,
  };
}

/** A FATAL or PANIC error (or no ErrorResponse at all) means the session is gone. */
export function endsSession(error: unknown): boolean {
  if (!(error instanceof pg.DatabaseError)) return true;
  return error.severity === 'FATAL' || error.severity === 'PANIC';
}
