// Finds the statement boundaries of a SQL string the way PostgreSQL's lexer (and psql) does, so
// we know how many statements the server will run, which one is last, and what each one starts
// with. We never send the pieces: the server always receives the caller's text unchanged.

export interface SqlStatement {
  /** Offset of the statement's first token in the original text. */
  readonly start: number;
  /** Offset just past its last token (the terminating `;` is not included). */
  readonly end: number;
  /** Offset of the `;` that ends it, or the text's length for a last statement without one. */
  readonly terminator: number;
  /**
   * Its first words outside parentheses, lower-cased (at most {@link MAX_WORDS}). A quoted
   * identifier appears as `"`, a string literal as `'`, a parameter as `$`.
   */
  readonly words: readonly string[];
}

export interface SplitOptions {
  /**
   * The server's `standard_conforming_strings`. When off, a backslash escapes the next
   * character in every '...' literal, not only in E'...' ones.
   */
  readonly standardConformingStrings?: boolean;
}

export const MAX_WORDS = 16;

const SEMICOLON = 0x3b;
const QUOTE = 0x27;
const DOUBLE_QUOTE = 0x22;
const DOLLAR = 0x24;
const BACKSLASH = 0x5c;

export function splitStatements(sql: string, options: SplitOptions = {}): SqlStatement[] {
  const backslashEscapes = options.standardConformingStrings === false;
  const statements: SqlStatement[] = [];
  const n = sql.length;

  let start = -1; // first token of the current statement, -1 while none
  let end = 0;
  let words: string[] = [];
  let parenDepth = 0;
  // BEGIN ATOMIC ... END bodies of CREATE FUNCTION/PROCEDURE (psql's heuristic): semicolons
  // inside them do not end the statement. CASE ... END nests inside such a body.
  let beginDepth = 0;
  let identifiers = 0; // unquoted words seen in the current statement
  let routine = false; // the statement is CREATE [OR REPLACE] FUNCTION|PROCEDURE
  let routineHead = '';
  // The previous token: a lower-cased word, '.' for a period, '' for anything else. A keyword
  // after a period (p.end) or after AS (SELECT 1 AS case) is a name, not a keyword.
  let previous = '';

  const token = (from: number, to: number) => {
    if (start === -1) start = from;
    end = to;
    previous = '';
  };
  const word = (w: string) => {
    if (parenDepth === 0 && words.length < MAX_WORDS) words.push(w);
  };

  let i = 0;
  while (i < n) {
    const c = sql.charCodeAt(i);

    if (isSpace(c)) {
      i++;
    } else if (c === 0x2d && sql.charCodeAt(i + 1) === 0x2d) {
      i = skipLineComment(sql, i);
    } else if (c === 0x2f && sql.charCodeAt(i + 1) === 0x2a) {
      i = skipBlockComment(sql, i);
    } else if (c === QUOTE) {
      const to = skipString(sql, i, backslashEscapes);
      token(i, to);
      word("'");
      i = to;
    } else if (c === DOUBLE_QUOTE) {
      const to = skipQuoted(sql, i, DOUBLE_QUOTE, false);
      token(i, to);
      word('"');
      i = to;
    } else if (c === DOLLAR) {
      const to = skipDollar(sql, i);
      token(i, to);
      if (to - i > 1) word(isDigit(sql.charCodeAt(i + 1)) ? '$' : "'");
      i = to;
    } else if (isIdentStart(c)) {
      let to = i + 1;
      while (to < n && isIdentContinue(sql.charCodeAt(to))) to++;
      const next = sql.charCodeAt(to);
      const length = to - i;
      const lower = c | 0x20;
      if (length === 1 && next === QUOTE && (lower === 0x65 /* e */ || lower === 0x62 /* b */ || lower === 0x78 /* x */ || lower === 0x6e) /* n */) {
        // E'...' always has backslash escapes, N'...' as a plain string does, B'' and X'' never.
        const end = skipString(sql, to, lower === 0x65 || (lower === 0x6e && backslashEscapes));
        token(i, end);
        word("'");
        i = end;
        continue;
      }
      if (length === 1 && lower === 0x75 /* u */ && next === 0x26 /* & */) {
        const quote = sql.charCodeAt(to + 1);
        if (quote === QUOTE || quote === DOUBLE_QUOTE) {
          // U&'...' is only valid with standard_conforming_strings on: no backslash escapes.
          const end = quote === QUOTE ? skipString(sql, to + 1, false) : skipQuoted(sql, to + 1, quote, false);
          token(i, end);
          word(quote === QUOTE ? "'" : '"');
          i = end;
          continue;
        }
      }
      const w = sql.slice(i, to).toLowerCase();
      const named = previous === '.' || previous === 'as';
      token(i, to);
      word(w);
      previous = w;
      if (identifiers < 4) {
        routineHead += identifiers === 0 ? w : ' ' + w;
        routine = /^create (or replace )?(function|procedure)\b/.test(routineHead);
      }
      identifiers++;
      if (routine && parenDepth === 0 && !named) {
        // Only BEGIN ATOMIC opens a body (psql counts any BEGIN; a function named begin fools it).
        if (w === 'begin' && nextWord(sql, to) === 'atomic') beginDepth++;
        else if (w === 'case' && beginDepth > 0) beginDepth++;
        else if (w === 'end' && beginDepth > 0) beginDepth--;
      }
      i = to;
    } else if (isDigit(c) || (c === 0x2e && isDigit(sql.charCodeAt(i + 1)))) {
      // A number (1, 1.5e-3, 0x1F, 1_000): none of its characters can start a quote or comment.
      let to = i + 1;
      while (to < n) {
        const d = sql.charCodeAt(to);
        if (isIdentContinue(d) && d !== DOLLAR) to++;
        else if (d === 0x2e) to++;
        else if ((d === 0x2b || d === 0x2d) && (sql.charCodeAt(to - 1) | 0x20) === 0x65 && sql.charCodeAt(to + 1) !== 0x2d) to++;
        else break;
      }
      token(i, to);
      i = to;
    } else if (c === SEMICOLON && parenDepth === 0 && beginDepth === 0) {
      if (start !== -1) statements.push({ start, end, terminator: i, words });
      start = -1;
      previous = '';
      words = [];
      identifiers = 0;
      routine = false;
      routineHead = '';
      i++;
    } else {
      // An operator or punctuation character (a `;` here is inside parentheses or a body).
      if (c === 0x28) parenDepth++;
      else if (c === 0x29 && parenDepth > 0) parenDepth--;
      token(i, i + 1);
      if (c === 0x2e) previous = '.';
      i++;
    }
  }
  if (start !== -1) statements.push({ start, end, terminator: n, words });
  return statements;
}

