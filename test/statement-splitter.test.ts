// Statement boundaries as PostgreSQL's lexer sees them. Four layers:
//   1. exact unit cases (statement texts and first words);
//   2. fast-check properties against a model of generated SQL (count, texts, offsets, words);
//   3. the server's own count on the same strings (a simple query runs one result per statement);
//   4. planTask: what is refused, what is rejected as an invalid argument.
// A last group holds lexer corners psql-style splitting got wrong (found by these tests): each
// test first proves the server's behaviour, then asserts the splitter matches it.
import { execFileSync } from 'node:child_process';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type pg from 'pg';
import { PgBackgroundError } from 'pg-background';
import { MAX_WORDS, splitStatements, type SplitOptions } from '../src/plan/statement-splitter.js';
import { fullAnalysis, planTask, type TaskSql } from '../src/plan/task-plan.js';
import { useDatabase } from './support/database.js';

const db = useDatabase(import.meta.filename);

/** fast-check seed: fixed so runs are reproducible; FC_SEED=<n> explores others. */
const SEED = Number(process.env.FC_SEED ?? 42);

async function assertProperty<Ts>(property: fc.IRawProperty<Ts>, numRuns: number): Promise<void> {
  try {
    await fc.assert(property, { seed: SEED, numRuns, includeErrorInReport: true });
  } catch (error) {
    throw new Error(`property failed with fast-check seed ${SEED} (rerun: FC_SEED=${SEED}):\n${(error as Error).message}`, { cause: error });
  }
}

type Split = [text: string, words: string[]];

function split(sql: string, options?: SplitOptions): Split[] {
  return splitStatements(sql, options).map((s): Split => [sql.slice(s.start, s.end), [...s.words]]);
}

function texts(sql: string, options?: SplitOptions): string[] {
  return splitStatements(sql, options).map((s) => sql.slice(s.start, s.end));
}

// ---------------------------------------------------------------------------------------------
// 1. Exact unit cases
// ---------------------------------------------------------------------------------------------

interface UnitCase {
  readonly name: string;
  readonly sql: string;
  readonly expected: readonly Split[];
  readonly options?: SplitOptions;
}

const S = "'"; // the word of a string literal
const Q = '"'; // the word of a quoted identifier

