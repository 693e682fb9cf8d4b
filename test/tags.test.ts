// Tagged connections (SPEC Part 2): a worker connection's application_name is its worker's tag
// while the task runs, `pgbg:idle` between tasks, whatever the task did to the session; the
// control connection is `pgbg:control`; `tagConnections: false` leaves every name alone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { workerTag, type PgBackground, type WorkerHandle } from 'pg-background';
import { tagSql } from '../src/catalog.js';
import { encodeStatement, statementText } from '../src/pg/wire-bytes.js';
import { workerTagStatement } from '../src/store/worker-identity.js';
import { until, useDatabase } from './support/database.js';

const db = useDatabase(import.meta.filename);

/** The tag written out by hand from SPEC's words, not with workerTag. */
const expected = (cookie: bigint, label: string) => `pgbg:${(cookie < 0n ? cookie + 2n ** 64n : cookie).toString(16).padStart(16, '0')}:${label}`;

/** The worker's own view of its application_name, and the server's (pg_stat_activity). */
const SELF = `SELECT current_setting('application_name') AS own,
  (SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()) AS seen`;

async function selfTag(bg: PgBackground, sql: string = SELF, label?: string): Promise<{ handle: WorkerHandle; row: Record<string, unknown> }> {
  const handle = await bg.launch(sql, label === undefined ? {} : { label });
  const rows = await bg.result(handle).toArray();
  assert.equal((await bg.info(handle))?.state, 'stopped');
  return { handle, row: rows.at(-1) as Record<string, unknown> };
}

/** What pg_stat_activity says of a backend once it is idle (the reset behind a task is asynchronous). */
async function idleName(pid: number): Promise<string> {
  const [row] = await until(async () => {
    const rows = await db.query<{ application_name: string }>(
      "SELECT application_name FROM pg_stat_activity WHERE pid = $1 AND state = 'idle' AND query = 'DISCARD ALL'",
      [pid],
    );
    return rows.length > 0 && rows;
  }, `backend ${pid} idle after its reset`);
  return row!.application_name;
}

test('workerTag: cookie as 16 hex digits of its two complement, printable ASCII label, cut to 63 bytes', () => {
  assert.equal(workerTag(1n, 'etl/daily'), 'pgbg:0000000000000001:etl/daily');
  assert.equal(workerTag(-1n, null), 'pgbg:ffffffffffffffff:');
  assert.equal(workerTag(-9223372036854775808n, 'x'), 'pgbg:8000000000000000:x');
  assert.equal(workerTag(0x7fffffffffffffffn, ''), 'pgbg:7fffffffffffffff:');
  // é is two bytes, ✓ three, a tab and DEL one each: every byte outside 0x20..0x7e becomes `_`.
  assert.equal(workerTag(255n, 'é✓\tz\u007f~ '), 'pgbg:00000000000000ff:______z_~ ');
  const long = 'a'.repeat(200);
  assert.equal(workerTag(16n, long), 'pgbg:0000000000000010:' + 'a'.repeat(41));
  assert.equal(workerTag(16n, long).length, 63);
  // Cut after the replacement: a multibyte character at the edge leaves its first bytes as `_`.
  assert.equal(workerTag(16n, 'b'.repeat(40) + 'é'), 'pgbg:0000000000000010:' + 'b'.repeat(40) + '_');
});

test('workerTagStatement: byte for byte tagSql(workerTag(cookie, label), local), whatever the labels before it', () => {
  const cookie = fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n });
  const label = fc.oneof(fc.constantFrom(null, '', 'etl/daily', "it's", 'back\\slash', 'é✓', 'a'.repeat(70)), fc.string({ maxLength: 80, unit: 'binary' }));
  fc.assert(
    fc.property(fc.array(fc.tuple(cookie, label, fc.boolean()), { minLength: 1, maxLength: 20 }), (tasks) => {
      for (const [c, l, local] of tasks) {
        const made = workerTagStatement(c, l, local);
        const text = tagSql(workerTag(c, l), local);
        // Its bytes as a task's write carries them, and its text for the other paths.
        if (!encodeStatement(made).equals(encodeStatement(text))) return false;
        if (statementText(made) !== text) return false;
      }
      return true;
    }),
    { numRuns: 300 },
  );
  // A label the literal escapes gets the text (pg's escaping), the others the split form.
  assert.equal(typeof workerTagStatement(1n, "it's", false), 'string');
  assert.equal(typeof workerTagStatement(1n, 'etl', false), 'object');
});

