// Fault: the caller's process dies (SIGKILL) while its worker runs. With onCallerExit 'finish'
// (the default, pg_background's behaviour) the worker runs on and commits; with 'rollback' the
// server notices the dead client (client_connection_check_interval, 1 s) and aborts it. The
// worker sleeps 3 s, well past that interval, so that the abort cannot race the commit.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { until, useDatabase } from './support/database.js';

const db = useDatabase(import.meta.filename, {
  async setup(database) {
    await database.query('CREATE TABLE caller_marks (mark text)');
  },
});

const CHILD = fileURLToPath(new URL('./support/caller-child.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** Starts the caller process, reads the worker's pid it prints, and kills it at once (SIGKILL). */
async function launchAndKill(onCallerExit: 'finish' | 'rollback', sql: string): Promise<{ pid: number; killedAt: number }> {
  const child = spawn(process.execPath, ['--conditions=pg-background-source', '--import', 'tsx', CHILD], {
    cwd: ROOT,
    env: { ...process.env, PGBG_CHILD_URL: db.url, PGBG_CHILD_ON_CALLER_EXIT: onCallerExit, PGBG_CHILD_SQL: sql },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk));
  const exited = once(child, 'exit');
  try {
    const pid = await new Promise<number>((resolve, reject) => {
      let out = '';
      child.stdout!.on('data', (chunk: Buffer) => {
        out += chunk;
        const line = out.split('\n');
        if (line.length > 1) resolve(Number(line[0]));
      });
      child.once('exit', (code) => reject(new Error(`the caller exited (${code}) before printing a pid: ${stderr}`)));
    });
    child.kill('SIGKILL');
    const killedAt = Date.now();
    const [code, signal] = await exited;
    assert.deepEqual([code, signal], [null, 'SIGKILL']);
    assert.ok(Number.isInteger(pid) && pid > 0, `worker pid: ${pid}`);
    return { pid, killedAt };
  } finally {
    child.kill('SIGKILL');
  }
}

const marks = async (mark: string) => (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM caller_marks WHERE mark = $1', [mark]))[0]!.n;
const backendGone = (pid: number) =>
  until(async () => (await db.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid])).length === 0, `backend ${pid} to exit`, 15_000);

test("onCallerExit 'finish' (the default): a worker whose caller was killed runs on and commits", async () => {
  const { pid, killedAt } = await launchAndKill('finish', "SELECT pg_sleep(3); INSERT INTO caller_marks VALUES ('finish')");
  // The worker was still sleeping when its caller died.
  assert.equal(await marks('finish'), 0);
  await until(async () => (await marks('finish')) === 1, 'the orphaned worker to commit', 15_000);
  console.log(`[fault-caller-dies] finish: the row appeared ${Date.now() - killedAt} ms after the kill (the worker slept 3000 ms)`);
  await backendGone(pid);
  assert.equal(await marks('finish'), 1);
});

test("onCallerExit 'rollback': the server aborts the worker of a killed caller, and nothing commits", async () => {
  const { pid, killedAt } = await launchAndKill('rollback', "SELECT pg_sleep(3); INSERT INTO caller_marks VALUES ('rollback')");
  await backendGone(pid);
  console.log(`[fault-caller-dies] rollback: the backend was gone ${Date.now() - killedAt} ms after the kill (polled; the worker would have slept 3000 ms)`);
  assert.equal(await marks('rollback'), 0);
});