const unitCases: readonly UnitCase[] = [
  { name: 'a single statement', sql: 'SELECT 1', expected: [['SELECT 1', ['select']]] },
  {
    name: 'several statements, trailing semicolon and whitespace, words lower-cased',
    sql: '  select a FROM t ;\n\n Insert INTO t values (1) ;  ',
    expected: [
      ['select a FROM t', ['select', 'a', 'from', 't']],
      ['Insert INTO t values (1)', ['insert', 'into', 't', 'values']],
    ],
  },
  {
    name: 'no whitespace around semicolons',
    sql: 'SELECT 1;SELECT 2',
    expected: [
      ['SELECT 1', ['select']],
      ['SELECT 2', ['select']],
    ],
  },
  {
    name: "semicolons inside '...' strings with '' escapes",
    sql: "SELECT 'a;b', 'it''s; here'; SELECT ';', ''''",
    expected: [
      ["SELECT 'a;b', 'it''s; here'", ['select', S, S]],
      ["SELECT ';', ''''", ['select', S, S]],
    ],
  },
  {
    name: "E'...' strings: \\' and \\\\ are escapes, '' too",
    sql: String.raw`SELECT E'\'; still', e'\\'; SELECT E'\\\'' AS q, E'it''s;'`,
    expected: [
      [String.raw`SELECT E'\'; still', e'\\'`, ['select', S, S]],
      [String.raw`SELECT E'\\\'' AS q, E'it''s;'`, ['select', S, 'as', 'q', S]],
    ],
  },
  {
    name: 'standard strings: a backslash is not an escape (standard_conforming_strings on, the default)',
    sql: String.raw`SELECT '\'; SELECT 'a\' AS b`,
    expected: [
      [String.raw`SELECT '\'`, ['select', S]],
      [String.raw`SELECT 'a\' AS b`, ['select', S, 'as', 'b']],
    ],
  },
  {
    name: 'standard strings with standardConformingStrings: true given explicitly',
    sql: String.raw`SELECT '\'; SELECT 2'; SELECT 3`,
    options: { standardConformingStrings: true },
    expected: [
      [String.raw`SELECT '\'`, ['select', S]],
      ["SELECT 2'; SELECT 3", ['select', S]],
    ],
  },
  {
    name: 'standard strings with standardConformingStrings: false: a backslash escapes the quote',
    sql: String.raw`SELECT '\'; SELECT 2'; SELECT 3`,
    options: { standardConformingStrings: false },
    expected: [
      [String.raw`SELECT '\'; SELECT 2'`, ['select', S]],
      ['SELECT 3', ['select']],
    ],
  },
  {
    name: "standardConformingStrings: false also applies to N'...', with '' and \\\\",
    sql: String.raw`SELECT N'\';', 'it''s \\'; SELECT 1`,
    options: { standardConformingStrings: false },
    expected: [
      [String.raw`SELECT N'\';', 'it''s \\'`, ['select', S, S]],
      ['SELECT 1', ['select']],
    ],
  },
  {
    name: 'U&\'...\' and U&"...": a backslash is a Unicode escape, never a quote escape',
    sql: String.raw`SELECT U&'d\0061t\+000061;' AS u&"a;b""c", u&'\'; SELECT U&'d!0061t;' UESCAPE '!'`,
    expected: [
      [String.raw`SELECT U&'d\0061t\+000061;' AS u&"a;b""c", u&'\'`, ['select', S, 'as', Q, S]],
      ["SELECT U&'d!0061t;' UESCAPE '!'", ['select', S, 'uescape', S]],
    ],
  },
  {
    name: "B'...', X'...' and N'...' literals",
    sql: "SELECT B'1010', X'1F;', N'na;me''s', b'1', x'a', n'z'; SELECT 1",
    expected: [
      ["SELECT B'1010', X'1F;', N'na;me''s', b'1', x'a', n'z'", ['select', S, S, S, S, S, S]],
      ['SELECT 1', ['select']],
    ],
  },
  {
    name: 'quoted identifiers with "" and ; inside',
    sql: 'SELECT 1 AS "a;""b"""; SELECT "x" FROM "t;t"',
    expected: [
      ['SELECT 1 AS "a;""b"""', ['select', 'as', Q]],
      ['SELECT "x" FROM "t;t"', ['select', Q, 'from', Q]],
    ],
  },
  {
    name: 'dollar quotes $$...$$ and $tag$...$tag$ holding $$, other tags and semicolons',
    sql: "SELECT $$a;b$$; SELECT $fn$ it's $$ ; $x$ $fn$, $_1$;$_1$; SELECT 3",
    expected: [
      ['SELECT $$a;b$$', ['select', S]],
      ["SELECT $fn$ it's $$ ; $x$ $fn$, $_1$;$_1$", ['select', S, S]],
      ['SELECT 3', ['select']],
    ],
  },
  {
    name: 'dollar-quote tags are case-sensitive and must match exactly',
    sql: 'SELECT $a$ $A$; $ab$; $a $a$; SELECT $q$ $$ ; $r$ ; $r$ $q$; SELECT 2',
    expected: [
      ['SELECT $a$ $A$; $ab$; $a $a$', ['select', S]],
      ['SELECT $q$ $$ ; $r$ ; $r$ $q$', ['select', S]],
      ['SELECT 2', ['select']],
    ],
  },
  {
    name: 'non-ASCII identifiers, strings and dollar-quote tags',
    sql: "SELECT 'żółw 🐢;' AS ż$; SELECT $é$;$é$; SELECT 2",
    expected: [
      ["SELECT 'żółw 🐢;' AS ż$", ['select', S, 'as', 'ż$']],
      ['SELECT $é$;$é$', ['select', S]],
      ['SELECT 2', ['select']],
    ],
  },
  {
    name: 'identifiers containing $ (a$b$c is one identifier, not a dollar quote)',
    sql: 'SELECT a$b$ FROM t$; SELECT x$b$, a$b$c',
    expected: [
      ['SELECT a$b$ FROM t$', ['select', 'a$b$', 'from', 't$']],
      ['SELECT x$b$, a$b$c', ['select', 'x$b$', 'a$b$c']],
    ],
  },
  {
    name: 'positional parameters $1 and a lone $',
    sql: 'SELECT $1, $2::int;SELECT $10; SELECT 1 $ 2; SELECT $',
    expected: [
      ['SELECT $1, $2::int', ['select', '$', '$', 'int']],
      ['SELECT $10', ['select', '$']],
      ['SELECT 1 $ 2', ['select']],
      ['SELECT $', ['select']],
    ],
  },
  {
    name: '-- comments run to the end of the line, whatever they hold',
    sql: "-- lead; 'x\nSELECT 1 -- it's; not \"the end /*\n; SELECT 2 --;\n+ 3 -- c\r\n; -- trailing; SELECT 4",
    expected: [
      ['SELECT 1', ['select']],
      ['SELECT 2 --;\n+ 3', ['select']],
    ],
  },
  {
    name: 'nested /* /* */ */ comments holding ; and quotes',
    sql: `SELECT /* a /* b; ' */ c; " $$ */ 1; /* x */ SELECT 2 /* ; */; /* -- */ SELECT 3`,
    expected: [
      [`SELECT /* a /* b; ' */ c; " $$ */ 1`, ['select']],
      ['SELECT 2', ['select']],
      ['SELECT 3', ['select']],
    ],
  },
  {
    name: 'block comments closing on /*/ and **/',
    sql: 'SELECT 1 /*/ ; */; SELECT 2 /**/; SELECT 3 /* * / ; **/ + 4',
    expected: [
      ['SELECT 1', ['select']],
      ['SELECT 2', ['select']],
      ['SELECT 3 /* * / ; **/ + 4', ['select']],
    ],
  },
  {
    name: 'empty and comment-only statements between semicolons are dropped',
    sql: ';; SELECT 1;;; /* c */ ; -- d\n; SELECT 2;',
    expected: [
      ['SELECT 1', ['select']],
      ['SELECT 2', ['select']],
    ],
  },
  {
    name: 'a ; inside parentheses does not split (CREATE RULE ... DO ALSO (...; ...))',
    sql: 'CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO a VALUES (1); INSERT INTO b VALUES (2)); SELECT 1',
    expected: [
      [
        'CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO a VALUES (1); INSERT INTO b VALUES (2))',
        ['create', 'rule', 'r', 'as', 'on', 'insert', 'to', 't', 'do', 'also'],
      ],
      ['SELECT 1', ['select']],
    ],
  },
  {
    name: 'words inside parentheses are not first words',
    sql: 'SELECT count(x) FROM (SELECT y) s',
    expected: [['SELECT count(x) FROM (SELECT y) s', ['select', 'count', 'from', 's']]],
  },
  {
    name: 'an unbalanced ) does not make the depth negative',
    sql: 'SELECT 1); SELECT 2',
    expected: [
      ['SELECT 1)', ['select']],
      ['SELECT 2', ['select']],
    ],
  },
  {
    name: 'an unclosed ( keeps the rest in one statement',
    sql: 'SELECT (1; SELECT 2',
    expected: [['SELECT (1; SELECT 2', ['select']]],
  },
  {
    name: 'CREATE FUNCTION ... BEGIN ATOMIC ... END with inner semicolons and CASE ... END (16 words at most)',
    sql: 'CREATE FUNCTION f(a int) RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n  SELECT CASE WHEN a > 0 THEN 1 ELSE 0 END;\n  SELECT a + 1;\nEND;\nSELECT f(1)',
    expected: [
      [
        'CREATE FUNCTION f(a int) RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n  SELECT CASE WHEN a > 0 THEN 1 ELSE 0 END;\n  SELECT a + 1;\nEND',
        ['create', 'function', 'f', 'returns', 'int', 'language', 'sql', 'begin', 'atomic', 'select', 'case', 'when', 'a', 'then', 'else', 'end'],
      ],
      ['SELECT f(1)', ['select', 'f']],
    ],
  },
  {
    name: 'create or replace procedure ... begin atomic with nested case ... end',
    sql: 'create or replace procedure p(x int) language sql begin atomic select case when x > 0 then case when x > 1 then 2 else 1 end else 0 end; insert into t values (x); end; call p(1)',
    expected: [
      [
        'create or replace procedure p(x int) language sql begin atomic select case when x > 0 then case when x > 1 then 2 else 1 end else 0 end; insert into t values (x); end',
        ['create', 'or', 'replace', 'procedure', 'p', 'language', 'sql', 'begin', 'atomic', 'select', 'case', 'when', 'x', 'then', 'case', 'when'],
      ],
      ['call p(1)', ['call', 'p']],
    ],
  },
  {
    name: "BEGIN ATOMIC body with 'end;' in a string and -- end; in a comment",
    sql: "CREATE FUNCTION h() RETURNS text LANGUAGE sql BEGIN ATOMIC SELECT 'end;' -- end;\n; END; SELECT 1",
    expected: [
      [
        "CREATE FUNCTION h() RETURNS text LANGUAGE sql BEGIN ATOMIC SELECT 'end;' -- end;\n; END",
        ['create', 'function', 'h', 'returns', 'text', 'language', 'sql', 'begin', 'atomic', 'select', S, 'end'],
      ],
      ['SELECT 1', ['select']],
    ],
  },
  {
    name: 'CASE ... END outside a BEGIN ATOMIC body changes nothing',
    sql: 'CREATE VIEW v AS SELECT CASE WHEN true THEN 1 END AS c; CREATE FUNCTION g() RETURNS int LANGUAGE sql RETURN CASE WHEN true THEN 1 END; SELECT 2',
    expected: [
      ['CREATE VIEW v AS SELECT CASE WHEN true THEN 1 END AS c', ['create', 'view', 'v', 'as', 'select', 'case', 'when', 'true', 'then', 'end', 'as', 'c']],
      [
        'CREATE FUNCTION g() RETURNS int LANGUAGE sql RETURN CASE WHEN true THEN 1 END',
        ['create', 'function', 'g', 'returns', 'int', 'language', 'sql', 'return', 'case', 'when', 'true', 'then', 'end'],
      ],
      ['SELECT 2', ['select']],
    ],
  },
  {
    name: 'BEGIN and END as statements of their own, after a CREATE FUNCTION with a $$ body',
    sql: 'CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1; $$; BEGIN; CREATE TABLE t (a int); END',
    expected: [
      ['CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1; $$', ['create', 'function', 'f', 'returns', 'int', 'language', 'sql', 'as', S]],
      ['BEGIN', ['begin']],
      ['CREATE TABLE t (a int)', ['create', 'table', 't']],
      ['END', ['end']],
    ],
  },
  {
    name: "an unterminated '...' string runs to the end of the text",
    sql: "SELECT 1; SELECT 'abc; SELECT 2",
    expected: [
      ['SELECT 1', ['select']],
      ["SELECT 'abc; SELECT 2", ['select', S]],
    ],
  },
  {
    name: 'an unterminated "..." identifier runs to the end of the text',
    sql: 'SELECT 1; SELECT "abc; SELECT 2',
    expected: [
      ['SELECT 1', ['select']],
      ['SELECT "abc; SELECT 2', ['select', Q]],
    ],
  },
  {
    name: "an unterminated E'...' string (ending in an escaped quote) runs to the end of the text",
    sql: String.raw`SELECT 1; SELECT E'\'; SELECT 2`,
    expected: [
      ['SELECT 1', ['select']],
      [String.raw`SELECT E'\'; SELECT 2`, ['select', S]],
    ],
  },
  {
    name: 'an unterminated dollar quote runs to the end of the text',
    sql: 'SELECT 1; SELECT $x$ abc; SELECT 2 $x',
    expected: [
      ['SELECT 1', ['select']],
      ['SELECT $x$ abc; SELECT 2 $x', ['select', S]],
    ],
  },
  {
    name: 'an unterminated (nested) block comment runs to the end of the text',
    sql: 'SELECT 1; SELECT 2 /* /* */ ; SELECT 3',
    expected: [
      ['SELECT 1', ['select']],
      ['SELECT 2', ['select']],
    ],
  },
  {
    name: 'a -- comment without a newline runs to the end of the text',
    sql: 'SELECT 1; -- ; SELECT 2',
    expected: [['SELECT 1', ['select']]],
  },
  {
    name: 'numbers (1.5e-3, .5, 1e10, 2., 0x1F, 1_000, 2E+5) followed by -- and /* comments',
    sql: 'SELECT 1.5e-3--c;\n, .5--;\n, 1e10-- ;x\n; SELECT 2.--c\n; SELECT 0x1F, 1_000, 2E+5/* ; */; SELECT 1e-3-- x',
    expected: [
      ['SELECT 1.5e-3--c;\n, .5--;\n, 1e10', ['select']],
      ['SELECT 2.', ['select']],
      ['SELECT 0x1F, 1_000, 2E+5', ['select']],
      ['SELECT 1e-3', ['select']],
    ],
  },
  {
    name: 'at most MAX_WORDS first words',
    sql: 'SELECT ' + Array.from({ length: 20 }, (_, i) => `c${i + 1}`).join(', '),
    expected: [
      ['SELECT ' + Array.from({ length: 20 }, (_, i) => `c${i + 1}`).join(', '), ['select', ...Array.from({ length: MAX_WORDS - 1 }, (_, i) => `c${i + 1}`)]],
    ],
  },
];