test("a running worker's backend shows its tag in pg_stat_activity, and pgbg:idle once it ended", async () => {
  const bg = db.background({ maxWorkers: 1 });
  const label = 'étl/nightly ✓ #1';
  const h = await bg.launch('SELECT pg_sleep(60)', { label });
  const tag = expected(h.cookie, '__tl/nightly ___ #1');
  const [row] = await until(async () => {
    const rows = await db.query<{ application_name: string }>("SELECT application_name FROM pg_stat_activity WHERE pid = $1 AND state = 'active'", [h.pid]);
    return rows.length > 0 && rows;
  }, 'the worker running');
  assert.equal(row!.application_name, tag);
  assert.equal(workerTag(h.cookie, label), tag);
  await bg.cancel(h);
  assert.equal((await bg.info(h))?.state, 'canceled');
  // The canceled connection is not reused (its cancel could land on the next task): a new one.
  const next = await bg.launch('SELECT 1');
  await bg.wait(next);
  assert.equal(await idleName(next.pid), 'pgbg:idle');
  await bg.close();
});

test('the tag is exact for negative and positive cookies, with and without a label, and cut to 63 bytes', async () => {
  const bg = db.background({ maxWorkers: 1 });
  const signs = new Set<boolean>();
  let pid: number | null = null;
  // Cookies are random: half are negative. Both signs turn up within a few tasks.
  while (signs.size < 2) {
    const { handle, row } = await selfTag(bg);
    assert.deepEqual(row, { own: expected(handle.cookie, ''), seen: expected(handle.cookie, '') });
    signs.add(handle.cookie < 0n);
    pid ??= handle.pid;
    assert.equal(handle.pid, pid); // one warm connection served them all
  }
  const label = 'L'.repeat(64); // the longest label a launch takes (64 bytes)
  const { handle, row } = await selfTag(bg, SELF, label);
  assert.equal(row.own, expected(handle.cookie, 'L'.repeat(41)));
  assert.equal(row.seen, row.own);
  assert.equal((row.own as string).length, 63);
  await bg.close();
});

