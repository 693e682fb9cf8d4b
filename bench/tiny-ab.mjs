// Tiny task A/B (tags on and off), alternating blocks in one process: `node bench/tiny-ab.mjs
// [blocks] [per block]` with DATABASE_URL set, from dist/. Prints each side's median latency
// and the median of the per-block ratios.
import { PgBackground } from '../dist/index.js';

const blocks = Number(process.argv[2] ?? 10);
const per = Number(process.argv[3] ?? 500);
const url = process.env.DATABASE_URL;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const sides = { lib: new PgBackground({ connectionString: url }), untagged: new PgBackground({ connectionString: url, tagConnections: false }) };
async function block(bg) {
  const times = [];
  for (let i = 0; i < per + 50; i++) {
    const t0 = performance.now();
    const h = await bg.launch('SELECT 1');
    await bg.result(h).toArray();
    if (i >= 50) times.push(performance.now() - t0);
  }
  return median(times);
}
const out = { lib: [], untagged: [] };
for (let b = 0; b < blocks; b++) for (const side of b % 2 ? ['untagged', 'lib'] : ['lib', 'untagged']) out[side].push(await block(sides[side]));
const ratios = out.lib.map((x, i) => x / out.untagged[i]);
console.log(
  `lib ${median(out.lib).toFixed(4)} ms, untagged ${median(out.untagged).toFixed(4)} ms, ratio ${median(ratios).toFixed(3)} (${Math.min(...ratios).toFixed(3)}–${Math.max(...ratios).toFixed(3)})`,
);
for (const bg of Object.values(sides)) await bg.close();
