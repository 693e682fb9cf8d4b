// What a worker will send for its SQL, decided before any connection is used: how many
// statements the server will run (only the last one's rows are kept), whether parameters are
// bound, and whether the SQL must be refused (transaction control, COPY to/from the client).
import type { WorkerSql } from '../api/types.js';
import { invalidArgument } from '../errors.js';
import { describe, readKey, unreadable } from '../util/validate.js';
import { prepareValue } from '../pg/index.js';
import { splitStatements, type SqlStatement } from './statement-splitter.js';

/** A worker's SQL: a string, or one statement with parameters. */
export type TaskSql = WorkerSql;

export interface TaskPlan {
  readonly text: string;
  /** Bound parameters, serialised as node-postgres does (extended protocol); null: none. */
  readonly values: readonly (string | Buffer | null)[] | null;
  /**
   * The statements as the server will receive them, each in a Parse message of its own, or null
   * when `text` goes out whole as one simple Query. A Parse that holds two statements fails on
   * the server (42601), so a boundary our lexer got wrong can only make the task fail, never run
   * statements we did not count. Null only for text that holds no `;` but a final one: in that,
   * the server cannot find a second statement whatever it believes about quotes and comments.
   */
  readonly pieces: readonly string[] | null;
  /** Statements the server will run; the rows of the last one are the result. */
  readonly statementCount: number;
  /** Set when the SQL must not run: the worker ends in `error` with this SQLSTATE 0A000 message. */
  readonly refusal: string | null;
  /**
   * The SQL can run in a transaction block, so one more statement (the journal's record of its
   * end) can share its transaction: false for a single statement that refuses a block or may
   * commit on its own (VACUUM, anything CONCURRENTLY, CALL, DO, …; see NOT_TRANSACTIONAL).
   * Several statements always run in our block (a statement that refuses it fails there).
   * Absent (a plan made by hand): false.
   */
  readonly transactional?: boolean;
  /**
   * One statement of plain DML (SELECT, INSERT, UPDATE, DELETE, MERGE, WITH, VALUES, TABLE): it
   * runs the same when a statement of ours (the connection's tag) goes ahead of it under the same
   * Sync, in one transaction. Anything else may refuse to run after another statement in a
   * pipeline (VACUUM, CREATE INDEX CONCURRENTLY, a CALL or DO block that commits: 25001, 2D000).
   */
  readonly inBlock: boolean;
}

// First words of plain DML: statements that run alike inside and outside a transaction block.
const dml = new Set(['select', 'insert', 'update', 'delete', 'merge', 'with', 'values', 'table']);

// Statements that begin, end or split a transaction (PostgreSQL's TransactionStmt).
const transactionControl = new Set(['begin', 'start', 'commit', 'end', 'rollback', 'abort', 'savepoint', 'release']);

export function planTask(sql: TaskSql, standardConformingStrings = true): TaskPlan {
  let text: string;
  let values: readonly (string | Buffer | null)[] | null = null;
  if (typeof sql === 'string') {
    text = sql;
  } else {
    // Each of the caller's properties is read once, here (a getter or a proxy is not asked
    // twice), and nothing of theirs is copied first: every launch with parameters comes here.
    const given = sql !== null && typeof sql === 'object' ? readKey('sql', sql, 'text') : undefined;
    if (typeof given !== 'string') throw invalidArgument(`Expected \`sql\` to be a string or { text, values }, got ${describe(sql)}`);
    text = given;
    const unknown = unknownKey(sql);
    if (unknown !== null) throw invalidArgument(`Unknown key \`${unknown}\` in \`sql\`; expected { text, values }`);
    const givenValues = readKey('sql', sql, 'values');
    if (givenValues !== undefined) {
      if (!Array.isArray(givenValues)) {
        throw invalidArgument(`Expected \`sql.values\` to be an array, got ${describe(givenValues)}`);
      }
      values = preparedValues(givenValues);
    }
  }

  const { statementCount, refusal, pieces, transactional, inBlock } = analyse(text, standardConformingStrings);
  if (values && statementCount > 1) {
    throw invalidArgument(`Expected \`sql\` with \`values\` to be a single statement, got ${statementCount} statements: parameters bind to one statement only`);
  }
  // With parameters the text goes in one Parse anyway.
  return { text, values, pieces: values ? null : pieces, statementCount, refusal, transactional, inBlock };
}

