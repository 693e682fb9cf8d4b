// migrate(): brings a schema up to the latest migration (migrations.ts) in one transaction,
// under install()'s advisory lock, recording each applied migration in
// <schema>.pg_background_migrations. The table says what was done, never what may be trusted:
// before anything is created, every function a migration creates is checked (ours by marker,
// owned by the current user itself, in no extension) and so is the table (ours, a plain table
// nobody else can write to or hook), whatever rows it holds; a conflict is
// PGBG_INSTALL_CONFLICT and nothing changes. A recorded migration whose function was dropped by
// hand is run again (its statements are re-runnable), so install() keeps repairing as it always
// did. The tables and views migrations create (the workers view, the journal) are checked the
// same way: ours by marker, the current user's, no extension, no triggers or rules. An optional
// migration (migrations.ts) runs only with its feature, or once the schema has it.
// Nothing here knows the connection: the caller hands in a client and rolls nothing back.
import { INSTALL_LOCK_KEY, MIGRATIONS_TABLE, MIGRATIONS_TABLE_MARKER, installSql } from '../catalog.js';
import { PgBackgroundError } from '../errors.js';
import { MIGRATIONS, functionMarker, guardedFunctions, guardedRelations, type Feature, type Migration } from './migrations.js';

/** The part of a pg.Client migrate() uses. */
export interface MigrationClient {
  query<R extends object = Record<string, unknown>>(text: string, values?: unknown[]): Promise<{ rows: R[]; rowCount: number | null }>;
}

export interface MigrateResult {
  /** Ids of the migrations applied (and recorded) by this call, in order. */
  applied: number[];
  /** Ids of recorded migrations run again because an object of theirs was missing. */
  repaired: number[];
  /** The schema's migration level afterwards: the highest recorded id. */
  version: number;
}

interface ExistingFunction {
  signature: string;
  name: string;
  owner: string;
  mine: boolean;
  comment: string | null;
  extension: string | null;
}

interface ExistingRelation {
  name: string;
  relname: string;
  kind: string;
  owner: string;
  mine: boolean;
  comment: string | null;
  extension: string | null;
  hooked: boolean;
}

interface ExistingTable {
  name: string;
  kind: string;
  owner: string;
  mine: boolean;
  comment: string | null;
  extension: string | null;
  hooked: boolean;
  inherits: boolean;
  writer: string | null;
}

/**
 * Applies the pending migrations to `schema` and commits. `quote` quotes an identifier;
 * `committing` is called just before COMMIT is sent (after it, an unanswered COMMIT leaves the
 * outcome unknown).
 */
export async function migrate(
  client: MigrationClient,
  schema: string,
  quote: (identifier: string) => string,
  committing: () => void = () => {},
  migrations: readonly Migration[] = MIGRATIONS,
  features: ReadonlySet<Feature> = new Set(),
): Promise<MigrateResult> {
  await client.query(installSql.begin);
  try {
    const result = await apply(client, schema, quote(schema), migrations, features);
    committing();
    await client.query(installSql.commit);
    return result;
  } catch (error) {
    await client.query(installSql.rollback).catch(() => {});
    throw error;
  }
}

