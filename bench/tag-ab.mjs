// A/B of two library configurations alone (issue 9's tag cost, the journal's), many alternating
// rounds in one process, CPU per task in Node (process.cpuUsage) and on the server (the side's
// backends' utime + stime from /proc): `node bench/tag-ab.mjs [rounds] [tasks] [a] [b]` with
// DATABASE_URL set and `npm run build` done (it loads dist/). Sides: lib (defaults), untagged
// (tagConnections: false), journal (journal: true). Prints the median of the per-round ratios.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { PgBackground } from '../dist/index.js';
import { insertTable, submitAll } from './fire-support.mjs';

const rounds = Number(process.argv[2] ?? 10);
const tasks = Number(process.argv[3] ?? 10_000);
const sides = [process.argv[4] ?? 'lib', process.argv[5] ?? 'untagged'];
const url = process.env.DATABASE_URL;
const TICK_US = 1e6 / Number(execFileSync('getconf', ['CLK_TCK']).toString().trim());
const { setup, insert: INSERT } = await insertTable(url, 'bench_ab');
if (sides.includes('journal')) {
  const installer = new PgBackground({ connectionString: url });
  await installer.install({ journal: true });
  await installer.close();
}
function serverUs(pids) {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
      ticks += Number(f[11]) + Number(f[12]);
    } catch {}
  }
  return ticks * TICK_US;
}
async function once(side) {
  await setup.query('TRUNCATE bench_ab');
  const options = { connectionString: url, maxWorkers: 16, whenFull: 'queue' };
  if (side === 'untagged') options.tagConnections = false;
  if (side === 'journal') options.journal = true;
  const bg = new PgBackground(options);
  const round = (count, first) => submitAll(bg, INSERT, count, first);
  await round(2000, -2000);
  await new Promise((r) => setTimeout(r, 100));
  const { rows } = await setup.query("SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()");
  const pids = rows.map((r) => r.pid);
  const cpu0 = process.cpuUsage();
  const s0 = serverUs(pids);
  const t0 = performance.now();
  await round(tasks, 0);
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  await new Promise((r) => setTimeout(r, 50));
  const server = (serverUs(pids) - s0) / tasks;
  await bg.close();
  return { node: (cpu.user + cpu.system) / tasks, server, rate: tasks / (ms / 1000) };
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const results = { [sides[0]]: [], [sides[1]]: [] };
for (let r = 0; r < rounds; r++) {
  const order = r % 2 === 0 ? sides : [...sides].reverse();
  for (const side of order) results[side].push(await once(side));
  const [a, b] = sides.map((s) => results[s].at(-1));
  console.error(
    `round ${r + 1}: ${sides[0]} ${a.node.toFixed(1)}+${a.server.toFixed(1)} µs ${a.rate.toFixed(0)}/s; ${sides[1]} ${b.node.toFixed(1)}+${b.server.toFixed(1)} µs ${b.rate.toFixed(0)}/s`,
  );
}
const ratio = (pick) => results[sides[0]].map((a, i) => pick(a) / pick(results[sides[1]][i]));
const spread = (xs) => `${median(xs).toFixed(3)} (${Math.min(...xs).toFixed(3)}–${Math.max(...xs).toFixed(3)})`;
for (const side of sides) {
  const xs = results[side];
  console.log(`${side}: Node ${spread(xs.map((x) => x.node))} µs, server ${spread(xs.map((x) => x.server))} µs, ${spread(xs.map((x) => x.rate))} tasks/s`);
}
console.log(
  `${sides[0]} / ${sides[1]}: CPU ${spread(ratio((x) => x.node + x.server))}, Node ${spread(ratio((x) => x.node))}, server ${spread(ratio((x) => x.server))}, throughput ${spread(ratio((x) => x.rate))}`,
);
await setup.end();
