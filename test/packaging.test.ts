// The package as a consumer gets it: `npm pack` builds it (prepack), the tarball holds the build
// and no tests, installs into a fresh project from the npm cache (offline: its dependencies are
// this repo's own), imports and requires at runtime, and typechecks a consumer's file against
// dist/*.d.ts with and without `customConditions: ["source"]`. Needs no database.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { setPriority, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
// npm and tsc are a burst of CPU on a shared machine: this file (and what it spawns, which
// inherits the priority) yields to the timing-sensitive tests the suite runs beside it.
setPriority(10);
const repo = resolve(import.meta.dirname, '..');
const tsc = join(repo, 'node_modules', 'typescript', 'bin', 'tsc');

interface PackResult {
  filename: string;
  integrity: string;
  files: { path: string }[];
}

interface LockEntry {
  version: string;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  [field: string]: unknown;
}

/**
 * A lockfile for the consumer project: the tarball, plus the closure of `roots` exactly as this
 * repository locked them, so `npm ci --offline` takes every package from the npm cache by its
 * integrity (the cache holds the tarballs `npm ci` fetched here, not the registry's indexes).
 */
async function consumerLock(pack: PackResult, roots: string[], devRoots: string[]): Promise<object> {
  const lock = JSON.parse(await readFile(join(repo, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockEntry> };
  const packages: Record<string, LockEntry> = {};
  const tarball = `file:../${pack.filename}`;
  const add = (name: string, optional: boolean) => {
    const key = `node_modules/${name}`;
    if (packages[key]) return;
    const entry = lock.packages[key];
    if (!entry) {
      if (optional) return;
      throw new Error(`${name} is not in this repository's package-lock.json`);
    }
    packages[key] = entry;
    for (const dep of Object.keys(entry.dependencies ?? {})) add(dep, false);
    for (const dep of Object.keys(entry.optionalDependencies ?? {})) add(dep, true);
  };
  for (const name of [...roots, ...devRoots]) add(name, false);
  const manifest = JSON.parse(await readFile(join(repo, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
  const devDependencies = Object.fromEntries(devRoots.map((name) => [name, packages[`node_modules/${name}`]!.version]));
  return {
    name: 'consumer',
    lockfileVersion: 3,
    requires: true,
    packages: {
      '': { name: 'consumer', dependencies: { 'pg-background': tarball }, devDependencies },
      'node_modules/pg-background': { version: '0.1.0', resolved: tarball, integrity: pack.integrity, dependencies: manifest.dependencies },
      ...packages,
    },
  };
}

const consumer = `import { PgBackground, PgBackgroundError, type WorkerHandle } from 'pg-background';
import type { Readable } from 'node:stream';

export async function firstRow(url: string): Promise<number> {
  await using bg = new PgBackground({ connectionString: url, maxWorkers: 2 });
  const h: WorkerHandle = await bg.launch('SELECT 1 AS n', { label: 'consumer', queueSize: 4096 });
  const stream: Readable = bg.result<{ n: number }>(h).stream();
  for await (const row of stream) return (row as { n: number }).n;
  // @ts-expect-error: a pid is a number (the declarations are real, not any)
  const wrong: string = h.pid;
  throw new PgBackgroundError('PGBG_INVALID_ARGUMENT', String(wrong));
}
`;

function tsconfig(conditions: string[] | null): string {
  const compilerOptions = {
    target: 'es2022',
    lib: ['es2024', 'esnext.disposable'],
    module: 'nodenext',
    moduleResolution: 'nodenext',
    strict: true,
    noEmit: true,
    types: ['node'],
    ...(conditions ? { customConditions: conditions } : {}),
  };
  return JSON.stringify({ compilerOptions, files: ['consumer.ts'] });
}

test('the packed tarball holds the build, installs into a fresh project, runs and typechecks with and without the source condition', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'pgbg-pack-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const env = { ...process.env, npm_config_audit: 'false', npm_config_fund: 'false', npm_config_update_notifier: 'false' };

  // npm pack runs prepack (npm run build, which empties dist/ first).
  const { stdout } = await run('npm', ['pack', '--json', '--pack-destination', dir], { cwd: repo, env, maxBuffer: 16 << 20 });
  const [pack] = JSON.parse(stdout.slice(stdout.indexOf('['))) as PackResult[];
  const files = pack!.files.map((f) => f.path).sort();
  const top = [...new Set(files.map((f) => f.split('/')[0]))].sort();
  assert.deepEqual(top, ['CHANGELOG.md', 'LICENSE', 'README.md', 'dist', 'package.json', 'src']);
  assert.deepEqual(
    files.filter((f) => /test|bench|example|\.ci|scripts/.test(f)),
    [],
  );
  for (const f of ['dist/index.js', 'dist/index.d.ts', 'dist/results/result-stream.js', 'dist/results/result-stream.d.ts']) assert.ok(files.includes(f), f);
  // Every emitted module is one of today's sources: no stale file from an older build.
  const sources = new Set(files.filter((f) => f.startsWith('src/') && f.endsWith('.ts') && !f.endsWith('.d.ts')).map((f) => f.slice(4, -3)));
  const emitted = files
    .filter((f) => f.startsWith('dist/') && f.endsWith('.js'))
    .map((f) => f.slice(5, -3))
    .sort();
  assert.deepEqual(emitted, [...sources].sort());

  const manifest = JSON.parse(await readFile(join(repo, 'package.json'), 'utf8')) as { exports: Record<string, Record<string, string>> };
  assert.deepEqual(Object.keys(manifest.exports['.']!), ['pg-background-source', 'types', 'default']);

  const project = join(dir, 'consumer');
  await mkdir(project);
  const lock = await consumerLock(pack!, Object.keys(JSON.parse(await readFile(join(repo, 'package.json'), 'utf8')).dependencies), ['@types/node']);
  const root = (lock as { packages: Record<string, { dependencies: object; devDependencies: object }> }).packages['']!;
  await writeFile(
    join(project, 'package.json'),
    JSON.stringify({ name: 'consumer', private: true, type: 'module', dependencies: root.dependencies, devDependencies: root.devDependencies }),
  );
  await writeFile(join(project, 'package-lock.json'), JSON.stringify(lock));
  await run('npm', ['ci', '--offline', '--ignore-scripts'], { cwd: project, env });

  // Runtime: ESM import, require() through require(esm), and a `source` condition changes nothing.
  const exportsOf = "m => console.log(Object.keys(m).filter(k => k !== 'default' && k !== 'module.exports').sort().join())";
  const imported = await run(process.execPath, ['--input-type=module', '-e', `import('pg-background').then(${exportsOf})`], { cwd: project });
  assert.equal(imported.stdout.trim(), 'CANCEL_REASONS,PgBackground,PgBackgroundError,WORKER_STATES,WorkerError,workerTag');
  const sourced = await run(process.execPath, ['--conditions=source', '--input-type=module', '-e', `import('pg-background').then(${exportsOf})`], {
    cwd: project,
  });
  assert.equal(sourced.stdout.trim(), 'CANCEL_REASONS,PgBackground,PgBackgroundError,WORKER_STATES,WorkerError,workerTag');
  const required = await run(process.execPath, ['-e', `(${exportsOf})(require('pg-background'))`], { cwd: project });
  assert.equal(required.stdout.trim(), 'CANCEL_REASONS,PgBackground,PgBackgroundError,WORKER_STATES,WorkerError,workerTag');

  await writeFile(join(project, 'consumer.ts'), consumer);
  for (const conditions of [null, ['source']]) {
    await writeFile(join(project, 'tsconfig.json'), tsconfig(conditions));
    const checked = await run(process.execPath, [tsc, '-p', 'tsconfig.json', '--listFiles'], { cwd: project }).catch((error: { stdout: string }) => {
      assert.fail(`tsc with customConditions ${JSON.stringify(conditions)} failed:\n${error.stdout}`);
    });
    const ours = checked.stdout
      .split('\n')
      .filter((f) => f.includes('node_modules/pg-background/'))
      .map((f) => f.slice(f.indexOf('node_modules/pg-background/') + 'node_modules/pg-background/'.length));
    assert.ok(ours.includes('dist/index.d.ts'), `customConditions ${JSON.stringify(conditions)}: ${ours.join(', ')}`);
    assert.deepEqual(
      ours.filter((f) => !f.startsWith('dist/') || !f.endsWith('.d.ts')),
      [],
      `only declarations with ${JSON.stringify(conditions)}`,
    );
  }
});
