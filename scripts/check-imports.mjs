// The import-direction lint: data flows one way through src/, and a folder never imports from a
// folder above it (see the README's Architecture section). Ranks, top to bottom; a file may
// import from its own folder or from any folder of a lower rank. `node scripts/check-imports.mjs`
// prints each violation and exits 1 if there is any.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';

/**
 * Folder (or file) → rank. Higher ranks may import lower ones, never the reverse. A file's own
 * entry wins over its folder's: api/types.ts, the public types, sits just above core (its states)
 * and below every other folder, which may all use it. Ranks may be fractional.
 */
export const RANKS = {
  cli: 10, // the command line, on top of the package
  'index.ts': 9,
  monitor: 8, // WorkerMonitor: beside the facade, over the view and the control functions
  'api/types.ts': 2.5,
  api: 8,
  jobs: 7.5,
  run: 7,
  control: 6,
  pool: 5,
  store: 5,
  results: 4,
  plan: 3,
  core: 2,
  pg: 2,
  'catalog.ts': 1,
  'errors.ts': 0,
  util: 1,
  types: 0, // ambient declarations of other packages
};

/** The top-level unit of src/ a path belongs to: its first folder, or the file itself. */
function unitOf(root, path) {
  const parts = relative(root, path).replace(/\.js$/, '.ts').split(/[\\/]/); // imports name the emitted .js file
  const file = parts.slice(0, 2).join('/');
  return file in RANKS ? file : parts[0];
}

function* sources(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* sources(path);
    else if (/\.ts$/.test(entry.name)) yield path;
  }
}

const IMPORT = /(?:^|\n)\s*(?:import|export)\s[^;]*?from\s+'([^']+)'|import\(\s*'([^']+)'\s*\)/g;

export function violations(root = 'src') {
  const found = [];
  for (const file of sources(root)) {
    const text = readFileSync(file, 'utf8');
    const from = unitOf(root, file);
    if (!(from in RANKS)) found.push(`${file}: ${from} has no rank in scripts/check-imports.mjs`);
    for (const match of text.matchAll(IMPORT)) {
      const specifier = match[1] ?? match[2];
      if (!specifier.startsWith('.')) continue;
      const target = normalize(join(dirname(file), specifier));
      const to = unitOf(root, target);
      if (to === from) continue;
      if (!(to in RANKS)) {
        found.push(`${file}: imports ${specifier}, outside the ranked folders`);
      } else if (RANKS[to] >= RANKS[from]) {
        found.push(`${file} (${from}, rank ${RANKS[from]}) imports ${specifier} (${to}, rank ${RANKS[to]}): only lower ranks may be imported`);
      }
    }
  }
  return found;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const found = violations(process.argv[2] ?? 'src');
  for (const line of found) console.error(line);
  if (found.length) {
    console.error(`[check-imports] ${found.length} import(s) against the direction of src/`);
    process.exit(1);
  }
  console.error('[check-imports] every import in src/ points down');
}
