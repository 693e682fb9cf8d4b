// A/B of two builds of the library (issue 13's Node CPU per task): `node bench/ab-dist.mjs
// [rounds] [tasks] <distA> <distB>` with DATABASE_URL set; each dist is a copy of `dist/` placed
// inside this checkout (so that it resolves `pg` from node_modules), e.g. node_modules/.ab/base.
// Each round runs both, in a fresh process each, in an order that alternates (AB, BA, ...): the
// floor's fire-and-forget lib side (tags on; 2,000 warm-up, then `tasks` INSERTs, submit then
// wait, 16 workers). Prints per round Node µs per task (process.cpuUsage), the server's (the
// side's backends, /proc), tasks/s, and the median and range of the B/A ratios.
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const [rounds, tasks, dirA, dirB] = [Number(process.argv[2] ?? 5), Number(process.argv[3] ?? 20_000), process.argv[4], process.argv[5]];
const url = process.env.DATABASE_URL;

if (process.env.PGBG_AB_CHILD) {
  const pg = (await import('pg')).default;
  const { PgBackground } = await import(pathToFileURL(resolve(process.env.PGBG_AB_CHILD, 'index.js')).href);
  const TICK_US = 1e6 / Number(execFileSync('getconf', ['CLK_TCK']).toString().trim());
  const INSERT = 'INSERT INTO bench_ab_dist (id, payload) VALUES ($1, $2)';
  const setup = new pg.Client({ connectionString: url });
  await setup.connect();
  await setup.query('CREATE TABLE IF NOT EXISTS bench_ab_dist (id int NOT NULL, payload text NOT NULL)');
  await setup.query('TRUNCATE bench_ab_dist');
  const bg = new PgBackground({ connectionString: url, maxWorkers: 16, whenFull: 'queue' });
  const round = async (count, first) => {
    const handles = await Promise.all(Array.from({ length: count }, (_, i) => bg.submit({ text: INSERT, values: [first + i, 'row'] })));
    await Promise.all(handles.map((h) => bg.wait(h)));
  };
  await round(2000, -2000);
  await new Promise((r) => setTimeout(r, 100));
  const { rows } = await setup.query("SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()");
  const serverUs = () => {
    let ticks = 0;
    for (const { pid } of rows) {
      try {
        const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
        ticks += Number(f[11]) + Number(f[12]);
      } catch {}
    }
    return ticks * TICK_US;
  };
  const cpu0 = process.cpuUsage();
  const s0 = serverUs();
  const t0 = performance.now();
  await round(tasks, 0);
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const server = (serverUs() - s0) / tasks;
  await bg.close();
  await setup.end();
  console.log(JSON.stringify({ node: (cpu.user + cpu.system) / tasks, server, rate: tasks / (ms / 1000) }));
  process.exit(0);
}

function once(dir) {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [process.argv[1], String(rounds), String(tasks)], { env: { ...process.env, PGBG_AB_CHILD: dir } });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.pipe(process.stderr);
    child.on('exit', (code) => (code === 0 ? done(JSON.parse(out.trim().split('\n').at(-1))) : fail(new Error(`${dir}: exit ${code}`))));
  });
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const ratios = { node: [], server: [], rate: [] };
for (let r = 0; r < rounds; r++) {
  const order = r % 2 === 0 ? [dirA, dirB] : [dirB, dirA];
  const got = {};
  for (const dir of order) got[dir] = await once(dir);
  const [a, b] = [got[dirA], got[dirB]];
  for (const k of Object.keys(ratios)) ratios[k].push(b[k] / a[k]);
  const f = (x) => `node ${x.node.toFixed(1)} server ${x.server.toFixed(1)} ${x.rate.toFixed(0)}/s`;
  console.log(`round ${r + 1}: A ${f(a)} | B ${f(b)} | B/A node ${(b.node / a.node).toFixed(3)} rate ${(b.rate / a.rate).toFixed(3)}`);
}
for (const [k, xs] of Object.entries(ratios)) {
  console.log(`B/A ${k}: median ${median(xs).toFixed(3)} (${Math.min(...xs).toFixed(3)}–${Math.max(...xs).toFixed(3)})`);
}
