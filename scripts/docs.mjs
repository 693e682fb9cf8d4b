// `npm run docs`: the API reference, built by typedoc from the TSDoc of src/index.ts's exports
// into docs/api (not committed). typedoc drives TypeScript's compiler API, which TypeScript 7
// (the project's compiler) no longer ships, so it runs from a small tool package of its own,
// scripts/docs (typedoc with TypeScript 5.9, pinned by its lockfile), installed on first use.
// Any typedoc warning fails the build (treatWarningsAsErrors in typedoc.json), and so does a
// public method of PgBackground without an `@example` (read from typedoc's JSON model).
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const tools = join(root, 'scripts', 'docs');
const typedoc = join(tools, 'node_modules', 'typedoc', 'bin', 'typedoc');
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';

if (!existsSync(typedoc)) execFileSync(npm, ['ci', '--no-audit', '--no-fund'], { cwd: tools, stdio: 'inherit' });
const model = join(root, 'docs', 'api', 'model.json');
execFileSync(process.execPath, [typedoc, '--options', join(root, 'typedoc.json'), '--json', model], { cwd: root, stdio: 'inherit' });

// Every method and the constructor of PgBackground (inherited EventEmitter members aside): one
// @example on each, on a signature of its own or on the first of its overloads.
const project = JSON.parse(readFileSync(model, 'utf8'));
const facade = project.children.find((child) => child.name === 'PgBackground');
if (!facade) throw new Error('docs: PgBackground is not in the documentation');
const hasExample = (signature) => signature.comment?.blockTags?.some((tag) => tag.tag === '@example') ?? false;
const missing = facade.children
  .filter((member) => member.signatures && !member.inheritedFrom && !member.flags?.isPrivate)
  .filter((member) => !member.signatures.some(hasExample))
  .map((member) => member.name);
if (missing.length) {
  console.error(`docs: PgBackground members without an @example: ${missing.join(', ')}`);
  process.exit(1);
}
console.log(
  `docs: docs/api built; every one of PgBackground's ${facade.children.filter((m) => m.signatures && !m.inheritedFrom).length} own members has an @example`,
);