/**
 * `plan` made again under other string rules (a session with standard_conforming_strings off):
 * from its text and its values, which are prepared already and prepare to themselves.
 */
export function planAgain(plan: TaskPlan, standardConformingStrings: boolean): TaskPlan {
  return planTask(plan.values ? { text: plan.text, values: [...plan.values] } : plan.text, standardConformingStrings);
}

export interface Analysis {
  readonly statementCount: number;
  readonly refusal: string | null;
  readonly pieces: readonly string[] | null;
  readonly transactional: boolean;
  readonly inBlock: boolean;
}

// Job layers launch the same SQL again and again: remember the analysis of recent short texts.
const CACHE_ENTRIES = 256;
const CACHE_MAX_TEXT = 4096;
const analyses = [new Map<string, Analysis>(), new Map<string, Analysis>()] as const;

/** The analysis of every text the fast path takes: one statement of plain DML, sent whole. */
const ONE_DML: Analysis = Object.freeze({ statementCount: 1, refusal: null, pieces: null, transactional: true, inBlock: true });

/**
 * A leading word of plain DML (ASCII whitespace before it, and no identifier character after
 * it: `selectx` or `selecté` is another word). Without a `;` anywhere the server cannot find a
 * second statement, whatever it makes of quotes and comments, so such a text is ONE_DML.
 */
const LEADING_DML = /^[ \t\n\r\f]*(?:select|insert|update|delete|merge|with|values|table)(?![\w$\u0080-\uffff])/i;

/** The last text the fast path took (a statement launched again and again with new values: one comparison, no scan). */
let lastOneDml: string | null = null; // not '': an empty text is no statement

function analyse(text: string, standardConformingStrings: boolean): Analysis {
  if (text === lastOneDml) return ONE_DML;
  // The common case, a single DML statement, without the lexer (every text differs: the cache
  // below never hits for SQL built with its values inlined).
  if (text.indexOf(';') === -1 && LEADING_DML.test(text)) {
    checkText(text);
    // The same analysis either way: no `;` means one statement whatever the string rules are.
    if (text.length <= CACHE_MAX_TEXT) lastOneDml = text;
    return ONE_DML;
  }
  const cache = analyses[standardConformingStrings ? 1 : 0];
  const known = cache.get(text);
  if (known) return known;
  const analysis = fullAnalysis(text, standardConformingStrings);
  if (text.length <= CACHE_MAX_TEXT) {
    if (cache.size >= CACHE_ENTRIES) cache.delete(cache.keys().next().value!);
    cache.set(text, analysis);
  }
  return analysis;
}

function checkText(text: string): void {
  if (!text.isWellFormed()) throw invalidArgument('Expected `sql` to be well-formed Unicode (it has a lone surrogate)');
  // The protocol ends a query string at NUL: the server would see a truncated statement.
  if (text.includes('\0')) throw invalidArgument('Expected `sql` to contain no NUL characters');
}

/** What the statement splitter makes of the text (exported for the test that holds the fast path to it). */
export function fullAnalysis(text: string, standardConformingStrings: boolean): Analysis {
  checkText(text);
  const statements = splitStatements(text, { standardConformingStrings });
  if (statements.length === 0) {
    throw invalidArgument('Expected `sql` to contain at least one statement, got ' + (text.length ? 'only comments or whitespace' : 'an empty string'));
  }
  const analysis: Analysis = {
    statementCount: statements.length,
    refusal: refusalFor(statements),
    pieces: piecesOf(text, statements),
    transactional: statements.length > 1 || transactional(statements[0]!.words),
    inBlock: statements.length === 1 && dml.has(statements[0]!.words[0] ?? ''),
  };
  return analysis;
}

/** Only ASCII whitespace: the server's lexer takes any other character for part of a token. */
const TRAILING_SPACE = /^[ \t\n\r\f\v]*$/;

/**
 * Null when the text holds no `;`, or one that only whitespace follows: one simple Query then
 * (the cheapest message), and the server cannot run two statements from it. Otherwise the text
 * cut at each statement's terminating `;`: a piece keeps the comments before its statement (a
 * planner hint, say) and the last piece keeps whatever follows the last statement.
 */
