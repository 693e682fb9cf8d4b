// The pre-encoded messages (src/pg/wire-bytes.ts) against pg's own serializer: the same
// Parse and Execute bytes, and a Bind that differs only in saying "text results" with zero
// format codes where pg sends one (both mean text). Their effect on a real server is covered by
// test/reuse.test.ts and test/tags.test.ts, which run every deferred reset and tag through them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { serialize } from 'pg-protocol';
import { encodeExtended, encodeStatement, SplitStatement, statementText } from '../src/pg/wire-bytes.js';

const BIND_NO_VALUES = Buffer.from([0x42, 0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0]);

test('encodeStatement: Parse, Bind and Execute of the unnamed statement and portal, in one buffer', () => {
  const text = "SET application_name TO 'pgbg:00000000000000ff:é'";
  const expected = Buffer.concat([serialize.parse({ text }), BIND_NO_VALUES, serialize.execute({})]);
  assert.deepEqual(encodeStatement(text), expected);
});

test('encodeStatement: behind a lead, the lead comes first, byte for byte', () => {
  const lead = encodeStatement('DISCARD ALL');
  const both = encodeStatement('SELECT 1', lead);
  assert.deepEqual(both, Buffer.concat([lead, serialize.parse({ text: 'SELECT 1' }), BIND_NO_VALUES, serialize.execute({})]));
  assert.equal(both.readInt32BE(1), 4 + 1 + 'DISCARD ALL'.length + 1 + 2);
});

/** What pg's serializer writes for a task's statement (Parse, Bind, Describe portal, Execute), before its Sync. */
const pgTask = (text: string, values: readonly unknown[]) => [
  serialize.parse({ text }),
  serialize.bind({ values: [...values] }),
  serialize.describe({ type: 'P', name: '' }),
  serialize.execute({}),
];

test('encodeExtended: a whole task with parameters is what pg writes for it, message for message', () => {
  const text = 'INSERT INTO t (a, b, c, d) VALUES ($1, $2, $3, $4)';
  const values = ['row', 'żółw ✓', null, Buffer.from([0, 1, 2, 255])];
  const lead = encodeStatement('DISCARD ALL');
  const pgBytes = Buffer.concat([...pgTask(text, values), serialize.sync()]);
  assert.deepEqual(encodeExtended(null, text, values), pgBytes);
  assert.deepEqual(encodeExtended(lead, text, values), Buffer.concat([lead, pgBytes]));
});

test('encodeExtended: no parameters, and empty strings', () => {
  for (const [text, values] of [
    ['SELECT 1', []],
    ["SELECT $1::text = ''", ['']],
  ] as const) {
    const expected = Buffer.concat([...pgTask(text, values), serialize.sync()]);
    assert.deepEqual(encodeExtended(null, text, values), expected);
  }
});

test('encodeExtended: with a trailer (the journal statement), its Parse, Bind and Execute come before the Sync, byte for byte', () => {
  const text = 'INSERT INTO t (id, payload) VALUES ($1, $2)';
  const values = ['7', 'é "x"'];
  const trailer = "INSERT INTO public.pg_background_journal_ends (cookie, committed_at) VALUES ('-42'::int8, pg_catalog.clock_timestamp())";
  const lead = encodeStatement("SET application_name TO 'pgbg:x'");
  const pgBytes = Buffer.concat([...pgTask(text, values), serialize.parse({ text: trailer }), BIND_NO_VALUES, serialize.execute({}), serialize.sync()]);
  assert.deepEqual(encodeExtended(null, text, values, trailer), pgBytes);
  assert.deepEqual(encodeExtended(lead, text, values, trailer), Buffer.concat([lead, pgBytes]));
  assert.deepEqual(encodeExtended(null, text, values, null), encodeExtended(null, text, values));
});

test('encodeExtended: a lead statement (the tag) is written in place, byte for byte what encodeStatement puts ahead of the task', () => {
  const text = 'INSERT INTO t (id, payload) VALUES ($1, $2)';
  const values = ['7', 'é'];
  const tag = "SET application_name TO 'pgbg:00000000000000ff:żółw'";
  const trailer = "INSERT INTO public.pg_background_journal_ends (cookie, committed_at) VALUES ('7'::int8, pg_catalog.clock_timestamp())";
  const reset = encodeStatement('DISCARD ALL');
  for (const lead of [null, reset]) {
    for (const end of [null, trailer]) {
      const inPlace = encodeExtended(lead, text, values, end, tag);
      assert.deepEqual(inPlace, encodeExtended(encodeStatement(tag, lead), text, values, end));
      assert.deepEqual(inPlace.subarray(lead?.length ?? 0, (lead?.length ?? 0) + 1 + 4 + 1 + Buffer.byteLength(tag) + 1 + 2), serialize.parse({ text: tag }));
    }
  }
});

test('encodeExtended: long and non-ASCII strings in every place (past the short-string loop) are what pg writes', () => {
  const long = 'x'.repeat(600);
  const longWide = 'é'.repeat(300) + 'x'.repeat(300);
  for (const text of [`SELECT '${long}' = $1`, `SELECT '${longWide}' = $1`, "SELECT 'ż' = $1", `SELECT '${'y'.repeat(510)}' = $1`]) {
    for (const value of [long, longWide, 'ż', '', 'x'.repeat(512), 'x'.repeat(513)]) {
      const tag = `SET application_name TO '${value.slice(0, 40)}'`;
      const trailer = `SELECT '${value}'`;
      const expected = Buffer.concat([
        serialize.parse({ text: tag }),
        BIND_NO_VALUES,
        serialize.execute({}),
        ...pgTask(text, [value, null, Buffer.from([7])]),
        serialize.parse({ text: trailer }),
        BIND_NO_VALUES,
        serialize.execute({}),
        serialize.sync(),
      ]);
      assert.deepEqual(encodeExtended(null, text, [value, null, Buffer.from([7])], trailer, tag), expected);
      assert.deepEqual(encodeStatement(text), Buffer.concat([serialize.parse({ text }), BIND_NO_VALUES, serialize.execute({})]));
    }
  }
});

test('a split statement (head, a 64-bit value as hex, tail) is written byte for byte as its text, in both encoders', () => {
  const split = new SplitStatement(Buffer.from("SET application_name TO 'pgbg:"), -2n, Buffer.from(":etl/daily'"));
  const text = "SET application_name TO 'pgbg:fffffffffffffffe:etl/daily'";
  assert.equal(split.text, text);
  assert.equal(split.byteLength, Buffer.byteLength(text));
  assert.equal(statementText(split), text);
  assert.equal(statementText(text), text);
  for (const value of [0n, 1n, 0x0123456789abcdefn, -(2n ** 63n), 2n ** 63n - 1n]) {
    const other = new SplitStatement(Buffer.from('SET x TO '), value, Buffer.from(';'));
    assert.deepEqual(encodeStatement(other), encodeStatement(`SET x TO ${BigInt.asUintN(64, value).toString(16).padStart(16, '0')};`));
  }
  const lead = encodeStatement('DISCARD ALL');
  assert.deepEqual(encodeStatement(split, lead), encodeStatement(text, lead));
  assert.deepEqual(
    encodeExtended(lead, 'INSERT INTO t VALUES ($1)', ['é'], 'SELECT 1', split),
    encodeExtended(lead, 'INSERT INTO t VALUES ($1)', ['é'], 'SELECT 1', text),
  );
});
