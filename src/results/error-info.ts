// A worker's failure as plain data: the server's ErrorResponse fields when PostgreSQL raised
// it, or a connection-level SQLSTATE when the connection itself failed.
import pg from 'pg';
import type { WorkerErrorInfo } from '../api/errors.js';

/** SQLSTATE for a connection that broke without an ErrorResponse (class 08: connection_failure). */
export const CONNECTION_FAILURE = '08006';

/** A worker's failure the library raises itself (a refusal, a cancel before the SQL went out). */
export class WorkerFailure extends Error {
  readonly info: WorkerErrorInfo;
  constructor(sqlstate: string, message: string) {
    super(message);
    this.info = syntheticError(sqlstate, message);
  }
}

export function errorInfo(error: unknown): WorkerErrorInfo {
  if (error instanceof WorkerFailure) return error.info;
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
  if (error instanceof WorkerFailure) return false; // raised here: the session never saw it
  if (!(error instanceof pg.DatabaseError)) return true;
  return error.severity === 'FATAL' || error.severity === 'PANIC';
}

/**
 * The error proves that a requested cancel stopped the worker before it committed: the server
 * answered with a cancel (57014) or a terminate (57P01), or the SQL never went out. A lost
 * connection proves nothing about the commit.
 */
export function confirmsCancel(error: unknown): boolean {
  if (error instanceof WorkerFailure) return error.info.sqlstate === '57014';
  return error instanceof pg.DatabaseError && (error.code === '57014' || error.code === '57P01');
}
