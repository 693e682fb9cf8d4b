// A job seen and controlled from outside the process that runs it: with the journal, the view
// shows the root (pid 0) and its subtasks (scope 'subtask', parent = the root's cookie); `list`
// of the command line prints the subtasks under their root; pg_background_pause_worker holds a
// running root's unstarted subtasks (the root shows paused), _resume_worker lets them go, and
// pg_background_cancel_worker cancels the whole tree through its owner: nothing commits.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import pg from 'pg';
import { main } from '../src/cli/run.js';
import { until, useDatabase } from './support/database.js';

const db = useDatabase(import.meta.filename, {
  async setup(db) {
    await db.query('CREATE TABLE job_marks (mark text)');
    const bg = db.background();
    await bg.install({ journal: true });
    await bg.close();
  },
});

const viewRows = (cookies: bigint[]) =>
  db.query<{ cookie: string; pid: number; label: string; scope: string; parent: string | null; state: string }>(
    'SELECT cookie, pid, label, scope, parent, state FROM pg_background_workers WHERE cookie = ANY ($1::int8[]) ORDER BY label',
    [cookies.map(String)],
  );
const call = async (fn: string, cookie: bigint) => (await db.query<{ r: boolean }>(`SELECT pg_background_${fn}_worker($1) AS r`, [String(cookie)]))[0]!.r;

async function listTable(): Promise<string> {
  let stdout = '';
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      stdout += chunk.toString('utf8');
      done();
    },
  });
  const status = await main(['list'], { env: { DATABASE_URL: db.url, TZ: 'UTC' }, stdout: sink as unknown as NodeJS.WriteStream, stderr: sink });
  assert.equal(status, 0, stdout);
  return stdout;
}

test('a journaled job: the view shows the root and its subtasks, list prints them under it; pause and resume of the running root from SQL', async (t) => {
  const bg = db.background({ journal: true, maxWorkers: 1, whenFull: 'queue' });
  const holder = new pg.Client({ connectionString: db.url });
  await holder.connect();
  t.after(() => holder.end());
  await holder.query('SELECT pg_advisory_lock(77)');
  let launched!: Promise<unknown>;
  const root = await bg.job(
    async (ctx) => {
      ctx.status('copying');
      const first = await ctx.launch('SELECT pg_advisory_lock(77)', { label: 'ops/a-first' });
      launched = ctx.launch("INSERT INTO job_marks VALUES ('second')", { label: 'ops/b-second' }); // waits for the slot
      await bg.wait(first);
      await bg.wait((await launched) as never);
    },
    { label: 'ops/job' },
  );
  const ours = async () => (await bg.list()).filter((w) => w.label?.startsWith('ops/'));
  await until(async () => (await ours()).length === 3, 'the root and both subtasks');
  const cookies = (await ours()).map((w) => w.cookie);
  await until(
    async () => (await viewRows(cookies)).length === 3 && (await viewRows(cookies)).every((r) => r.state !== 'pending' || r.label === 'ops/b-second'),
    'the journal rows',
  );
  const parent = String(root.cookie);
  assert.deepEqual(
    (await viewRows(cookies)).map(({ label, scope, parent: p, pid }) => ({ label, scope, parent: p, pid: pid === 0 ? 0 : 'backend' })),
    [
      { label: 'ops/a-first', scope: 'subtask', parent, pid: 'backend' },
      { label: 'ops/b-second', scope: 'subtask', parent, pid: 0 },
      { label: 'ops/job', scope: 'root', parent: null, pid: 0 },
    ],
  );
  // The command line: the subtasks right under their root, indented.
  const lines = (await listTable()).split('\n');
  const at = (label: string) => lines.findIndex((line) => line.includes(label));
  assert.ok(at('ops/job') > 0 && at('ops/a-first') > at('ops/job') && at('ops/b-second') > at('ops/job'), lines.join('\n'));
  // The tree is drawn in the id column: a subtask's line starts with its branch.
  assert.ok(!lines[at('ops/job')]!.trimStart().startsWith('└'), lines.join('\n'));
  for (const label of ['ops/a-first', 'ops/b-second']) assert.ok(lines[at(label)]!.trimStart().startsWith('└'), lines.join('\n'));

  // Pause of the running root, from SQL: its unstarted subtask is held past the freed slot.
  assert.equal(await call('pause', root.cookie), true);
  await until(async () => (await bg.info(root)).state === 'paused', 'the owner to pause the root');
  await holder.query('SELECT pg_advisory_unlock(77)');
  const firstHandle = (await bg.list()).find((w) => w.label === 'ops/a-first')!;
  await bg.wait(firstHandle);
  const secondInfo = (await bg.list()).find((w) => w.label === 'ops/b-second')!;
  assert.equal(secondInfo.state, 'paused');
  assert.deepEqual(await db.query('SELECT * FROM job_marks'), []);
  // The functions know what the journal says: resume once it says paused (within a batch).
  await until(async () => (await viewRows([root.cookie]))[0]?.state === 'paused', 'the journal to show the root paused');
  assert.equal(await call('resume', root.cookie), true);
  await bg.wait(root);
  assert.equal((await bg.info(root)).state, 'stopped');
  assert.deepEqual(await db.query('SELECT mark FROM job_marks'), [{ mark: 'second' }]);
  await until(async () => (await viewRows(cookies)).every((r) => r.state === 'stopped'), 'every row stopped');
  await db.query('TRUNCATE job_marks');
  await bg.close();
});

test('pg_background_cancel_worker on a journaled root cancels the tree through its owner: nothing commits', async () => {
  const bg = db.background({ journal: true });
  const root = await bg.job(
    async (ctx) => {
      await Promise.all(
        ['x', 'y'].map(async (t) => bg.wait(await ctx.launch(`INSERT INTO job_marks VALUES ('${t}'); SELECT pg_sleep(30)`, { label: `cancel/${t}` }))),
      );
    },
    { label: 'cancel/job' },
  );
  await until(async () => (await bg.list()).filter((w) => w.label?.startsWith('cancel/') && w.state === 'running').length === 3, 'the tree to run');
  await until(async () => (await viewRows([root.cookie])).length === 1, 'the root in the journal');
  assert.equal(await call('cancel', root.cookie), true);
  await bg.wait(root);
  const states = (await bg.list()).filter((w) => w.label?.startsWith('cancel/')).map((w) => [w.label, w.state]);
  assert.deepEqual(
    new Map(states as [string, string][]),
    new Map([
      ['cancel/job', 'canceled'],
      ['cancel/x', 'canceled'],
      ['cancel/y', 'canceled'],
    ]),
  );
  assert.deepEqual(await db.query('SELECT * FROM job_marks'), []);
  await bg.close();
});
