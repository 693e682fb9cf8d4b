// The short way for a task's plain answers (src/pg/answer-shortcut.ts): it reads only chunks of
// whole plain messages that begin where pg's parser would begin, hands them to pg's own
// listeners, and gives every other chunk to pg's parser. Checked here: its count of message
// boundaries against every way a byte stream can be cut (offline), the same results as pg's
// parser when the server's answers arrive cut at any byte (a proxy trickles them), the short way
// taken again once they arrive whole, and a COPY export (which reads the socket itself) turning
// it off for that connection, which then still answers right.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { EventEmitter } from 'node:events';
import fc from 'fast-check';
import pg from 'pg';
import { PgBackground, type PgBackgroundOptions } from 'pg-background';
import { answerCounts, decodeShort, Framing, plainAnswer, shortcutAnswers } from '../src/pg/answer-shortcut.js';
import { onParameterStatus } from '../src/pg/client-internals.js';
import { useDatabase } from './support/database.js';
import { TcpProxy } from './support/tcp-proxy.js';

const db = useDatabase(import.meta.filename, {
  async setup(admin) {
    await admin.query('CREATE TABLE items (id int PRIMARY KEY, payload text NOT NULL)');
  },
});

/** A backend message: type byte, length, body. */
function message(code: number, body: Buffer): Buffer {
  const out = Buffer.alloc(5 + body.length);
  out[0] = code;
  out.writeUInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}

let plainChunks = 0;

