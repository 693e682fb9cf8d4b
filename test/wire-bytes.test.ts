// The pre-encoded prefix messages (src/pg/wire-bytes.ts) against pg's own serializer: the same
// Parse and Execute bytes, and a Bind that differs only in saying "text results" with zero
// format codes where pg sends one (both mean text). Their effect on a real server is covered by
// test/reuse.test.ts and test/tags.test.ts, which run every deferred reset and tag through them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { serialize } from 'pg-protocol';
import { encodeStatement } from '../src/pg/wire-bytes.js';

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