describe('splitStatements: exact cases', () => {
  for (const { name, sql, expected, options } of unitCases) {
    test(name, () => {
      assert.deepEqual(split(sql, options), expected);
    });
  }

  test('whitespace- and comment-only text gives no statement', () => {
    for (const sql of [
      '',
      ' \t\n\r\f\v',
      ';',
      ' ; ;; ',
      '-- x',
      '-- x\n',
      '/* a */ -- b\n ;',
      '/* /* */ */',
      '/* unterminated ; SELECT 1',
      '-- a\n/* b */;\n-- c',
    ]) {
      assert.deepEqual(splitStatements(sql), [], JSON.stringify(sql));
      assert.deepEqual(splitStatements(sql, { standardConformingStrings: false }), [], JSON.stringify(sql));
    }
  });

  test('offsets are those of the first and last tokens in the original text', () => {
    const sql = '  /* c */ SELECT 1 -- x\n ; \n\tSELECT "a" /* d */;';
    assert.deepEqual(
      splitStatements(sql).map(({ start, end }) => ({ start, end })),
      [
        { start: 10, end: 18 },
        { start: 29, end: 39 },
      ],
    );
  });

  test('MAX_WORDS is 16', () => {
    assert.equal(MAX_WORDS, 16);
  });
});

// ---------------------------------------------------------------------------------------------
// 2. Properties: generated SQL with a known statement structure
// ---------------------------------------------------------------------------------------------

type TokenKind = 'word' | 'number' | 'param' | 'operator' | 'string' | 'estring' | 'uestring' | 'qident' | 'dollar' | 'parens';

interface Token {
  readonly kind: TokenKind;
  readonly text: string;
}

/** Whitespace or a comment between tokens; comments are spans no boundary may fall inside. */
interface GapUnit {
  readonly text: string;
  readonly comment: boolean;
}

type Gap = readonly GapUnit[];

const pick = <T>(...values: T[]): fc.Arbitrary<T> => fc.constantFrom(...values);
const joined = (units: fc.Arbitrary<string>, minLength = 0, maxLength = 8): fc.Arbitrary<string> =>
  fc.array(units, { minLength, maxLength }).map((parts) => parts.join(''));

/** Whitespace between tokens; \v is whitespace to PostgreSQL 17 on (a syntax error before). */
const whitespaceUnitOf = (verticalTab: boolean): fc.Arbitrary<GapUnit> =>
  pick(' ', '  ', '\n', '\t', '\r\n', '\f', ...(verticalTab ? ['\v'] : [])).map((text) => ({ text, comment: false }));
const lineCommentUnit: fc.Arbitrary<GapUnit> = joined(pick('a', ' ', ';', "'", '"', '$', '$$', '/*', '*/', '\\', 'é', '-', '🐢', 'BEGIN'), 0, 10).map(
  (body) => ({
    text: `--${body}\n`,
    comment: true,
  }),
);
// Nested block comments. Free text never holds a bare * or / next to another piece (that could
// form /* or */ across pieces); ' * ' and ' / ' keep them apart.
const blockComment: fc.Arbitrary<string> = fc.letrec<{ comment: string }>((tie) => ({
  comment: fc
    .array(fc.oneof({ maxDepth: 3 }, pick(' ', 'a', ';', "'", '"', '$$', '$a$', '--', ' * ', ' / ', '\n', "E'", '\\', 'é', 'END'), tie('comment')), {
      maxLength: 6,
    })
    .map((parts) => `/*${parts.join('')}*/`),
})).comment;
const blockCommentUnit: fc.Arbitrary<GapUnit> = blockComment.map((text) => ({ text, comment: true }));
const gapUnitOf = (verticalTab: boolean): fc.Arbitrary<GapUnit> =>
  fc.oneof({ weight: 4, arbitrary: whitespaceUnitOf(verticalTab) }, { weight: 1, arbitrary: lineCommentUnit }, { weight: 1, arbitrary: blockCommentUnit });
const gapUnit = gapUnitOf(true);
const gap = (minLength: number, unit = gapUnit): fc.Arbitrary<Gap> => fc.array(unit, { minLength, maxLength: 3 });

const reservedForHeuristics = new Set(['begin', 'case', 'end', 'create']);
const wordToken: fc.Arbitrary<Token> = fc
  .tuple(pick('a', 'b', 'x', 'z', 'A', 'E', 'U', 'N', 'B', 'X', '_', 'é', 'Ż'), joined(pick('a', 'Z', '_', '0', '9', '$', 'é'), 0, 6))
  .map(([head, tail]) => head + tail)
  .filter((w) => !reservedForHeuristics.has(w.toLowerCase()))
  .map((text) => ({ kind: 'word', text }));
const numberToken: fc.Arbitrary<Token> = pick('1', '42', '1.5e-3', '.5', '1e10', '0x1F', '1_000', '3.14', '2E+5', '0.0').map((text) => ({
  kind: 'number',
  text,
}));
const paramToken: fc.Arbitrary<Token> = fc.integer({ min: 1, max: 99 }).map((n) => ({ kind: 'param', text: `$${n}` }));
const operatorToken: fc.Arbitrary<Token> = pick('+', '*', ',', '=', '<>', '::', '%', '[', ']').map((text) => ({ kind: 'operator', text }));
const stringToken: fc.Arbitrary<Token> = fc.oneof(
  fc
    .tuple(pick('', 'N', 'n'), joined(pick('a', ';', "''", '\\', '"', '$', '$$', '--', '/*', '*/', ' ', '\n', 'é', '(', ')')))
    .map(([prefix, body]): Token => ({ kind: 'string', text: `${prefix}'${body}'` })),
  pick("B'0101'", "b''", "X'1F'", "x'ab'").map((text): Token => ({ kind: 'string', text })),
);
const eStringToken: fc.Arbitrary<Token> = fc
  .tuple(pick('E', 'e'), joined(pick('a', ';', "\\'", "''", '\\\\', '\\n', '"', '$$', '--', '/*', ' ', '\\x41', '\\u00e9', '\\;')))
  .map(([prefix, body]) => ({ kind: 'estring', text: `${prefix}'${body}'` }));
const uStringToken: fc.Arbitrary<Token> = fc
  .tuple(pick('U&', 'u&'), joined(pick('a', ';', "''", '\\0061', '\\\\', '"', '--', '/*', ' ', '\\+01F422')))
  .map(([prefix, body]) => ({ kind: 'uestring', text: `${prefix}'${body}'` }));
const quotedIdentToken: fc.Arbitrary<Token> = fc
  .tuple(pick('', 'U&', 'u&'), joined(pick('a', ';', '""', "'", '$', '--', '/*', ' ', '\\'), 1))
  .map(([prefix, body]) => ({ kind: 'qident', text: `${prefix}"${body}"` }));
/** A dollar-quoted body that does not contain its own closing delimiter (or PostgreSQL ends it early). */
const dollarBody = (tag: string): fc.Arbitrary<string> =>
  joined(pick(';', "'", '"', '$', '$$', '$a$', '$tag$', '$A$', '--', '/*', '\n', 'x', ' ', '\\', "E'")).filter(
    (body) => (body + `$${tag}$`).indexOf(`$${tag}$`) === body.length,
  );
const dollarToken: fc.Arbitrary<Token> = pick('', 'a', 'tag', '_x1', 'A', 'é')
  .chain((tag) => dollarBody(tag).map((body) => `$${tag}$${body}$${tag}$`))
  .map((text) => ({ kind: 'dollar', text }));

const atomicToken: fc.Arbitrary<Token> = fc.oneof(
  { weight: 4, arbitrary: wordToken },
  { weight: 1, arbitrary: numberToken },
  { weight: 1, arbitrary: paramToken },
  { weight: 1, arbitrary: operatorToken },
  { weight: 3, arbitrary: stringToken },
  { weight: 2, arbitrary: eStringToken },
  { weight: 1, arbitrary: uStringToken },
  { weight: 2, arbitrary: quotedIdentToken },
  { weight: 3, arbitrary: dollarToken },
);