test('Framing: after every chunk, it says whether the next byte begins a message, however the stream is cut, and calls no chunk plain that is not', () => {
  // Mostly well-formed plain answers (so that whole plain chunks are common), and other kinds.
  const cstrings = (...parts: string[]) => Buffer.from(parts.map((p) => `${p}\0`).join(''));
  const plainMessage = fc.constantFrom(
    message(0x31, Buffer.alloc(0)),
    message(0x32, Buffer.alloc(0)),
    message(0x6e, Buffer.alloc(0)),
    message(0x43, cstrings('INSERT 0 1')),
    message(0x53, cstrings('application_name', 'pgbg:00000000000000ff:')),
    message(0x5a, Buffer.from('I')),
  );
  const other = fc.tuple(fc.constantFrom(0x44, 0x45, 0x54, 0x4e), fc.uint8Array({ maxLength: 40 })).map(([code, body]) => message(code, Buffer.from(body)));
  const messages = fc.array(fc.oneof({ arbitrary: plainMessage, weight: 4 }, { arbitrary: other, weight: 1 }), { minLength: 1, maxLength: 12 });
  fc.assert(
    fc.property(messages, fc.array(fc.nat(), { maxLength: 20 }), (list, rawCuts) => {
      const stream = Buffer.concat(list);
      const boundaries = new Set<number>();
      let at = 0;
      for (const m of list) boundaries.add((at += m.length));
      const cuts = [...new Set(rawCuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b).filter((c) => c > 0);
      if (cuts.at(-1) !== stream.length) cuts.push(stream.length);
      const framing = new Framing();
      let from = 0;
      for (const cut of cuts) {
        const plain = framing.read(stream.subarray(from, cut));
        // Never the short way for a chunk that begins or ends inside a message, or holds another kind.
        const kinds = list.filter((_, i) => {
          const start = [...boundaries][i]! - list[i]!.length;
          return start >= from && start < cut;
        });
        if (plain) {
          assert.ok(from === 0 || boundaries.has(from), `chunk ${from}-${cut} began inside a message`);
          assert.ok(boundaries.has(cut), `chunk ${from}-${cut} ended inside a message`);
          assert.ok(
            kinds.every((m) => [0x31, 0x32, 0x6e, 0x43, 0x53, 0x5a].includes(m[0]!)),
            `chunk ${from}-${cut} holds another kind`,
          );
          plainChunks++;
        }
        from = cut;
        assert.equal(framing.atBoundary, boundaries.has(cut), `after byte ${cut} of ${stream.length}`);
      }
    }),
    { seed: 11, numRuns: 400 },
  );
  assert.ok(plainChunks > 30, `whole plain chunks seen: ${plainChunks}`);
});

test('plainAnswer accepts exactly the whole, well-formed plain messages, for any bytes and any length field', () => {
  // The rule in Buffer.indexOf terms (what it was written as first): the oracle.
  const oracle = (chunk: Buffer, code: number, size: number): boolean => {
    const end = 1 + size;
    if (end > chunk.length) return false;
    switch (code) {
      case 0x31:
      case 0x32:
      case 0x6e:
        return size === 4;
      case 0x43:
        return size >= 5 && chunk.indexOf(0, 5) === end - 1;
      case 0x53: {
        const nul = chunk.indexOf(0, 5);
        return size >= 6 && nul !== -1 && nul < end - 1 && chunk.indexOf(0, nul + 1) === end - 1;
      }
      case 0x5a:
        return size === 5;
      default:
        return false;
    }
  };
  // Bodies mostly of letters and NULs (so that well-formed ones come up), the length field either
  // the body's own or anything near it, and bytes after the message (a NUL there must not count).
  const body = fc.array(fc.constantFrom(0, 0, 0x41, 0x42, 0x20, 0x31), { maxLength: 12 }).map((b) => Buffer.from(b));
  const code = fc.constantFrom(0x31, 0x32, 0x6e, 0x43, 0x53, 0x5a, 0x44);
  let accepted = 0;
  fc.assert(
    fc.property(code, body, fc.integer({ min: -3, max: 3 }), fc.boolean(), body, (kind, content, skew, own, after) => {
      const whole = Buffer.concat([message(kind, content), after]);
      const size = own ? 4 + content.length : Math.max(0, 4 + content.length + skew);
      const ok = plainAnswer(whole, 0, kind, size);
      assert.equal(ok, oracle(whole, kind, size), `code ${kind}, size ${size}, bytes ${whole.toString('hex')}`);
      if (ok) accepted++;
    }),
    { seed: 7, numRuns: 3000 },
  );
  assert.ok(accepted > 100, `well-formed messages seen: ${accepted}`);
});

/** A PgBackground that reaches this file's database through `proxy`, on one connection. */
function behind(proxy: TcpProxy, options: PgBackgroundOptions = {}): PgBackground {
  return new PgBackground({
    ...proxy.via(db.url),
    maxWorkers: 1,
    maxIdle: 1,
    whenFull: 'queue',
    ...options,
  });
}

/** Runs a mix of tasks and returns what each gave: plain answers, rows, an error, a notice, a changed setting. */
async function mix(bg: PgBackground, first: number): Promise<unknown[]> {
  const seen: unknown[] = [];
  for (let i = first; i < first + 6; i++) {
    const done = await bg.run({ text: 'INSERT INTO items (id, payload) VALUES ($1, $2)', values: [i, `p${i}`] });
    seen.push([done.state, done.commandTag, done.rowCount]);
  }
  const rows = await bg.run({ text: 'SELECT id, payload FROM items WHERE id >= $1 ORDER BY id', values: [first] });
  seen.push([rows.state, rows.rows]);
  const failed = await bg.run({ text: 'INSERT INTO items (id, payload) VALUES ($1, $2)', values: [first, 'again'] });
  seen.push([failed.state, failed.sqlstate]);
  const noticed = await bg.run("DO $$ BEGIN RAISE NOTICE 'hello'; END $$"); // a NoticeResponse among the answers
  seen.push([noticed.state]);
  const set = await bg.run("SELECT current_setting('application_name') LIKE 'pgbg:%' AS tagged", { settings: { DateStyle: 'ISO, DMY' } });
  seen.push([set.state, set.rows]);
  return seen;
}

function expected(first: number): unknown[] {
  return [
    ...Array.from({ length: 6 }, () => ['stopped', 'INSERT', 1]),
    ['stopped', Array.from({ length: 6 }, (_, i) => ({ id: first + i, payload: `p${first + i}` }))],
    ['error', '23505'],
    ['stopped'],
    ['stopped', [{ tagged: true }]],
  ];
}

test("answers cut at any byte (a header too) give the same results through pg's parser, and once they come whole the short way is taken again", async () => {
  const url = new URL(db.url);
  const proxy = await TcpProxy.start({ host: url.hostname, port: Number(url.port) });
  const bg = behind(proxy);
  try {
    assert.deepEqual(await mix(bg, 100), expected(100));
    proxy.splitReplies(3);
    const parsed = answerCounts.parsed;
    assert.deepEqual(await mix(bg, 200), expected(200));
    assert.ok(answerCounts.parsed - parsed > 100, `pieces read by pg's parser: ${answerCounts.parsed - parsed}`);
    proxy.splitReplies(null);
    // Whole again: the first answers after the trickle may still come cut, then none does.
    assert.deepEqual(await mix(bg, 300), expected(300));
    const short = answerCounts.short;
    const done = await bg.run({ text: 'INSERT INTO items (id, payload) VALUES ($1, $2)', values: [400, 'p400'] });
    assert.deepEqual([done.state, done.commandTag, done.rowCount], ['stopped', 'INSERT', 1]);
    assert.ok(answerCounts.short > short, 'the short way is taken again for a plain task');
  } finally {
    await bg.close();
    await proxy.close();
  }
});

test("a plain task on a warm connection is read the short way; after a COPY export on it, the connection answers right through pg's parser alone", async () => {
  const bg = db.background({ maxWorkers: 1, maxIdle: 1, whenFull: 'queue' });
  await bg.run('SELECT 1'); // the connection is open and warm
  const short = answerCounts.short;
  const done = await bg.run({ text: 'INSERT INTO items (id, payload) VALUES ($1, $2)', values: [500, 'p500'] });
  assert.deepEqual([done.state, done.commandTag, done.rowCount], ['stopped', 'INSERT', 1]);
  assert.ok(answerCounts.short > short, 'the INSERT came back the short way');

  const exported = await bg.copyTo('COPY (SELECT id FROM items WHERE id = 500) TO STDOUT');
  const chunks: Buffer[] = [];
  for await (const chunk of bg.result<Buffer>(exported).stream()) chunks.push(chunk as Buffer);
  assert.equal(Buffer.concat(chunks).toString(), '500\n');
  const afterCopy = answerCounts.short;
  assert.deepEqual(await mix(bg, 600), expected(600));
  assert.equal(answerCounts.short, afterCopy, 'nothing more the short way on the connection the export read');
  await bg.close();
});

test('a listener added to the connection later hears its messages: one on BindComplete while it is there, another on CommandComplete for good', async () => {
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  try {
    shortcutAnswers(client);
    const connection = (client as unknown as { connection: EventEmitter }).connection;
    const insert = (id: number) => client.query('INSERT INTO items (id, payload) VALUES ($1, $2)', [id, `p${id}`]);
    let short = answerCounts.short;
    await insert(700);
    assert.equal(answerCounts.short, short + 1, 'a plain answer goes the short way');

    let binds = 0;
    const onBind = () => binds++;
    connection.on('bindComplete', onBind);
    short = answerCounts.short;
    await insert(701);
    assert.deepEqual([binds, answerCounts.short], [1, short], "pg's parser reaches the BindComplete listener");
    connection.off('bindComplete', onBind);
    await insert(702);
    assert.deepEqual([binds, answerCounts.short], [1, short + 1], 'the short way once it is gone');

    const tags: string[] = [];
    connection.on('commandComplete', (message: { text: string }) => tags.push(message.text));
    short = answerCounts.short;
    await insert(703);
    await insert(704);
    assert.deepEqual(tags, ['INSERT 0 1', 'INSERT 0 1']);
    assert.equal(answerCounts.short, short, 'a second CommandComplete listener turns the short way off');
    assert.deepEqual(
      (await client.query('SELECT id FROM items WHERE id BETWEEN 700 AND 704 ORDER BY id')).rows.map((row) => row.id),
      [700, 701, 702, 703, 704],
    );
  } finally {
    await client.end();
  }
});

test('decodeShort gives exactly what the bytes decode to, cache hit or miss, for any bytes (invalid UTF-8 too)', () => {
  // Few distinct lengths and first/last bytes: slots collide often, so hits, misses and
  // replacements all happen; every text is also decoded again later in the run.
  const text = fc.oneof(
    fc.constantFrom('INSERT 0 1', 'SET', 'DISCARD ALL', 'application_name', 'SELECT 1', 'é', '\u{1F600}', ''),
    fc.string({ maxLength: 40, unit: 'binary' }),
  );
  const bytes = fc.oneof(
    text.map((t) => Buffer.from(t)),
    fc.uint8Array({ maxLength: 40 }).map((b) => Buffer.from(b)),
  );
  fc.assert(
    fc.property(fc.array(fc.tuple(bytes, fc.nat(8), fc.nat(8)), { minLength: 1, maxLength: 60 }), (items) => {
      for (const round of [1, 2]) {
        for (const [body, before, after] of items) {
          const chunk = Buffer.concat([Buffer.alloc(before, round), body, Buffer.alloc(after, 0x5a)]);
          const got = decodeShort(chunk, before, before + body.length);
          if (got !== body.toString('utf8')) return false;
        }
      }
      return true;
    }),
    { numRuns: 300 },
  );
});

test('a ParameterStatus read the short way: our listeners get the right value only for the settings they named; anyone else gets a plain message', async () => {
  const client = new pg.Client({ connectionString: db.url });
  const all: string[] = [];
  const named: string[] = [];
  onParameterStatus(client, null, (name, value) => all.push(`${name}=${value}`));
  onParameterStatus(client, new Set(['DateStyle']), (name, value) => named.push(`${name}=${value}`));
  await client.connect();
  try {
    shortcutAnswers(client);
    all.length = 0;
    named.length = 0;
    let short = answerCounts.short;
    await client.query("SET application_name TO 'pgbg:00000000000000ff:etl/daily'");
    await client.query("SET DateStyle TO 'German'");
    assert.equal(answerCounts.short, short + 2, 'both answers went the short way');
    assert.deepEqual(all, ['application_name=pgbg:00000000000000ff:etl/daily', 'DateStyle=German, DMY']);
    assert.deepEqual(named, ['DateStyle=German, DMY']);

    const foreign: unknown[] = [];
    const connection = (client as unknown as { connection: EventEmitter }).connection;
    connection.on('parameterStatus', (message: object) => foreign.push({ ...message }));
    short = answerCounts.short;
    await client.query("SET application_name TO 'other'");
    assert.equal(answerCounts.short, short + 1);
    assert.deepEqual(foreign, [{ name: 'parameterStatus', length: 27, parameterName: 'application_name', parameterValue: 'other' }]);
    assert.deepEqual(all.at(-1), 'application_name=other');
  } finally {
    await client.end();
  }
});

test('a parameterStatus listener added while a chunk is handed out gets plain messages for the rest of it', async () => {
  const client = new pg.Client({ connectionString: db.url });
  const connection = () => (client as unknown as { connection: EventEmitter }).connection;
  const foreign: unknown[] = [];
  let armed = false; // not for the settings reported at connect
  let first: string | null = null;
  onParameterStatus(client, null, (name) => {
    if (!armed || first !== null) return;
    first = name; // one of ours adds someone else's listener between two messages of one chunk
    connection().on('parameterStatus', (message: object) => foreign.push({ ...message }));
  });
  await client.connect();
  try {
    shortcutAnswers(client);
    armed = true;
    const short = answerCounts.short;
    // Both settings are reported together, just before the ReadyForQuery: one chunk.
    await client.query("SET application_name TO 'pgbg:mid-chunk'; SET DateStyle TO 'SQL'");
    assert.equal(answerCounts.short, short + 1, 'the chunk went the short way');
    // Whichever came first, the other reached the new listener with its value as a field.
    const other =
      first === 'DateStyle'
        ? { name: 'parameterStatus', length: 36, parameterName: 'application_name', parameterValue: 'pgbg:mid-chunk' }
        : { name: 'parameterStatus', length: 23, parameterName: 'DateStyle', parameterValue: 'SQL, MDY' };
    assert.deepEqual(foreign, [other]);
  } finally {
    await client.end();
  }
});