function piecesOf(text: string, statements: readonly SqlStatement[]): readonly string[] | null {
  const semicolon = text.indexOf(';');
  if (semicolon === -1 || (semicolon === text.lastIndexOf(';') && TRAILING_SPACE.test(text.slice(semicolon + 1)))) return null;
  const pieces: string[] = [];
  let from = 0;
  for (let i = 0; i < statements.length; i++) {
    const last = i === statements.length - 1;
    const to = last ? text.length : statements[i]!.terminator;
    pieces.push(text.slice(from, to));
    from = to + 1;
  }
  return pieces;
}

/**
 * First words of statements that refuse a transaction block, or may commit on their own (a
 * procedure, a DO block), or whose block rules are subtle enough to leave alone (REINDEX,
 * CLUSTER, DISCARD, CHECKPOINT). Erring here only costs the proof (the view then says "outcome
 * unknown" where it could have said "nothing committed"); the other way would fail the worker.
 */
const NOT_TRANSACTIONAL = new Set(['vacuum', 'call', 'do', 'reindex', 'cluster', 'discard', 'checkpoint']);
/** `create`/`drop`/`alter` of these refuse a block (ALTER DATABASE SET TABLESPACE does; all are left alone). */
const NOT_TRANSACTIONAL_OBJECTS = new Set(['database', 'tablespace', 'subscription', 'system']);

/** Whether one statement (its first words) can run inside a transaction block with ours. */
function transactional(words: readonly string[]): boolean {
  const [first, second] = words;
  if (first === undefined) return true;
  if (NOT_TRANSACTIONAL.has(first) || words.includes('concurrently')) return false;
  if ((first === 'create' || first === 'drop' || first === 'alter') && second !== undefined && NOT_TRANSACTIONAL_OBJECTS.has(second)) return false;
  return true;
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

/**
 * The COPY to or from the client that `text` is, when it is exactly one such statement (a copyTo
 * or copyFrom worker's SQL), else null: 'to' for COPY ... TO STDOUT, 'from' for COPY ... FROM STDIN.
 */
export function copyDirection(text: string): 'to' | 'from' | null {
  const statements = splitStatements(text, { standardConformingStrings: true });
  if (statements.length !== 1) return null;
  const { words } = statements[0]!;
  if (words[0] !== 'copy') return null;
  const direction = words.findIndex((w) => w === 'from' || w === 'to');
  if (direction === -1) return null;
  const target = words[direction + 1];
  if (words[direction] === 'to' && target === 'stdout') return 'to';
  if (words[direction] === 'from' && target === 'stdin') return 'from';
  return null;
}

/** The first own enumerable key of `sql` but text and values, or null (no array of its keys). */
function unknownKey(sql: object): string | null {
  try {
    for (const key in sql) if (key !== 'text' && key !== 'values' && Object.hasOwn(sql, key)) return key;
    return null;
  } catch (error) {
    throw unreadable('sql', error);
  }
}

/** The caller's values, each element read once and prepared; null for none. */
function preparedValues(given: readonly unknown[]): (string | Buffer | null)[] | null {
  let length: unknown;
  try {
    length = given.length;
  } catch (error) {
    throw unreadable('sql.values', error);
  }
  // Only a proxy of an array can say anything else; its word is not taken for a length.
  if (typeof length !== 'number' || !Number.isInteger(length) || length < 0) {
    throw invalidArgument(`Expected \`sql.values\` to have an integer length from 0, got ${describe(length)}`);
  }
  if (length > 65535) throw invalidArgument(`Expected \`sql.values\` to hold at most 65535 parameters, got ${length}`);
  if (length === 0) return null;
  const prepared = new Array<string | Buffer | null>(length);
  for (let i = 0; i < length; i++) {
    let value: unknown;
    try {
      value = given[i];
    } catch (error) {
      throw unreadable('sql.values', error);
    }
    prepared[i] = prepare(value, i);
  }
  return prepared;
}

function prepare(value: unknown, index: number): string | Buffer | null {
  let prepared: string | Buffer | null;
  try {
    prepared = prepareValue(value);
  } catch (error) {
    throw invalidArgument(`Expected \`sql.values[${index}]\` to be a value node-postgres can send, got ${describe(value)}: ${(error as Error).message}`);
  }
  if (typeof prepared === 'string' && !prepared.isWellFormed()) {
    throw invalidArgument(`Expected \`sql.values[${index}]\` to be well-formed Unicode (it has a lone surrogate)`);
  }
  return prepared;
}