/** The lower-cased word after `from`, past whitespace and comments ('' if something else follows). */
function nextWord(sql: string, from: number): string {
  let i = from;
  while (i < sql.length) {
    const c = sql.charCodeAt(i);
    if (isSpace(c)) i++;
    else if (c === 0x2d && sql.charCodeAt(i + 1) === 0x2d) i = skipLineComment(sql, i);
    else if (c === 0x2f && sql.charCodeAt(i + 1) === 0x2a) i = skipBlockComment(sql, i);
    else break;
  }
  if (!isIdentStart(sql.charCodeAt(i))) return '';
  let end = i + 1;
  while (end < sql.length && isIdentContinue(sql.charCodeAt(end))) end++;
  return sql.slice(i, end).toLowerCase();
}

/** Offset just past a -- comment's line end (\n or \r, as in PostgreSQL), or the end of text. */
function skipLineComment(sql: string, from: number): number {
  for (let i = from + 2; i < sql.length; i++) {
    const c = sql.charCodeAt(i);
    if (c === 0x0a || c === 0x0d) return i + 1;
  }
  return sql.length;
}

/**
 * A '...' literal, including its continuations: PostgreSQL joins string literals separated by
 * whitespace (and -- comments) holding at least one newline, and the joined parts keep the
 * first one's escaping rules (E'a' -- note\n'\'' is one E-string).
 */
function skipString(sql: string, from: number, backslashEscapes: boolean): number {
  let end = skipQuoted(sql, from, QUOTE, backslashEscapes);
  for (;;) {
    let i = end;
    let newline = false;
    while (i < sql.length) {
      const c = sql.charCodeAt(i);
      if (c === 0x0a || c === 0x0d) {
        newline = true;
        i++;
      } else if (c === 0x20 || c === 0x09 || c === 0x0c || c === 0x0b) {
        i++;
      } else if (c === 0x2d && sql.charCodeAt(i + 1) === 0x2d) {
        i = skipLineComment(sql, i);
        const last = sql.charCodeAt(i - 1);
        if (last === 0x0a || last === 0x0d) newline = true;
      } else {
        break;
      }
    }
    if (!newline || sql.charCodeAt(i) !== QUOTE || i >= sql.length) return end;
    end = skipQuoted(sql, i, QUOTE, backslashEscapes);
  }
}

/** Offset just past the comment; block comments nest in PostgreSQL. Unterminated: end of text. */
function skipBlockComment(sql: string, from: number): number {
  let depth = 0;
  let i = from;
  while (i < sql.length) {
    const c = sql.charCodeAt(i);
    if (c === 0x2f && sql.charCodeAt(i + 1) === 0x2a) {
      depth++;
      i += 2;
    } else if (c === 0x2a && sql.charCodeAt(i + 1) === 0x2f) {
      depth--;
      i += 2;
      if (depth === 0) return i;
    } else {
      i++;
    }
  }
  return sql.length;
}

/** Offset just past the closing quote ('' or "" inside stays inside). Unterminated: end of text. */
function skipQuoted(sql: string, from: number, quote: number, backslashEscapes: boolean): number {
  let i = from + 1;
  while (i < sql.length) {
    const c = sql.charCodeAt(i);
    if (backslashEscapes && c === BACKSLASH) {
      i += 2;
    } else if (c === quote) {
      if (sql.charCodeAt(i + 1) === quote) i += 2;
      else return i + 1;
    } else {
      i++;
    }
  }
  return sql.length;
}

/**
 * At a `$`: a dollar-quoted string ($$...$$, $tag$...$tag$) or a parameter ($1). A `$` that
 * continues an identifier (a$b) never gets here: identifiers consume it.
 */
function skipDollar(sql: string, from: number): number {
  let i = from + 1;
  if (isDigit(sql.charCodeAt(i))) {
    while (isDigit(sql.charCodeAt(i))) i++;
    return i;
  }
  if (isIdentStart(sql.charCodeAt(i))) {
    i++;
    while (i < sql.length && isIdentContinue(sql.charCodeAt(i)) && sql.charCodeAt(i) !== DOLLAR) i++;
  }
  if (sql.charCodeAt(i) !== DOLLAR) return from + 1; // a lone `$`: an operator character
  const delimiter = sql.slice(from, i + 1);
  const close = sql.indexOf(delimiter, i + 1);
  return close === -1 ? sql.length : close + delimiter.length;
}

function isSpace(c: number): boolean {
  return c === 0x20 || (c >= 0x09 && c <= 0x0d);
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

function isIdentStart(c: number): boolean {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || c === 0x5f || c >= 0x80;
}

function isIdentContinue(c: number): boolean {
  return isIdentStart(c) || isDigit(c) || c === DOLLAR;
}