/**
 * A '...' literal (of any kind) followed by whitespace holding a newline and another '...' is one
 * continued literal in PostgreSQL, in the first one's mode (see the tests further down). The
 * model keeps such neighbours apart with a word.
 */
const quoteLiterals = new Set<TokenKind>(['string', 'estring', 'uestring']);
function separateContinuations(tokens: readonly Token[]): Token[] {
  const out: Token[] = [];
  for (const token of tokens) {
    const previous = out.at(-1);
    if (previous && quoteLiterals.has(previous.kind) && token.text.startsWith("'")) out.push({ kind: 'word', text: 'x' });
    out.push(token);
  }
  return out;
}

const gapText = (units: Gap): string => units.map((u) => u.text).join('');

// Parentheses holding tokens separated by whitespace, comments and bare semicolons.
const parensToken: fc.Arbitrary<Token> = fc
  .tuple(
    fc.array(atomicToken, { maxLength: 4 }),
    fc.array(fc.array(fc.oneof(gapUnit, fc.constant<GapUnit>({ text: ';', comment: false })), { minLength: 1, maxLength: 3 }), { minLength: 5, maxLength: 5 }),
  )
  .map(([raw, gaps]) => {
    const tokens = separateContinuations(raw);
    let text = '(';
    tokens.forEach((token, i) => {
      text += gapText(gaps[i % gaps.length]!) + token.text;
    });
    return { kind: 'parens', text: text + gapText(gaps[tokens.length % gaps.length]!) + ')' };
  });

const token: fc.Arbitrary<Token> = fc.oneof({ weight: 8, arbitrary: atomicToken }, { weight: 1, arbitrary: parensToken });

interface GenStatement {
  readonly lead: Gap;
  readonly tokens: readonly Token[];
  readonly gaps: readonly Gap[];
  readonly trail: Gap;
}

const genStatement: fc.Arbitrary<GenStatement> = fc.record({
  lead: gap(0),
  tokens: fc.array(token, { minLength: 1, maxLength: 7 }).map(separateContinuations),
  gaps: fc.array(gap(1), { minLength: 4, maxLength: 4 }),
  trail: gap(0),
});

interface GenSql {
  readonly statements: readonly GenStatement[];
  /** Empty statements (gap then ;) after each statement's own semicolon. */
  readonly empties: readonly (readonly Gap[])[];
  readonly finalSemicolon: boolean;
  readonly tail: Gap;
  readonly tailComment: boolean;
}

const genSql: fc.Arbitrary<GenSql> = fc.record({
  statements: fc.array(genStatement, { minLength: 1, maxLength: 6 }),
  empties: fc.array(fc.array(gap(0), { maxLength: 2 }), { minLength: 6, maxLength: 6 }),
  finalSemicolon: fc.boolean(),
  tail: gap(0),
  tailComment: fc.boolean(),
});

function wordOf(token: Token): string | null {
  switch (token.kind) {
    case 'word':
      return token.text.toLowerCase();
    case 'string':
    case 'estring':
    case 'uestring':
    case 'dollar':
      return "'";
    case 'qident':
      return '"';
    case 'param':
      return '$';
    default:
      return null;
  }
}

interface Built {
  readonly sql: string;
  readonly expected: readonly { readonly start: number; readonly end: number; readonly words: readonly string[] }[];
  /** Tokens and comments: [start, end) spans no statement boundary may fall strictly inside. */
  readonly spans: readonly (readonly [number, number])[];
}

function build(gen: GenSql): Built {
  let sql = '';
  const spans: [number, number][] = [];
  const expected: { start: number; end: number; words: string[] }[] = [];
  const append = (text: string, atomic: boolean) => {
    const start = sql.length;
    sql += text;
    if (atomic) spans.push([start, sql.length]);
    return start;
  };
  const appendGap = (units: Gap) => {
    for (const unit of units) append(unit.text, unit.comment);
  };
  gen.statements.forEach((statement, k) => {
    if (k > 0) {
      sql += ';';
      for (const empty of gen.empties[(k - 1) % gen.empties.length]!) {
        appendGap(empty);
        sql += ';';
      }
    }
    appendGap(statement.lead);
    let start = -1;
    let end = -1;
    const words: string[] = [];
    statement.tokens.forEach((t, i) => {
      if (i > 0) appendGap(statement.gaps[(i - 1) % statement.gaps.length]!);
      const at = append(t.text, true);
      if (i === 0) start = at;
      end = sql.length;
      const word = wordOf(t);
      if (word !== null && words.length < MAX_WORDS) words.push(word);
    });
    appendGap(statement.trail);
    expected.push({ start, end, words });
  });
  if (gen.finalSemicolon) sql += ';';
  appendGap(gen.tail);
  if (gen.tailComment) append('-- the end; SELECT 1', true);
  return { sql, expected, spans };
}

const builtSql: fc.Arbitrary<Built> = genSql.map(build);

// A small alphabet of troublesome pieces, for properties that must hold on any text at all.
const anyText: fc.Arbitrary<string> = joined(
  pick(
    ';',
    "'",
    "''",
    '"',
    '$',
    '$$',
    '$a$',
    '$1',
    'E',
    'e',
    "E'",
    "U&'",
    'U&"',
    "B'",
    '\\',
    '-',
    '--',
    '/',
    '*',
    '/*',
    '*/',
    '(',
    ')',
    ' ',
    '\n',
    '\r',
    'a',
    'x',
    ' begin ',
    ' end ',
    ' case ',
    'create function ',
    'create or replace procedure ',
    ' atomic ',
    '1',
    '.',
    'e-',
    '+',
    'é',
  ),
  0,
  40,
);

describe('splitStatements: properties (fast-check)', () => {
  test(`(a) generated SQL with N statements splits into exactly N (seed ${SEED})`, async () => {
    await assertProperty(
      fc.property(builtSql, ({ sql, expected }) => {
        assert.equal(splitStatements(sql).length, expected.length, JSON.stringify(sql));
      }),
      500,
    );
  });

  test(`(b) each statement text is the generated statement without surrounding whitespace and comments (seed ${SEED})`, async () => {
    await assertProperty(
      fc.property(builtSql, ({ sql, expected }) => {
        const actual = splitStatements(sql);
        assert.deepEqual(
          actual.map((s) => sql.slice(s.start, s.end)),
          expected.map((s) => sql.slice(s.start, s.end)),
          JSON.stringify(sql),
        );
        assert.deepEqual(
          actual.map(({ start, end }) => [start, end]),
          expected.map(({ start, end }) => [start, end]),
        );
      }),
      500,
    );
  });

  test(`(c) no statement boundary falls inside a generated literal, identifier or comment (seed ${SEED})`, async () => {
    await assertProperty(
      fc.property(builtSql, ({ sql, spans }) => {
        for (const { start, end } of splitStatements(sql)) {
          for (const [from, to] of spans) {
            for (const offset of [start, end]) {
              assert.ok(!(from < offset && offset < to), `boundary ${offset} inside ${JSON.stringify(sql.slice(from, to))} of ${JSON.stringify(sql)}`);
            }
          }
        }
      }),
      500,
    );
  });

  test(`(d) first words: lower-cased words, ' for literals, " for quoted identifiers, $ for parameters, none inside parentheses (seed ${SEED})`, async () => {
    await assertProperty(
      fc.property(builtSql, ({ sql, expected }) => {
        assert.deepEqual(
          splitStatements(sql).map((s) => [...s.words]),
          expected.map((s) => [...s.words]),
          JSON.stringify(sql),
        );
      }),
      500,
    );
  });

  for (const standardConformingStrings of [true, false]) {
    test(`(e) any text: ordered, disjoint statements starting and ending at tokens; each splits alone into itself (standardConformingStrings ${standardConformingStrings}, seed ${SEED})`, async () => {
      const options = { standardConformingStrings };
      await assertProperty(
        fc.property(anyText, (sql) => {
          const statements = splitStatements(sql, options);
          assert.ok(statements.length <= sql.split(';').length, JSON.stringify(sql));
          let previousEnd = -1;
          for (const s of statements) {
            assert.ok(previousEnd < s.start && s.start < s.end && s.end <= sql.length, JSON.stringify(sql));
            previousEnd = s.end;
            const text = sql.slice(s.start, s.end);
            // A statement starts at a token; it ends at one too, unless its last token is an
            // unterminated literal running to the end of the text (whitespace included).
            assert.equal(text, text.trimStart(), JSON.stringify(sql));
            assert.ok(text === text.trimEnd() || s.end === sql.length, JSON.stringify(sql));
            assert.ok(s.words.length <= MAX_WORDS);
            for (const w of s.words) assert.equal(w, w.toLowerCase());
            const alone = splitStatements(text, options);
            assert.deepEqual(
              alone.map((a) => ({ start: a.start, end: a.end, words: [...a.words] })),
              [{ start: 0, end: text.length, words: [...s.words] }],
              `${JSON.stringify(text)} from ${JSON.stringify(sql)}`,
            );
          }
        }),
        1000,
      );
    });
  }
});

