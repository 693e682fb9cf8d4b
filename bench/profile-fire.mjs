// A profiling aid (issue 13): one side of the floor's fire-and-forget alone, for `node --cpu-prof`.
// `node --cpu-prof bench/profile-fire.mjs lib|lib16|detach|untagged|pool|journal [tasks]` with
// DATABASE_URL set and `npm run build` done (it loads dist/); lib16 submits 16 at a time (no deep
// queue of pending workers). Prints Node CPU µs per task of the timed round, and the server's
// transactions and inserted rows per task (pg_stat_database, flushed late: a rough count).
import pg from 'pg';
import { PgBackground } from '../dist/index.js';
import { insertTable, submitAll, submitDetached } from './fire-support.mjs';

const side = process.argv[2] ?? 'lib';
const tasks = Number(process.argv[3] ?? 20_000);
const url = process.env.DATABASE_URL;
const { setup, insert: INSERT } = await insertTable(url, 'bench_profile');
let round;
let close;
if (side === 'pool') {
  const pool = new pg.Pool({ connectionString: url, max: 16 });
  round = async (count, first) => {
    let next = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        for (let i = next++; i < count; i = next++) await pool.query(INSERT, [first + i, 'row']);
      }),
    );
  };
  close = () => pool.end();
} else {
  const options = { connectionString: url, maxWorkers: 16, whenFull: 'queue' };
  if (side === 'untagged') options.tagConnections = false;
  if (side === 'journal') options.journal = true;
  if (side === 'journal') {
    const installer = new PgBackground({ connectionString: url });
    await installer.install({ journal: true });
    await installer.close();
  }
  const bg = new PgBackground(options);
  round = async (count, first) => {
    if (side === 'lib16') {
      // 16 at a time from the caller's side too: no deep queue of pending workers.
      let next = 0;
      await Promise.all(
        Array.from({ length: 16 }, async () => {
          for (let i = next++; i < count; i = next++) await bg.wait(await bg.submit({ text: INSERT, values: [first + i, 'row'] }));
        }),
      );
      return;
    }
    if (side === 'detach') return submitDetached(bg, INSERT, count, first);
    await submitAll(bg, INSERT, count, first);
  };
  close = () => bg.close();
}
await round(2000, -2000);
const stats = async () =>
  (await setup.query('SELECT xact_commit + xact_rollback AS x, tup_inserted AS i FROM pg_stat_database WHERE datname = current_database()')).rows[0];
await setup.query('SELECT pg_stat_force_next_flush()');
const before = await stats();
const cpu0 = process.cpuUsage();
const t0 = performance.now();
await round(tasks, 0);
const ms = performance.now() - t0;
const cpu = process.cpuUsage(cpu0);
await new Promise((r) => setTimeout(r, 1200));
const after = await stats();
console.log(`transactions/task ${((after.x - before.x) / tasks).toFixed(2)}, inserted/task ${((after.i - before.i) / tasks).toFixed(2)}`);
console.log(
  `${side}: ${((cpu.user + cpu.system) / tasks).toFixed(1)} µs Node/task (user ${(cpu.user / tasks).toFixed(1)}, system ${(cpu.system / tasks).toFixed(1)}), ${((tasks / ms) * 1000).toFixed(0)} tasks/s`,
);
await close();
await setup.end();
