// Whether a task can commit part of its work on its own before it fails: what launch's `retry`
// must know, since a retry is safe only when a failed try provably committed nothing. Several
// statements run inside our own BEGIN ... COMMIT block (plan/task-plan.ts, results/task-query.ts),
// where nothing commits before the end and a procedure cannot commit (2D000). A single statement
// runs in the server's implicit transaction, where CALL and DO may COMMIT inside, and VACUUM,
// ANALYZE or CLUSTER of many tables, REINDEX, CREATE INDEX CONCURRENTLY, CREATE DATABASE and the
// like commit on their own; so a single statement is trusted only when it is a plain query or
// DML, or DDL that is transactional. Judged from the leading keyword (comments skipped): a
// statement we are unsure of counts as one that can commit.
import type { TaskPlan } from './task-plan.js';

/**
 * Plain queries, DML and COPY: they run in one transaction, and a function they call cannot
 * commit. So do the utility statements that change nothing durable or only within the
 * transaction: EXPLAIN (of a query or DML: EXPLAIN takes no CALL), SHOW, SET and RESET, LISTEN
 * and NOTIFY, PREPARE and EXECUTE (a prepared statement is a query or DML), cursors,
 * REFRESH MATERIALIZED VIEW (CONCURRENTLY too), IMPORT FOREIGN SCHEMA, SECURITY LABEL, REASSIGN.
 */
const ATOMIC = new Set([
  'select',
  'insert',
  'update',
  'delete',
  'merge',
  'with',
  'values',
  'table',
  'copy',
  '(',
  'explain',
  'show',
  'set',
  'reset',
  'listen',
  'unlisten',
  'notify',
  'prepare',
  'execute',
  'deallocate',
  'declare',
  'fetch',
  'move',
  'close',
  'refresh',
  'import',
  'security',
  'reassign',
]);
/** DDL and the like: transactional, unless one of NOT_TRANSACTIONAL appears in it. */
const DDL = new Set(['create', 'alter', 'drop', 'truncate', 'comment', 'grant', 'revoke', 'lock']);
const NOT_TRANSACTIONAL = /\b(concurrently|database|tablespace|system|subscription)\b/i;

/** True when the task may have committed something before an error ended it. */
export function commitsOnItsOwn(plan: TaskPlan): boolean {
  if (plan.pieces !== null && plan.pieces.length > 1) return false; // our own block
  const keyword = leadingKeyword(plan.text);
  if (ATOMIC.has(keyword)) return false;
  if (DDL.has(keyword)) return NOT_TRANSACTIONAL.test(plan.text);
  return true;
}

/** The first keyword (lower case) or '(' of the text, past whitespace and comments. */
function leadingKeyword(text: string): string {
  let i = 0;
  while (i < text.length) {
    if (/\s/.test(text[i]!)) {
      i++;
    } else if (text.startsWith('--', i)) {
      const end = text.indexOf('\n', i);
      i = end === -1 ? text.length : end + 1;
    } else if (text.startsWith('/*', i)) {
      let depth = 1;
      i += 2;
      while (i < text.length && depth > 0) {
        if (text.startsWith('/*', i)) (depth++, (i += 2));
        else if (text.startsWith('*/', i)) (depth--, (i += 2));
        else i++;
      }
    } else {
      break;
    }
  }
  if (text[i] === '(') return '(';
  return /^[A-Za-z_]+/.exec(text.slice(i, i + 32))?.[0].toLowerCase() ?? '';
}