// ---------------------------------------------------------------------------------------------
// 3. The server's own lexer: a simple query returns one result per statement it ran
// ---------------------------------------------------------------------------------------------

let standardClient: pg.Client | undefined;
let legacyClient: pg.Client | undefined;

/** A client per standard_conforming_strings setting, opened on first use (after the db hook). */
async function serverClient(standardConformingStrings: boolean): Promise<pg.Client> {
  if (standardConformingStrings) {
    standardClient ??= await db.client();
    return standardClient;
  }
  if (!legacyClient) {
    legacyClient = await db.client();
    await legacyClient.query('SET standard_conforming_strings = off; SET escape_string_warning = off');
  }
  return legacyClient;
}

/** Runs `text` as one simple query inside a transaction that is rolled back; one result per statement. */
async function runOnServer(text: string, standardConformingStrings = true): Promise<pg.QueryResult[]> {
  const client = await serverClient(standardConformingStrings);
  await client.query('BEGIN');
  try {
    const raw = (await client.query(text)) as pg.QueryResult | pg.QueryResult[];
    return Array.isArray(raw) ? raw : [raw];
  } finally {
    await client.query('ROLLBACK');
  }
}

interface ServerCase {
  readonly name: string;
  readonly sql: string;
  readonly lastRows: readonly Record<string, unknown>[];
  readonly standardConformingStrings?: boolean;
  /** Syntax of a newer server: an older one must refuse `sql` with `error`, and run `olderSql`. */
  readonly since?: { readonly versionNum: number; readonly error: RegExp; readonly olderSql: string };
}

/** server_version_num of the test server, e.g. 170010. */
let versionNum: number | undefined;
async function serverVersionNum(): Promise<number> {
  versionNum ??= Number((await db.query<{ v: string }>("SELECT current_setting('server_version_num') AS v"))[0]!.v);
  return versionNum;
}

/** Syntax that came with a PostgreSQL version (server_version_num). */
const VERTICAL_TAB_WHITESPACE = 170000; // \v separates tokens (a syntax error before)
const NON_DECIMAL_INTEGERS = 160000; // 0x1F, 0o17, 0b101 and 1_000 (before: 0 then x1F, or "trailing junk")

const serverCases: readonly ServerCase[] = [
  { name: "semicolons in '...' with ''", sql: "SELECT 'a;b' AS v; SELECT 'it''s; ok' AS v", lastRows: [{ v: "it's; ok" }] },
  { name: "E'...' with \\' and \\\\", sql: String.raw`SELECT E'\'; still' AS v; SELECT e'\\;' AS v`, lastRows: [{ v: '\\;' }] },
  { name: 'a backslash in a standard string', sql: String.raw`SELECT '\' AS v; SELECT 'a\' AS v`, lastRows: [{ v: 'a\\' }] },
  {
    name: 'standard_conforming_strings off: a backslash escapes',
    sql: String.raw`SELECT 'a\'; b' AS v; SELECT '\\;' AS v, N'\';' AS n`,
    standardConformingStrings: false,
    lastRows: [{ v: '\\;', n: "';" }],
  },
  { name: 'U&\'...\' and U&"..."', sql: String.raw`SELECT U&'d\0061t\+000061;' AS u&"a;b""c"; SELECT u&'\005C' AS v`, lastRows: [{ v: '\\' }] },
  { name: "B'', X'', N''", sql: "SELECT 0 AS v; SELECT B'1010' AS b, X'1F' AS x, N'na;me' AS n", lastRows: [{ b: '1010', x: '00011111', n: 'na;me' }] },
  { name: 'quoted identifiers', sql: 'SELECT 1 AS "a;""b"; SELECT 2 AS "x;y"', lastRows: [{ 'x;y': 2 }] },
  {
    name: 'dollar quotes with other tags inside',
    sql: "SELECT $$a;b$$ AS v; SELECT $fn$ it's $$ ; $x$ $fn$ AS v; SELECT $a$ $A$; $a$ AS v",
    lastRows: [{ v: ' $A$; ' }],
  },
  { name: 'identifiers containing $', sql: 'SELECT 1 AS a$b$; SELECT 2 AS x$b$', lastRows: [{ x$b$: 2 }] },
  {
    name: '-- and nested block comments',
    sql: `SELECT 1 AS v -- it's; not "the end\n; /* a /* b; ' */ c; " */ SELECT 2 AS v /* ; */`,
    lastRows: [{ v: 2 }],
  },
  { name: 'empty statements', sql: ';; SELECT 1 AS v;;; /* c */ ; -- d\n; SELECT 2 AS v;', lastRows: [{ v: 2 }] },
  {
    name: 'whitespace \\f \\v \\t between statements',
    sql: 'SELECT 1 AS v;\f\v\tSELECT 2 AS v',
    lastRows: [{ v: 2 }],
    since: { versionNum: VERTICAL_TAB_WHITESPACE, error: /^syntax error at or near "\v"$/, olderSql: 'SELECT 1 AS v;\f\t\f SELECT 2 AS v' },
  },
  {
    name: 'numbers followed by comments',
    sql: 'SELECT 1.5e-3--c;\n AS v; SELECT .5/* ; */+1e10-- ;x\n AS v',
    lastRows: [{ v: '10000000000.5' }],
  },
  {
    name: 'CREATE RULE with (...; ...) actions',
    sql: 'CREATE TEMP TABLE a (n int); CREATE TEMP TABLE b (n int); CREATE TEMP TABLE t (n int); CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO a VALUES (NEW.n); INSERT INTO b VALUES (NEW.n + 1)); INSERT INTO t VALUES (1); SELECT (SELECT n FROM a) AS a, (SELECT n FROM b) AS b',
    lastRows: [{ a: 1, b: 2 }],
  },
  {
    name: 'CREATE FUNCTION ... BEGIN ATOMIC with CASE ... END',
    sql: 'CREATE FUNCTION pg_temp.f(a int) RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n  SELECT CASE WHEN a > 0 THEN 1 ELSE 0 END;\n  SELECT a + 1;\nEND;\nSELECT pg_temp.f(1) AS v',
    lastRows: [{ v: 2 }],
  },
  {
    name: 'create or replace procedure ... begin atomic with nested case',
    sql: 'create temp table calls (x int); create or replace procedure pg_temp.p(x int) language sql begin atomic select case when x > 0 then case when x > 1 then 2 else 1 end else 0 end; insert into calls values (x); end; call pg_temp.p(7); select x from calls',
    lastRows: [{ x: 7 }],
  },
  {
    name: "BEGIN ATOMIC with 'end;' in a string and a comment",
    sql: "CREATE FUNCTION pg_temp.h() RETURNS text LANGUAGE sql BEGIN ATOMIC SELECT 'end;' -- end;\n; END; SELECT pg_temp.h() AS v",
    lastRows: [{ v: 'end;' }],
  },
  {
    name: 'CASE ... END outside BEGIN ATOMIC',
    sql: 'CREATE TEMP VIEW v AS SELECT CASE WHEN true THEN 1 END AS c; CREATE FUNCTION pg_temp.g() RETURNS int LANGUAGE sql RETURN CASE WHEN true THEN 1 END; SELECT c + pg_temp.g() AS v FROM v',
    lastRows: [{ v: 2 }],
  },
  {
    name: 'a $$ function body, then a statement',
    sql: 'CREATE FUNCTION pg_temp.k() RETURNS int LANGUAGE sql AS $$ SELECT 1; $$; SELECT pg_temp.k() AS v',
    lastRows: [{ v: 1 }],
  },
];

// Server-checkable literals: SQL text and the value node-postgres returns for it.
interface Literal {
  readonly text: string;
  readonly value: unknown;
}

const literalOf = (prefix: string, units: fc.Arbitrary<readonly [string, string]>, minLength = 0): fc.Arbitrary<Literal> =>
  fc.array(units, { minLength, maxLength: 8 }).map((parts) => ({
    text: `${prefix}'${parts.map(([sql]) => sql).join('')}'`,
    value: parts.map(([, value]) => value).join(''),
  }));
const pair = (sql: string, value = sql) => [sql, value] as const;

/** What the server's lexer accepts, by version: the generators below only produce that. */
interface ServerSyntax {
  readonly verticalTab: boolean;
  readonly nonDecimalIntegers: boolean;
}

