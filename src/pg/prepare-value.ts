// A bound parameter serialised exactly as node-postgres serialises it for its own queries (Date,
// Buffer, arrays, JSON, toPostgres()), which pg-cursor does too. The function lives in a module
// pg does not document (pg/lib/utils.js, declared in pg-utils.d.ts): this is its one import.
import pgUtils from 'pg/lib/utils.js';

/** Throws what pg throws for a value it cannot send (a circular JSON value, say). */
export function prepareValue(value: unknown): string | Buffer | null {
  return pgUtils.prepareValue(value);
}