async function apply(
  client: MigrationClient,
  schema: string,
  quoted: string,
  migrations: readonly Migration[],
  asked: ReadonlySet<Feature>,
): Promise<MigrateResult> {
  await client.query(installSql.lock, [INSTALL_LOCK_KEY.toString()]);
  const { rowCount } = await client.query(installSql.schemaExists, [schema]);
  if (!rowCount) {
    throw new PgBackgroundError('PGBG_INSTALL_FAILED', `install(): schema "${schema}" does not exist`, { sqlstate: '3F000' });
  }
  const functions = await client.query<ExistingFunction>(installSql.functions, [schema, guardedFunctions(migrations)]);
  for (const fn of functions.rows) assertOurFunction(fn, functionMarker(fn.name, migrations));
  const guarded = guardedRelations(migrations);
  const relations = await client.query<ExistingRelation>(installSql.relations, [schema, [...guarded.keys()]]);
  for (const relation of relations.rows) assertOurRelation(relation, guarded.get(relation.relname)!);
  const [table] = (await client.query<ExistingTable>(installSql.migrationsTable, [schema, MIGRATIONS_TABLE])).rows;
  if (table) assertOurTable(table);
  else for (const statement of installSql.createMigrationsTable(quoted)) await client.query(statement);

  const recorded = new Set((await client.query<{ id: number }>(installSql.recorded(quoted))).rows.map((row) => row.id));
  const present = new Set([...functions.rows.map((fn) => fn.name), ...relations.rows.map((relation) => relation.relname)]);
  const known = Math.max(0, ...migrations.map((m) => m.id));
  const newest = Math.max(0, ...recorded);
  // The features the schema has after this run: asked for, or already there.
  const features = new Set(asked);
  for (const m of migrations) if (m.feature && recorded.has(m.id)) features.add(m.feature);
  const applied: number[] = [];
  const repaired: number[] = [];
  const objectsOf = (m: Migration) => [...m.functions, ...(m.relations ?? []).map((relation) => relation.name)];
  for (const migration of migrations) {
    if (migration.feature && !features.has(migration.feature)) continue;
    const done = recorded.has(migration.id);
    const missing = objectsOf(migration).filter((name) => !present.has(name));
    if (done && !missing.length) continue;
    if (done && newest > known) {
      // A newer pg-background migrated this schema further: re-running our older definition
      // could undo its later one.
      throw new PgBackgroundError(
        'PGBG_INSTALL_FAILED',
        `install(): ${missing.map((name) => `${schema}.${name}`).join(', ')} is missing, and schema "${schema}" ` +
          `is at migration ${newest}, newer than this pg-background knows (${known}); run install() with the newer version`,
      );
    }
    for (const statement of migration.statements(quoted, features)) await client.query(statement);
    if (done) {
      repaired.push(migration.id);
    } else {
      await client.query(installSql.record(quoted), [migration.id, migration.name]);
      applied.push(migration.id);
    }
  }
  // An optional migration applied after base migrations with higher ids: each object it defined
  // ends on the newest definition (migrations.ts explains why).
  const late = migrations.filter((m) => applied.includes(m.id) && m.id < newest);
  const rerun = new Set<Migration>();
  for (const m of late) {
    for (const name of objectsOf(m)) {
      const latest = migrations.filter((other) => (recorded.has(other.id) || applied.includes(other.id)) && objectsOf(other).includes(name)).at(-1);
      if (latest && latest.id > m.id) rerun.add(latest);
    }
  }
  for (const m of [...rerun].sort((a, b) => a.id - b.id)) {
    for (const statement of m.statements(quoted, features)) await client.query(statement);
    if (!repaired.includes(m.id)) repaired.push(m.id);
  }
  return { applied, repaired, version: Math.max(newest, ...applied) };
}

/**
 * A table or view a migration creates: replaced or used only if it is ours (its marker), the
 * current user's, in no extension, of the expected kind and without triggers or rules of
 * another's (a view's own _RETURN rule is its definition, not a hook).
 */
function assertOurRelation(relation: ExistingRelation, expected: { kind: string; marker: string }): void {
  const what = expected.kind === 'v' ? 'view' : 'table';
  const whose =
    relation.extension !== null
      ? `belongs to extension "${relation.extension}"`
      : relation.kind !== expected.kind
        ? `is not a ${what} (relkind ${relation.kind})`
        : relation.comment?.startsWith(expected.marker) !== true
          ? `was not created by pg-background`
          : !relation.mine
            ? `is owned by role "${relation.owner}", not by the current user`
            : relation.hooked
              ? `has triggers or rules`
              : null;
  if (whose === null) return;
  throw new PgBackgroundError(
    'PGBG_INSTALL_CONFLICT',
    `install(): ${what} ${relation.name} already exists and ${whose}; pg-background will not replace it. ` +
      `Install into another schema ({ schema }) or drop that ${what} first.`,
  );
}

function assertOurFunction(fn: ExistingFunction, marker: string): void {
  const ours = fn.extension === null && fn.comment?.startsWith(marker) === true;
  if (ours && fn.mine) return;
  // Only the current user's own function may be replaced: one owned by another role (even one
  // we are a member of, or any role for a superuser) could be changed behind our back and would
  // run with the privileges of every worker that calls it.
  const whose =
    fn.extension !== null
      ? `belongs to extension "${fn.extension}"`
      : !ours
        ? `was not created by pg-background`
        : `is owned by role "${fn.owner}", not by the current user`;
  throw new PgBackgroundError(
    'PGBG_INSTALL_CONFLICT',
    `install(): ${fn.signature} already exists and ${whose}; pg-background will not replace it. ` +
      'Install into another schema ({ schema }) or drop that function first.',
  );
}

/**
 * The migrations table decides what install() skips: one another role owns, may write to, or
 * may hook (a trigger or rule runs with the installer's privileges) must not be used.
 */
function assertOurTable(table: ExistingTable): void {
  const whose =
    table.extension !== null
      ? `belongs to extension "${table.extension}"`
      : table.kind !== 'r'
        ? `is not a plain table (relkind ${table.kind})`
        : table.comment?.startsWith(MIGRATIONS_TABLE_MARKER) !== true
          ? `was not created by pg-background`
          : !table.mine
            ? `is owned by role "${table.owner}", not by the current user`
            : table.writer !== null
              ? `grants role "${table.writer}" more than SELECT`
              : table.hooked
                ? `has triggers or rules`
                : table.inherits
                  ? `takes part in table inheritance`
                  : null;
  if (whose === null) return;
  throw new PgBackgroundError(
    'PGBG_INSTALL_CONFLICT',
    `install(): table ${table.name} already exists and ${whose}; pg-background will not use it. ` +
      'Install into another schema ({ schema }) or drop that table first.',
  );
}