const serverLiteralOf = (syntax: ServerSyntax): fc.Arbitrary<Literal> =>
  fc.oneof(
    literalOf(
      '',
      pick(
        pair('a'),
        pair(';'),
        pair("''", "'"),
        pair('\\'),
        pair('"'),
        pair('$$'),
        pair('--'),
        pair('/*'),
        pair('*/'),
        pair(' '),
        pair('\n'),
        pair('é'),
        pair('🐢'),
      ),
    ),
    pick('E', 'e').chain((prefix) =>
      literalOf(
        prefix,
        pick(
          pair("\\'", "'"),
          pair("''", "'"),
          pair('\\\\', '\\'),
          pair('\\n', '\n'),
          pair('\\t', '\t'),
          pair(';'),
          pair('a'),
          pair('\\x41', 'A'),
          pair('\\u00e9', 'é'),
          pair('\\101', 'A'),
          pair('"'),
          pair('$$'),
          pair('--'),
          pair('/*'),
          pair('\\;', ';'),
        ),
      ),
    ),
    pick('U&', 'u&').chain((prefix) =>
      literalOf(
        prefix,
        pick(pair('a'), pair(';'), pair("''", "'"), pair('\\0061', 'a'), pair('\\\\', '\\'), pair('\\+01F422', '🐢'), pair('"'), pair('--'), pair('/*')),
      ),
    ),
    literalOf('N', pick(pair('a'), pair(';'), pair("''", "'"), pair('\\'), pair('$$'), pair('--'), pair('é')), 1),
    pick<Literal>({ text: "B'0101'", value: '0101' }, { text: "X'1F'", value: '00011111' }),
    pick<Literal>(
      { text: '42', value: 42 },
      { text: '1.5e-3', value: '0.0015' },
      { text: '.5', value: '0.5' },
      { text: '1e10', value: '10000000000' },
      ...(syntax.nonDecimalIntegers
        ? [
            { text: '0x1F', value: 31 },
            { text: '1_000', value: 1000 },
          ]
        : []),
    ),
    pick('', 'a', 'tag', '_x1', 'A', 'é').chain((tag) => dollarBody(tag).map((body): Literal => ({ text: `$${tag}$${body}$${tag}$`, value: body }))),
  );

const serverAlias: fc.Arbitrary<Literal> = fc
  .array(pick(pair('a'), pair(';'), pair('""', '"'), pair("'"), pair('$'), pair('-'), pair(' '), pair('/*'), pair('é')), { minLength: 1, maxLength: 8 })
  .map((parts) => ({ text: `"${parts.map(([sql]) => sql).join('')}"`, value: parts.map(([, value]) => value).join('') }));

interface ServerStatement {
  readonly text: string;
  readonly rows: readonly Record<string, unknown>[];
}

const serverStatementOf = (syntax: ServerSyntax, unit: fc.Arbitrary<GapUnit>): fc.Arbitrary<ServerStatement> =>
  fc
    .record({
      shape: pick('select', 'values', 'parens'),
      literal: serverLiteralOf(syntax),
      alias: serverAlias,
      gaps: fc.array(gap(1, unit), { minLength: 4, maxLength: 4 }),
    })
    .map(({ shape, literal, alias, gaps }) => {
      const [g0, g1, g2, g3] = gaps.map(gapText) as [string, string, string, string];
      const column = String(alias.value);
      switch (shape) {
        case 'values':
          return { text: `VALUES${g0}(${g1}${literal.text}${g2})`, rows: [{ column1: literal.value }] };
        case 'parens':
          return { text: `SELECT${g0}(${literal.text})${g1}AS${g2}${alias.text}`, rows: [{ [column]: literal.value }] };
        default:
          return { text: `SELECT${g0}${literal.text}${g1}AS${g3}${alias.text}`, rows: [{ [column]: literal.value }] };
      }
    });

interface ServerSql {
  readonly sql: string;
  readonly statements: readonly ServerStatement[];
}

const serverSqlOf = (syntax: ServerSyntax): fc.Arbitrary<ServerSql> => {
  const unit = syntax.verticalTab ? gapUnit : gapUnitOf(false);
  return fc
    .record({
      statements: fc.array(serverStatementOf(syntax, unit), { minLength: 1, maxLength: 5 }),
      separators: fc.array(fc.tuple(gap(0, unit), fc.array(gap(0, unit), { maxLength: 2 }), gap(0, unit)), { minLength: 5, maxLength: 5 }),
      lead: gap(0, unit),
      finalSemicolon: fc.boolean(),
      tail: gap(0, unit),
      tailComment: fc.boolean(),
    })
    .map(({ statements, separators, lead, finalSemicolon, tail, tailComment }) => {
      let sql = gapText(lead);
      statements.forEach((statement, i) => {
        if (i > 0) {
          const [before, empties, after] = separators[(i - 1) % separators.length]!;
          sql += gapText(before) + ';' + empties.map((e) => gapText(e) + ';').join('') + gapText(after);
        }
        sql += statement.text;
      });
      sql += (finalSemicolon ? ';' : '') + gapText(tail) + (tailComment ? '-- end; SELECT 1' : '');
      return { sql, statements };
    });
};

describe('splitStatements: the server runs as many statements as we count', () => {
  for (const { name, sql: newerSql, lastRows, standardConformingStrings = true, since } of serverCases) {
    test(name, async () => {
      let sql = newerSql;
      if (since && (await serverVersionNum()) < since.versionNum) {
        await assert.rejects(runOnServer(sql, standardConformingStrings), { code: '42601', message: since.error });
        sql = since.olderSql;
      }
      const results = await runOnServer(sql, standardConformingStrings);
      const statements = splitStatements(sql, { standardConformingStrings });
      assert.equal(
        results.length,
        statements.length,
        `server ran ${results.length} statements, splitter counts ${statements.length}: ${JSON.stringify(texts(sql, { standardConformingStrings }))}`,
      );
      assert.deepEqual(results.at(-1)!.rows, lastRows);
    });
  }

  test('syntax of newer versions (\\v as whitespace from 17, 0x1F and 1_000 from 16) as this server judges it; the count matches where it runs', async () => {
    const version = await serverVersionNum();
    const outcome = (sql: string) =>
      runOnServer(sql).then(
        (results) => results.map((r) => r.rows),
        (error: pg.DatabaseError) => `${error.code} ${error.message}`,
      );
    const tab = 'SELECT\v1 AS v;\vSELECT 2 AS v';
    assert.deepEqual(await outcome(tab), version >= VERTICAL_TAB_WHITESPACE ? [[{ v: 1 }], [{ v: 2 }]] : '42601 syntax error at or near "\v"');
    const numbers = 'SELECT 0x1F; SELECT 1_000';
    assert.deepEqual(
      await outcome(numbers),
      version >= NON_DECIMAL_INTEGERS
        ? [[{ '?column?': 31 }], [{ '?column?': 1000 }]]
        : version >= 150000
          ? '42601 trailing junk after numeric literal at or near "0x1F"'
          : [[{ x1f: 0 }], [{ _000: 1 }]], // 0 AS x1F, 1 AS _000
    );
    // Where the server runs them, it runs as many statements as we count.
    assert.equal(splitStatements(tab).length, 2);
    assert.equal(splitStatements(numbers).length, 2);
  });

  test(`generated SELECTs of tricky literals, separated by ; comments and empty statements (seed ${SEED})`, async () => {
    const client = await serverClient(true);
    const version = await serverVersionNum();
    const syntax = { verticalTab: version >= VERTICAL_TAB_WHITESPACE, nonDecimalIntegers: version >= NON_DECIMAL_INTEGERS };
    await assertProperty(
      fc.asyncProperty(serverSqlOf(syntax), async ({ sql, statements }) => {
        const split = texts(sql);
        assert.deepEqual(
          split,
          statements.map((s) => s.text),
          JSON.stringify(sql),
        );
        const raw = (await client.query(sql)) as pg.QueryResult | pg.QueryResult[];
        const results = Array.isArray(raw) ? raw : [raw];
        assert.equal(results.length, split.length, `server ran ${results.length} statements, splitter counts ${split.length}: ${JSON.stringify(sql)}`);
        assert.deepEqual(results.at(-1)!.rows, statements.at(-1)!.rows, JSON.stringify(sql));
        assert.deepEqual(
          results.map((r) => r.rows),
          statements.map((s) => s.rows),
          JSON.stringify(sql),
        );
      }),
      200,
    );
  });
});

