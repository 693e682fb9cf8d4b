// The import-direction lint (scripts/check-imports.mjs), offline: src/ passes it, and an import
// from a higher folder is caught.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
// @ts-expect-error: a plain .mjs script without declarations
import { violations } from '../scripts/check-imports.mjs';

const check = violations as (root?: string) => string[];

test('every import in src/ points down the folder ranks', () => {
  assert.deepEqual(check('src'), []);
});

test('an import from a higher folder, or from an unranked one, is a violation', () => {
  const root = mkdtempSync(join(tmpdir(), 'pgbg-lint-'));
  const src = join(root, 'src');
  try {
    for (const dir of ['api', 'plan', 'mystery']) mkdirSync(join(src, dir), { recursive: true });
    writeFileSync(join(src, 'api', 'facade.ts'), "import { plan } from '../plan/task.js';\n");
    writeFileSync(join(src, 'plan', 'task.ts'), "import type { Options } from '../api/facade.js';\nexport const plan = 1;\n");
    writeFileSync(join(src, 'mystery', 'x.ts'), 'export {};\n');
    const found = check(src).map((line) => line.slice(root.length + 1));
    assert.deepEqual(found, [
      'src/mystery/x.ts: mystery has no rank in scripts/check-imports.mjs',
      'src/plan/task.ts (plan, rank 3) imports ../api/facade.js (api, rank 8): only lower ranks may be imported',
    ]);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
