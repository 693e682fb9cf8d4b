// A/B of two builds of the library (issue 13's Node CPU per task): `node bench/ab-dist.mjs
// [pairs] [tasks] <distA> <distB>` with DATABASE_URL set; each dist is a copy of `dist/` placed
// inside this checkout (so that it resolves `pg` from node_modules), e.g. node_modules/.ab/base.
// Both builds are loaded in one process, each with its own instance (16 workers, tags on), and
// measured in alternating rounds (AB, BA, AB, ...: both see the same load of a shared machine):
// the floor's fire-and-forget lib side, `tasks` INSERTs submitted at once, then waited for, after
// 2,000 warm-up ones each. Prints per pair Node µs per task (process.cpuUsage over the round:
// GC of the other side's garbage can land in a round, evenly over many pairs), tasks/s, and the
// median and range of the B/A ratios, and the ratio of the sums; the first 4 pairs are not counted.
// The side loaded second runs slower (~10% on 2 shared cores, whatever the build): run it twice,
// A B and then B A, and take the geometric mean of the two B/A figures (the bias cancels).
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { insertTable, submitAll, submitDetached } from './fire-support.mjs';

const [pairs, tasks, dirA, dirB] = [Number(process.argv[2] ?? 16), Number(process.argv[3] ?? 5000), process.argv[4], process.argv[5]];
const WARM_PAIRS = 4; // not counted: the JIT is still settling (per-task CPU falls over the first ~20,000 tasks)
const url = process.env.DATABASE_URL;
const { setup, insert: INSERT } = await insertTable(url, 'bench_ab_dist');
const side = async (spec) => {
  // `dir:detach` runs that side as submit + detach (fire-support's submitDetached).
  const [dir, mode] = spec.split(':');
  const { PgBackground } = await import(pathToFileURL(resolve(dir, 'index.js')).href + `?${dir}`);
  const bg = new PgBackground({ connectionString: url, maxWorkers: 16, whenFull: 'queue' });
  const round = (count, first) => (mode === 'detach' ? submitDetached : submitAll)(bg, INSERT, count, first);
  return { bg, round };
};
const sides = [await side(dirA), await side(dirB)];
for (const s of sides) await s.round(2000, -2000);
const measure = async (s, first) => {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await s.round(tasks, first);
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  return { node: (cpu.user + cpu.system) / tasks, rate: tasks / (ms / 1000) };
};
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const ratios = { node: [], rate: [] };
const sums = [0, 0];
for (let p = -WARM_PAIRS; p < pairs; p++) {
  const got = [];
  const order = p % 2 === 0 ? [0, 1] : [1, 0];
  for (const i of order) got[i] = await measure(sides[i], (p * 2 + i) * tasks + WARM_PAIRS * 2 * tasks);
  if (p < 0) continue;
  const [a, b] = got;
  sums[0] += a.node;
  sums[1] += b.node;
  for (const k of Object.keys(ratios)) ratios[k].push(b[k] / a[k]);
  const f = (x) => `node ${x.node.toFixed(1)} µs ${x.rate.toFixed(0)}/s`;
  console.log(`pair ${p + 1}: A ${f(a)} | B ${f(b)} | B/A node ${(b.node / a.node).toFixed(3)}`);
}
for (const [k, xs] of Object.entries(ratios)) {
  console.log(`B/A ${k}: median ${median(xs).toFixed(3)} (${Math.min(...xs).toFixed(3)}–${Math.max(...xs).toFixed(3)})`);
}
console.log(`Node µs/task, mean: A ${(sums[0] / pairs).toFixed(1)}, B ${(sums[1] / pairs).toFixed(1)} (B/A ${(sums[1] / sums[0]).toFixed(3)})`);
for (const s of sides) await s.bg.close();
await setup.end();