test('on a reused warm connection the tag is right for every task and pgbg:idle between them', async () => {
  await db.query('CREATE TABLE tags_t (n int)');
  await db.query(`CREATE PROCEDURE tags_commits() LANGUAGE plpgsql AS $$ BEGIN INSERT INTO tags_t VALUES (1); COMMIT; INSERT INTO tags_t VALUES (2); END $$`);
  const bg = db.background({ maxWorkers: 1 });
  const first = await selfTag(bg, SELF, 'one');
  assert.deepEqual(first.row, { own: expected(first.handle.cookie, 'one'), seen: expected(first.handle.cookie, 'one') });
  const pid = first.handle.pid;
  assert.equal(await idleName(pid), 'pgbg:idle');

  // A task that sets application_name itself: the reset brings back pgbg:idle.
  const own = await bg.launch("SET application_name = 'mine'");
  await bg.wait(own);
  assert.equal(own.pid, pid);
  assert.equal(await idleName(pid), 'pgbg:idle');
  const afterSet = await selfTag(bg, SELF, 'two');
  assert.equal(afterSet.row.own, expected(afterSet.handle.cookie, 'two'));

  // A failed task: its error is its own, and the next task is tagged again.
  const failed = await bg.launch('SELECT 1/0', { label: 'fails' });
  await bg.wait(failed);
  assert.equal((await bg.errorInfo(failed))?.sqlstate, '22012');
  assert.equal(failed.pid, pid);
  assert.equal(await idleName(pid), 'pgbg:idle');
  const afterFailure = await selfTag(bg, SELF, 'three');
  assert.deepEqual(afterFailure.row, { own: expected(afterFailure.handle.cookie, 'three'), seen: expected(afterFailure.handle.cookie, 'three') });

  // A multi-statement task (our BEGIN ... COMMIT): tagged inside its block, idle after it.
  const multi = await selfTag(bg, `SET application_name = 'inside'; INSERT INTO tags_t VALUES (0); ${SELF}`, 'four');
  assert.deepEqual(multi.row, { own: 'inside', seen: 'inside' });
  const multiTagged = await selfTag(bg, `INSERT INTO tags_t VALUES (0); ${SELF}`, 'five');
  assert.deepEqual(multiTagged.row, { own: expected(multiTagged.handle.cookie, 'five'), seen: expected(multiTagged.handle.cookie, 'five') });
  const multiFailed = await bg.launch('INSERT INTO tags_t VALUES (0); SELECT 1/0', { label: 'six' });
  await bg.wait(multiFailed);
  assert.equal((await bg.errorInfo(multiFailed))?.sqlstate, '22012');
  assert.equal(await idleName(pid), 'pgbg:idle');

  // Statements that refuse to follow another in a pipeline get the tag under a Sync of their own.
  const shown = await selfTag(bg, 'SHOW application_name', 'seven');
  assert.deepEqual(shown.row, { application_name: expected(shown.handle.cookie, 'seven') });
  for (const sql of ['VACUUM tags_t', 'CALL tags_commits()', 'CREATE INDEX CONCURRENTLY tags_i ON tags_t (n)']) {
    const h = await bg.launch(sql);
    await bg.wait(h);
    assert.deepEqual([sql, (await bg.info(h))?.state, h.pid], [sql, 'stopped', pid]);
  }
  assert.deepEqual(await db.query('SELECT count(*)::int AS n FROM tags_t'), [{ n: 4 }]);

  // With parameters (one Parse of the task's own).
  const bound = await selfTag(bg, { text: `SELECT current_setting($1) AS own`, values: ['application_name'] } as unknown as string, 'eight');
  assert.deepEqual(bound.row, { own: expected(bound.handle.cookie, 'eight') });
  assert.equal(bound.handle.pid, pid);
  assert.equal(await idleName(pid), 'pgbg:idle');
  await bg.close();
});

test('the control connection is pgbg:control', async () => {
  const bg = db.background({ maxWorkers: 1 });
  await bg.wait(await bg.launch('SELECT 1'));
  await until(async () => (await db.backends()).some((b) => b.application_name === 'pgbg:control'), 'the control connection');
  await bg.close();
});

test('tagConnections: false leaves application_name as the options say', async () => {
  const bg = db.background({ maxWorkers: 1, tagConnections: false, application_name: 'untagged-app' });
  const h = await bg.launch('SELECT pg_sleep(60)', { label: 'quiet' });
  await until(
    async () =>
      (await db.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND state = 'active' AND application_name = 'untagged-app'", [h.pid])).length > 0,
    'the untagged worker running',
  );
  await bg.cancel(h);
  const { row } = await selfTag(bg, SELF, 'quiet');
  assert.deepEqual(row, { own: 'untagged-app', seen: 'untagged-app' });
  await until(async () => (await db.backends()).some((b) => b.application_name === 'pg-background control'), 'the untagged control connection');
  await bg.close();
  const plain = db.background({ maxWorkers: 1, tagConnections: false });
  assert.deepEqual((await selfTag(plain)).row, { own: 'pg-background', seen: 'pg-background' });
  await plain.close();
});

test('tagConnections is validated like every option', () => {
  for (const value of ['yes', 1, null]) {
    assert.throws(
      () => db.background({ tagConnections: value as unknown as boolean }),
      (error: Error & { code?: string }) => error.code === 'PGBG_INVALID_ARGUMENT' && /Expected `tagConnections` to be a boolean/.test(error.message),
    );
  }
});
