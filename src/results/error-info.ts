// A worker's failure as plain data: the server's ErrorResponse fields when PostgreSQL raised
// it, or a connection-level SQLSTATE when the connection itself failed.
import pg from 'pg';
import type { WorkerErrorInfo } from '../errors.js';

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

const ERROR_RESPONSE = 0x45; // 'E'
const NOTICE_RESPONSE = 0x4e; // 'N'

/**
 * The task provably never ran, so it may run again elsewhere. It holds only for a task whose
 * session then ended (`error` ends it: a FATAL, or the connection closed or reset) and
 * `firstAnswer` (the type of the first message the server sent after the task was written):
 * - the task's first message was a Parse and the first answer an ErrorResponse or
 *   NoticeResponse: the server acknowledges a Parse (ParseComplete) before it executes anything
 *   written behind it, and sends everything in order, so a FATAL (57P01 of a fast shutdown or
 *   pg_terminate_backend, say) or WARNING (57P01/57P02 of an immediate shutdown or a crash)
 *   ahead of that acknowledgement was raised before the task started: typically queued while
 *   the connection idled, unread;
 * - whatever the first message, the first answer is a FATAL the server raises only while it
 *   waits for a query, never once it has read one: 57P05 (idle_session_timeout).
 * Everything else may have run: the socket closing or resetting with nothing sent back (the
 * backend may have committed and died with its answers unflushed), a FATAL or WARNING ahead of
 * a simple Query (a procedure, a DO block, VACUUM or CREATE INDEX CONCURRENTLY can commit before
 * sending anything, then be terminated), and anything after a first byte of answer.
 */
export function provesNeverRan(error: unknown, firstAnswer: number | null, startedWithParse: boolean): boolean {
  if (!endsSession(error)) return false;
  if (startedWithParse && (firstAnswer === ERROR_RESPONSE || firstAnswer === NOTICE_RESPONSE)) return true;
  return firstAnswer === ERROR_RESPONSE && error instanceof pg.DatabaseError && error.severity === 'FATAL' && error.code === '57P05';
}
