// What a worker will send for its SQL, decided before any connection is used: how many
// statements the server will run (only the last one's rows are kept), whether parameters are
// bound, and whether the SQL must be refused (transaction control, COPY to/from the client).
import { invalidArgument } from '../api/errors.js';
import { describe } from '../api/validate.js';
import pgUtils from 'pg/lib/utils.js';
import { splitStatements, type SqlStatement } from './statement-splitter.js';

/** A worker's SQL: a string, or one statement with parameters. */
export type TaskSql = string | { readonly text: string; readonly values?: readonly unknown[] };

export interface TaskPlan {
  readonly text: string;
  /** Bound parameters, serialised as node-postgres does (extended protocol); null: simple query. */
  readonly values: readonly (string | Buffer | null)[] | null;
  /** Statements the server will run; the rows of the last one are the result. */
  readonly statementCount: number;
  /** Set when the SQL must not run: the worker ends in `error` with this SQLSTATE 0A000 message. */
  readonly refusal: string | null;
}

// Statements that begin, end or split a transaction (PostgreSQL's TransactionStmt).
const transactionControl = new Set(['begin', 'start', 'commit', 'end', 'rollback', 'abort', 'savepoint', 'release']);

export function planTask(sql: TaskSql, standardConformingStrings = true): TaskPlan {
  let text: string;
  let values: readonly (string | Buffer | null)[] | null = null;
  if (typeof sql === 'string') {
    text = sql;
  } else if (sql !== null && typeof sql === 'object' && typeof sql.text === 'string') {
    for (const key of Object.keys(sql)) {
      if (key !== 'text' && key !== 'values') throw invalidArgument(`Unknown key \`${key}\` in \`sql\`; expected { text, values }`);
    }
    text = sql.text;
    if (sql.values !== undefined) {
      if (!Array.isArray(sql.values)) {
        throw invalidArgument(`Expected \`sql.values\` to be an array, got ${describe(sql.values)}`);
      }
      if (sql.values.length > 65535) {
        throw invalidArgument(`Expected \`sql.values\` to hold at most 65535 parameters, got ${sql.values.length}`);
      }
      if (sql.values.length > 0) values = sql.values.map(prepare);
    }
  } else {
    throw invalidArgument(`Expected \`sql\` to be a string or { text, values }, got ${describe(sql)}`);
  }

  const { statementCount, refusal } = analyse(text, standardConformingStrings);
  if (values && statementCount > 1) {
    throw invalidArgument(`Expected \`sql\` with \`values\` to be a single statement, got ${statementCount} statements: parameters bind to one statement only`);
  }
  return { text, values, statementCount, refusal };
}

interface Analysis {
  readonly statementCount: number;
  readonly refusal: string | null;
}

// Job layers launch the same SQL again and again: remember the analysis of recent short texts.
const CACHE_ENTRIES = 256;
const CACHE_MAX_TEXT = 4096;
const analyses = [new Map<string, Analysis>(), new Map<string, Analysis>()] as const;

function analyse(text: string, standardConformingStrings: boolean): Analysis {
  const cache = analyses[standardConformingStrings ? 1 : 0];
  const known = cache.get(text);
  if (known) return known;
  if (!text.isWellFormed()) throw invalidArgument('Expected `sql` to be well-formed Unicode (it has a lone surrogate)');
  // The protocol ends a query string at NUL: the server would see a truncated statement.
  if (text.includes('\0')) throw invalidArgument('Expected `sql` to contain no NUL characters');
  const statements = splitStatements(text, { standardConformingStrings });
  if (statements.length === 0) {
    throw invalidArgument('Expected `sql` to contain at least one statement, got ' + (text.length ? 'only comments or whitespace' : 'an empty string'));
  }
  const analysis: Analysis = { statementCount: statements.length, refusal: refusalFor(statements) };
  if (text.length <= CACHE_MAX_TEXT) {
    if (cache.size >= CACHE_ENTRIES) cache.delete(cache.keys().next().value!);
    cache.set(text, analysis);
  }
  return analysis;
}

function refusalFor(statements: readonly SqlStatement[]): string | null {
  for (const { words } of statements) {
    const [first, second] = words;
    if (first === undefined) continue;
    if (transactionControl.has(first) || (first === 'prepare' && second === 'transaction')) {
      return `transaction control statements are not allowed in pg-background workers (found ${first.toUpperCase()}): the worker's SQL already runs in its own transaction`;
    }
    if (first === 'copy') {
      const direction = words.findIndex((w) => w === 'from' || w === 'to');
      const target = direction === -1 ? undefined : words[direction + 1];
      if (target === 'stdin' || target === 'stdout') {
        return `COPY ${words[direction]!.toUpperCase()} ${target.toUpperCase()} is not supported in pg-background workers: copy to or from a server-side file, or use INSERT ... SELECT`;
      }
    }
  }
  return null;
}

function prepare(value: unknown, index: number): string | Buffer | null {
  let prepared: string | Buffer | null;
  try {
    prepared = pgUtils.prepareValue(value);
  } catch (error) {
    throw invalidArgument(`Expected \`sql.values[${index}]\` to be a value node-postgres can send, got ${describe(value)}: ${(error as Error).message}`);
  }
  if (typeof prepared === 'string' && !prepared.isWellFormed()) {
    throw invalidArgument(`Expected \`sql.values[${index}]\` to be well-formed Unicode (it has a lone surrogate)`);
  }
  return prepared;
}