// ---------------------------------------------------------------------------------------------
// 4. planTask
// ---------------------------------------------------------------------------------------------

function assertInvalidArgument(sql: TaskSql, message: RegExp): void {
  assert.throws(
    () => planTask(sql),
    (error: unknown) => {
      assert.ok(error instanceof PgBackgroundError, `expected a PgBackgroundError, got ${String(error)}`);
      assert.equal(error.code, 'PGBG_INVALID_ARGUMENT');
      assert.match(error.message, message);
      return true;
    },
  );
}

describe('planTask', () => {
  test('transaction control statements are refused, in any statement and any case', () => {
    for (const sql of [
      'BEGIN',
      'begin;',
      'BEGIN TRANSACTION ISOLATION LEVEL SERIALIZABLE',
      'BEGIN WORK',
      'START TRANSACTION',
      'start transaction read only',
      'COMMIT',
      'commit and chain',
      'END',
      'END TRANSACTION',
      'ROLLBACK',
      'ROLLBACK TO SAVEPOINT s',
      'ABORT',
      'SAVEPOINT s',
      'RELEASE SAVEPOINT s',
      'RELEASE s',
      "PREPARE TRANSACTION 'x'",
      "prepare transaction 'x'",
      "COMMIT PREPARED 'x'",
      "ROLLBACK PREPARED 'x'",
      'SELECT 1; COMMIT; SELECT 2',
      'SELECT 1;\nEND',
      '/* c */ BeGiN',
      '-- c\nrollback',
      "SELECT 'x;'; SAVEPOINT s",
      'CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END; COMMIT',
    ]) {
      const plan = planTask(sql);
      assert.match(plan.refusal ?? '', /transaction control statements are not allowed/, JSON.stringify(sql));
    }
  });

  test('the refusal names the statement found', () => {
    assert.match(planTask('SELECT 1; rollback').refusal ?? '', /found ROLLBACK/);
    assert.match(planTask("PREPARE TRANSACTION 'x'").refusal ?? '', /found PREPARE/);
  });

  test('transaction words that are not transaction control statements are not refused', () => {
    for (const sql of [
      'CREATE FUNCTION f(a int) RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN a > 0 THEN 1 END; SELECT a; END; SELECT f(1)',
      'CREATE OR REPLACE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC INSERT INTO t VALUES (1); END',
      "SELECT 'BEGIN'",
      "SELECT 'x'; SELECT 'COMMIT; ROLLBACK'",
      'SELECT $$COMMIT$$',
      "SELECT E'\\'; COMMIT; '",
      'SELECT 1 AS "commit"',
      '"begin"',
      'SELECT 1 -- COMMIT',
      '/* ROLLBACK; */ SELECT 1',
      'SELECT 1 /* ; END */',
      'PREPARE p AS SELECT 1',
      'DO $$BEGIN NULL; END$$',
      'SELECT begin, "end" FROM t',
      'CREATE TABLE savepoints (release int)',
    ]) {
      assert.equal(planTask(sql).refusal, null, JSON.stringify(sql));
    }
  });

  test('standard_conforming_strings decides where a string ends, and so whether COMMIT is a statement', () => {
    const sql = String.raw`SELECT '\'; COMMIT; SELECT '`;
    assert.equal(planTask(sql, true).statementCount, 3);
    assert.match(planTask(sql, true).refusal ?? '', /found COMMIT/);
    assert.equal(planTask(sql, false).statementCount, 1);
    assert.equal(planTask(sql, false).refusal, null);
  });

  test('COPY FROM STDIN and COPY TO STDOUT are refused', () => {
    for (const [sql, direction] of [
      ['COPY t FROM STDIN', 'FROM STDIN'],
      ['copy t from stdin', 'FROM STDIN'],
      ['Copy "T" From Stdin', 'FROM STDIN'],
      ['COPY t (a, b) FROM STDIN WITH (FORMAT csv)', 'FROM STDIN'],
      ['COPY BINARY t FROM STDIN', 'FROM STDIN'],
      ['COPY s.t TO STDOUT', 'TO STDOUT'],
      ['COPY t (a) TO stdout (FORMAT binary)', 'TO STDOUT'],
      ['COPY t TO STDOUT WITH CSV HEADER', 'TO STDOUT'],
      ['COPY (SELECT 1) TO STDOUT', 'TO STDOUT'],
      ["COPY (SELECT a FROM t WHERE b IN (SELECT 'x' FROM u)) TO stdout", 'TO STDOUT'],
      ['copy (select 1 from t) to stdout', 'TO STDOUT'],
      ['SELECT 1; COPY t TO STDOUT; SELECT 2', 'TO STDOUT'],
      ['/* c */ COPY t FROM STDIN -- x', 'FROM STDIN'],
    ] as const) {
      const { refusal } = planTask(sql);
      assert.ok(refusal?.startsWith(`COPY ${direction} is not supported`), `${JSON.stringify(sql)}: ${refusal}`);
    }
  });

  test('COPY to or from a file or program is not refused', () => {
    for (const sql of [
      "COPY t FROM '/tmp/x.csv'",
      "COPY t TO '/tmp/x.csv' WITH (FORMAT csv)",
      "COPY t (a, b) FROM '/tmp/x' ",
      "COPY (SELECT 'STDIN') TO '/tmp/x'",
      "COPY (SELECT 1 FROM stdin) TO '/tmp/x'",
      "COPY t FROM PROGRAM 'cat /tmp/x'",
      "COPY t TO PROGRAM 'cat > /dev/null'",
      "SELECT 'COPY t FROM STDIN'",
      '-- COPY t TO STDOUT\nSELECT 1',
    ]) {
      assert.equal(planTask(sql).refusal, null, JSON.stringify(sql));
    }
  });

  test('the plan counts statements and keeps the text unchanged', () => {
    const sql = ' SELECT 1; /* x */ ;; SELECT 2 -- y';
    assert.deepEqual(planTask(sql), {
      text: sql,
      values: null,
      pieces: [' SELECT 1', ' /* x */ ;; SELECT 2 -- y'],
      statementCount: 2,
      refusal: null,
      inBlock: false,
      transactional: true,
    });
  });

  test("transactional: what can share a transaction with the journal's record of its end", () => {
    const yes = [
      'SELECT 1',
      'INSERT INTO t VALUES (1)',
      'CREATE INDEX i ON t (a)',
      'CREATE TABLE t ()',
      'VACUUM t; SELECT 1',
      'ALTER TABLE t ADD c int',
      "COPY t FROM '/f'",
    ];
    const no = [
      'VACUUM t',
      'vacuum analyze t',
      'CREATE INDEX CONCURRENTLY i ON t (a)',
      'CREATE UNIQUE INDEX CONCURRENTLY i ON t (a)',
      'DROP INDEX CONCURRENTLY i',
    ];
    no.push(
      'REINDEX TABLE t',
      'CLUSTER',
      'CALL p()',
      'DO $$ BEGIN END $$',
      'CREATE DATABASE d',
      'DROP DATABASE d',
      'ALTER SYSTEM SET work_mem = 1',
      'DISCARD ALL',
    );
    no.push(
      'CHECKPOINT',
      "CREATE TABLESPACE s LOCATION '/x'",
      'ALTER DATABASE d SET TABLESPACE s',
      'DROP SUBSCRIPTION s',
      'REFRESH MATERIALIZED VIEW CONCURRENTLY m',
    );
    assert.deepEqual(
      yes.filter((sql) => planTask(sql).transactional !== true),
      [],
    );
    assert.deepEqual(
      no.filter((sql) => planTask(sql).transactional !== false),
      [],
    );
  });

  test('text with no `;` but a final one goes out whole; any other `;` cuts it into one piece per statement', () => {
    for (const sql of ['SELECT 1', 'SELECT 1;', 'SELECT 1 ; \n\t', '/* c */ VACUUM t;']) assert.equal(planTask(sql).pieces, null, sql);
    assert.deepEqual(planTask("SELECT ';'").pieces, ["SELECT ';'"]);
    assert.deepEqual(planTask('SELECT 1; -- c').pieces, ['SELECT 1; -- c']);
    // U+00A0 is no space to the server's lexer: a second statement (a syntax error there too).
    assert.deepEqual(planTask('SELECT 1;\u00a0').pieces, ['SELECT 1', '\u00a0']);
    assert.deepEqual(planTask('SELECT 1;; SELECT 2;').pieces, ['SELECT 1', '; SELECT 2;']);
    const routine = 'CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1 AS case; END';
    assert.deepEqual(planTask(`INSERT INTO t VALUES (1); ${routine}; SELECT 2`).pieces, ['INSERT INTO t VALUES (1)', ` ${routine}`, ' SELECT 2']);
  });

  test('{ text, values } binds to one statement; a trailing ; and comments are fine', () => {
    const plan = planTask({ text: 'SELECT $1::int; -- c\n', values: [1] });
    assert.equal(plan.statementCount, 1);
    assert.deepEqual(plan.values, ['1']);
    assert.equal(planTask({ text: 'SELECT 1; SELECT 2', values: [] }).values, null);
  });

  test('{ text, values } with several statements is an invalid argument', () => {
    for (const text of ['SELECT $1::int; SELECT 2', 'SELECT $1;;SELECT $2', "SELECT $1 -- a\n; SELECT ';'"]) {
      assertInvalidArgument({ text, values: [1] }, /single statement/);
    }
  });

  test('empty and comment-only SQL is an invalid argument', () => {
    assertInvalidArgument('', /at least one statement, got an empty string/);
    for (const sql of ['   ', ';', ' ; ;; ', '-- c', '/* a */ -- b\n;', '/* /* */ */']) {
      assertInvalidArgument(sql, /at least one statement, got only comments or whitespace/);
    }
    assertInvalidArgument({ text: '-- nothing', values: [1] }, /at least one statement/);
  });

  test("empty SQL is an invalid argument also as a process's first plan (the one-DML memo starts empty)", () => {
    // A fresh process: this file has planned texts already, which would hide a memo that starts as ''.
    const module = pathToFileURL(resolve(import.meta.dirname, '../src/plan/task-plan.ts')).href;
    const script = `const { planTask } = await import(${JSON.stringify(module)});
      try { console.log(JSON.stringify(planTask(''))); } catch (error) { console.log(error.message); }`;
    const out = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8' });
    assert.equal(out.trim(), 'Expected `sql` to contain at least one statement, got an empty string');
  });
});

// ---------------------------------------------------------------------------------------------
// 5. Lexer corners that psql-style splitting got wrong (line ends at \r, string continuation,
//    begin in parentheses, B''/X'' escapes). Each test proves the server's behaviour first, then
//    asserts the splitter agrees.
// ---------------------------------------------------------------------------------------------

describe('splitStatements: lexer corners, checked against the server', () => {
  test('a -- comment ends at a carriage return too (PostgreSQL: newline [\\n\\r])', async () => {
    const sql = 'SELECT 1 AS v; -- note\rSELECT 2 AS v';
    const results = await runOnServer(sql);
    assert.equal(results.length, 2);
    assert.deepEqual(results.at(-1)!.rows, [{ v: 2 }]);
    assert.deepEqual(texts(sql), ['SELECT 1 AS v', 'SELECT 2 AS v']);
    // ...which hides transaction control from planTask while the server runs it.
    assert.match(planTask('SELECT 1; -- note\rCOMMIT').refusal ?? '', /found COMMIT/);
  });

  test("E'...' continued by '...' after a newline stays in E'...' mode (backslash escapes)", async () => {
    // PostgreSQL joins 'a' <whitespace with a newline, or a -- comment and newline> 'b' into one
    // literal, lexed in the state of the first part: here E'...', so \' is an escaped quote.
    for (const sql of ["SELECT E'x'\n'\\'; SELECT 1; SELECT ' AS s", "SELECT E'x' -- c\n'\\'; SELECT 1; SELECT ' AS s"]) {
      const results = await runOnServer(sql);
      assert.equal(results.length, 1);
      assert.deepEqual(results[0]!.rows, [{ s: "x'; SELECT 1; SELECT " }]);
      assert.deepEqual(texts(sql), [sql], JSON.stringify(sql));
    }
    // The other way round, the splitter misses a statement the server runs.
    const commit = "SELECT E'a'\n'\\'' AS v; COMMIT; SELECT 1 AS w -- '";
    const client = await serverClient(true);
    const raw = (await client.query(commit)) as unknown as pg.QueryResult[];
    assert.deepEqual(
      raw.map((r) => r.command),
      ['SELECT', 'COMMIT', 'SELECT'],
    );
    assert.equal(splitStatements(commit).length, 3);
    assert.match(planTask(commit).refusal ?? '', /found COMMIT/);
  });

  test('begin inside parentheses (a parameter or column named begin) opens no BEGIN ATOMIC body (psql only counts at depth 0)', async () => {
    for (const sql of [
      "CREATE FUNCTION pg_temp.f(begin int) RETURNS int LANGUAGE sql AS 'SELECT $1'; SELECT pg_temp.f(41) + 1 AS v",
      'CREATE TEMP TABLE tt (begin int); CREATE FUNCTION pg_temp.g() RETURNS bigint LANGUAGE sql BEGIN ATOMIC SELECT count(begin) FROM tt; END; SELECT pg_temp.g() + 2 AS v',
    ]) {
      const results = await runOnServer(sql);
      assert.deepEqual(results.at(-1)!.rows, [{ v: sql.includes('f(41)') ? 42 : '2' }]);
      assert.equal(splitStatements(sql).length, results.length, JSON.stringify(texts(sql)));
    }
    assert.match(planTask("CREATE FUNCTION pg_temp.f(begin int) RETURNS int LANGUAGE sql AS 'SELECT 1'; COMMIT").refusal ?? '', /found COMMIT/);
  });

  test("B'...' and X'...' have no backslash escapes, even with standard_conforming_strings off", async () => {
    const sql = String.raw`SELECT B'1\'; SELECT 2; SELECT '1'`;
    // The server ends the literal at the second quote: it complains about its content, not about
    // an unterminated literal (which is what a \' escape would give).
    await assert.rejects(runOnServer(sql, false), /"\\" is not a valid binary digit/);
    await assert.rejects(runOnServer(String.raw`SELECT X'\'; SELECT 2; SELECT '1'`, false), /"\\" is not a valid hexadecimal digit/);
    assert.deepEqual(texts(sql, { standardConformingStrings: false }), [String.raw`SELECT B'1\'`, 'SELECT 2', "SELECT '1'"]);
  });

  test('a function named begin is not a BEGIN ATOMIC body (psql gets this one wrong)', async () => {
    const sql = "CREATE FUNCTION pg_temp.begin() RETURNS int LANGUAGE sql AS 'SELECT 1'; SELECT 2 AS v";
    const results = await runOnServer(sql);
    assert.equal(results.length, 2);
    assert.equal(splitStatements(sql).length, 2);
  });
});

test('planTask: the fast path for one DML statement agrees with the full analysis wherever it applies', async () => {
  const fragment = pick('select', 'SELECT', 'Insert', 'update', 'delete', 'merge', 'with', 'values', 'table', 'selectx', 'selecté', 'begin', 'copy', 'vacuum');
  const rest = joined(
    pick(' 1', ' (2)', "'a'", '"b"', '$$c$$', '/* d */', '-- e\n', ' from t', 'é', '\n', '\t', '\v', '\f', '(', ')', ' to stdout', '_', '$1'),
    0,
    8,
  );
  const text = fc.tuple(joined(pick(' ', '\n', '\t', '\v', '\r', '\f', '/**/', '--\n'), 0, 2), fragment, rest).map((parts) => parts.join(''));
  let fast = 0;
  await assertProperty(
    fc.property(text, fc.boolean(), (sql, scs) => {
      let slow: unknown;
      try {
        slow = fullAnalysis(sql, scs);
      } catch (error) {
        slow = (error as Error).message;
      }
      let planned: unknown;
      try {
        const { statementCount, refusal, pieces, transactional, inBlock } = planTask(sql, scs);
        planned = { statementCount, refusal, pieces, transactional, inBlock };
      } catch (error) {
        planned = (error as Error).message;
      }
      if (typeof planned === 'object' && (planned as { inBlock: boolean }).inBlock) fast++;
      assert.deepEqual(planned, slow);
    }),
    2000,
  );
  assert.ok(fast > 200, `the fast path was taken ${fast} times`);
});

test('planTask: a statement planned again (the memo of the last one) is planned alike, and others still get their own analysis', () => {
  const text = 'INSERT INTO t (a) VALUES ($1)';
  const first = planTask({ text, values: [1] });
  const again = planTask({ text, values: [2] });
  assert.deepEqual({ ...again, values: null }, { ...first, values: null });
  assert.deepEqual(again.values, ['2']);
  assert.throws(() => planTask(text + '\0'), /no NUL characters/);
  assert.equal(planTask('SELECT 1; SELECT 2').statementCount, 2);
  assert.equal(planTask(text).statementCount, 1);
  assert.match(planTask('BEGIN').refusal ?? '', /transaction control/);
});
