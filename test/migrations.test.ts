// install() as numbered migrations: the version recorded in <schema>.pg_background_migrations,
// a second install() that changes nothing, concurrent installs serialised by the advisory lock,
// upgrades that add rows, the repair of a function dropped by hand, and a migrations table
// that is not install()'s own (another role's, writable or hookable by others, forged rows)
// refused with PGBG_INSTALL_CONFLICT before anything is created.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { until, useDatabase } from './support/database.js';
import { migrate } from '../src/store/migrate.js';
import { FUNCTION_MARKER, MIGRATIONS, type Migration } from '../src/store/migrations.js';

const q = pg.escapeIdentifier;
/** What a plain install() records: every migration but the optional ones (the journal). */
const BASE = MIGRATIONS.filter((m) => !m.feature).map(({ id, name }) => ({ id, name }));
/** An id after every migration this pg-background knows. */
const NEXT = Math.max(...MIGRATIONS.map((m) => m.id)) + 1;
const LAST = NEXT - 1;
/** The journal's migrations (install({ journal: true })): 4 and 5. */
const JOURNAL = MIGRATIONS.filter((m) => m.feature === 'journal').map((m) => m.id);
const other = `pgbg_migrations_other_${randomBytes(3).toString('hex')}`;
const db = useDatabase(import.meta.filename, {
  async setup(db) {
    await db.query(`CREATE ROLE ${q(other)} NOLOGIN`);
  },
  async teardown(db) {
    await db.query(`DROP OWNED BY ${q(other)} CASCADE`);
    await db.query(`DROP ROLE ${q(other)}`);
  },
});

/** The recorded migrations of a schema, with the row versions (xmin) to tell a rewrite. */
async function recorded(schema: string) {
  return db.query<{ id: number; name: string; applied_at: Date; xmin: string }>(
    `SELECT id, name, applied_at, xmin::text FROM ${q(schema)}.pg_background_migrations ORDER BY id`,
  );
}

/** The progress functions of a schema, with their row version in pg_proc. */
async function progressFunctions(schema: string) {
  return db.query<{ oid: number; xmin: string; owner: string; comment: string | null; prosrc: string }>(
    `SELECT p.oid::int, p.xmin::text, pg_get_userbyid(p.proowner) AS owner, obj_description(p.oid, 'pg_proc') AS comment, p.prosrc
       FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
      WHERE n.nspname = $1 AND p.proname = 'pg_background_progress'`,
    [schema],
  );
}

test('install() records the base migrations in a table of its schema, owned by the current user and marked', async () => {
  await db.query('CREATE SCHEMA fresh');
  const bg = db.background();
  const before = new Date((await db.query<{ now: Date }>('SELECT now()'))[0]!.now);
  await bg.install({ schema: 'fresh' });
  const rows = await recorded('fresh');
  assert.deepEqual(
    rows.map(({ id, name }) => ({ id, name })),
    BASE,
  );
  assert.deepEqual(BASE.slice(0, 2), [
    { id: 1, name: 'progress function' },
    { id: 2, name: 'workers view' },
  ]);
  assert.ok(rows[0]!.applied_at >= before, `applied_at ${rows[0]!.applied_at.toISOString()} is before the install`);
  const [table] = await db.query(
    "SELECT pg_get_userbyid(relowner) AS owner, relkind, obj_description(oid, 'pg_class') AS comment FROM pg_class WHERE oid = 'fresh.pg_background_migrations'::regclass",
  );
  assert.deepEqual(table, {
    owner: new URL(db.url).username,
    relkind: 'r',
    comment: 'pg-background migrations: one row per schema migration install() applied',
  });
  const [fn] = await progressFunctions('fresh');
  assert.equal(fn!.comment, `${FUNCTION_MARKER} v1: reports progress to the pg-background caller`);
  const h = await bg.launch("SELECT fresh.pg_background_progress(33, 'a third')");
  await bg.wait(h);
  assert.deepEqual(await bg.getProgress(h), { pct: 33, message: 'a third' });
  await bg.close();
});

test('a second install() changes nothing: no new row, neither the row nor the function rewritten', async () => {
  await db.query('CREATE SCHEMA again');
  const bg = db.background();
  await bg.install({ schema: 'again' });
  const rows = await recorded('again');
  const functions = await progressFunctions('again');
  await bg.install({ schema: 'again' });
  await bg.install({ schema: 'again' });
  assert.deepEqual(await recorded('again'), rows);
  assert.deepEqual(await progressFunctions('again'), functions); // same oid and same pg_proc row version
  await bg.close();
});

test('concurrent installs from separate connections wait for the lock in turn: one row, one function', async () => {
  await db.query('CREATE SCHEMA together');
  const locker = await db.client();
  await locker.query('SELECT pg_advisory_lock(7302948117394112)');
  const instances = Array.from({ length: 4 }, () => db.background());
  const installs = instances.map((bg) =>
    bg.install({ schema: 'together' }).then(
      () => 'installed',
      (error: Error) => error.message,
    ),
  );
  await until(async () => {
    const [row] = await db.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    );
    return row!.n === 4;
  }, 'all four installs waiting for the advisory lock');
  await locker.query('SELECT pg_advisory_unlock(7302948117394112)');
  assert.deepEqual(await Promise.all(installs), ['installed', 'installed', 'installed', 'installed']);
  assert.deepEqual(
    (await recorded('together')).map((r) => r.id),
    BASE.map((m) => m.id),
  );
  assert.equal((await progressFunctions('together')).length, 1);
  await Promise.all(instances.map((bg) => bg.close()));
});

test('a progress function dropped by hand while migration 1 stays recorded is re-created; the record is kept', async () => {
  await db.query('CREATE SCHEMA dropped');
  const bg = db.background();
  await bg.install({ schema: 'dropped' });
  const rows = await recorded('dropped');
  await db.query('DROP FUNCTION dropped.pg_background_progress(integer, text)');
  await bg.install({ schema: 'dropped' });
  assert.deepEqual(await recorded('dropped'), rows);
  const [fn] = await progressFunctions('dropped');
  assert.equal(fn!.comment, `${FUNCTION_MARKER} v1: reports progress to the pg-background caller`);
  const h = await bg.launch("SELECT dropped.pg_background_progress(5, 'back')");
  await bg.wait(h);
  assert.deepEqual(await bg.getProgress(h), { pct: 5, message: 'back' });
  await bg.close();
});

test('a schema installed before migrations existed (function, no table) is adopted: migration 1 recorded', async () => {
  await db.query('CREATE SCHEMA legacy');
  const bg = db.background();
  await bg.install({ schema: 'legacy' });
  await db.query('DROP TABLE legacy.pg_background_migrations'); // what an older pg-background left
  const [before] = await progressFunctions('legacy');
  await bg.install({ schema: 'legacy' });
  assert.deepEqual(
    (await recorded('legacy')).map(({ id, name }) => ({ id, name })),
    BASE,
  );
  assert.equal((await progressFunctions('legacy'))[0]!.oid, before!.oid); // replaced in place, ours
  await bg.close();
});

test('an upgrade adds a row; an older pg-background then changes nothing and will not undo a newer migration', async () => {
  await db.query('CREATE SCHEMA upgraded');
  const bg = db.background();
  await bg.install({ schema: 'upgraded' });
  const two: Migration = {
    id: NEXT,
    name: 'second function',
    functions: ['pgbg_test_two'],
    statements: (schema) => [
      `CREATE OR REPLACE FUNCTION ${schema}.pgbg_test_two() RETURNS integer LANGUAGE sql AS 'SELECT 2'`,
      `COMMENT ON FUNCTION ${schema}.pgbg_test_two() IS '${FUNCTION_MARKER} test migration 2'`,
    ],
  };
  const client = await db.client();
  assert.deepEqual(await migrate(client, 'upgraded', q, () => {}, [...MIGRATIONS, two]), { applied: [NEXT], repaired: [], version: NEXT });
  assert.deepEqual(await migrate(client, 'upgraded', q, () => {}, [...MIGRATIONS, two]), { applied: [], repaired: [], version: NEXT });
  assert.deepEqual(
    (await recorded('upgraded')).map(({ id, name }) => ({ id, name })),
    [...BASE, { id: NEXT, name: 'second function' }],
  );
  assert.deepEqual(await db.query('SELECT upgraded.pgbg_test_two() AS v'), [{ v: 2 }]);
  // This pg-background does not know that migration: it leaves the newer schema as it is…
  await bg.install({ schema: 'upgraded' });
  assert.equal((await recorded('upgraded')).length, BASE.length + 1);
  // …and will not re-create migration 1's function over a schema migrated further.
  await db.query('DROP FUNCTION upgraded.pg_background_progress(integer, text)');
  await assert.rejects(bg.install({ schema: 'upgraded' }), {
    code: 'PGBG_INSTALL_FAILED',
    message:
      `install(): upgraded.pg_background_progress is missing, and schema "upgraded" is at migration ${NEXT}, ` +
      `newer than this pg-background knows (${NEXT - 1}); run install() with the newer version`,
  });
  assert.equal((await progressFunctions('upgraded')).length, 0);
  await bg.close();
});

test("a migrations table that is not install()'s own is refused with PGBG_INSTALL_CONFLICT and nothing is created", async () => {
  const table = (s: string) => `CREATE TABLE ${s}.pg_background_migrations (id integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL)`;
  /** A table made to look like install()'s own: its marker, and a row saying migration 1 ran. */
  const forged = (s: string) => [
    table(s),
    `INSERT INTO ${s}.pg_background_migrations VALUES (1, 'progress function', '2020-01-01')`,
    `COMMENT ON TABLE ${s}.pg_background_migrations IS 'pg-background migrations: one row per schema migration install() applied'`,
  ];
  const scenarios: { schema: string; setup: string[]; whose: string }[] = [
    // Another role's (the superuser is a member of every role: it is still not its own).
    {
      schema: 's_other',
      setup: [`GRANT CREATE, USAGE ON SCHEMA s_other TO ${q(other)}`, `SET ROLE ${q(other)}`, ...forged('s_other'), 'RESET ROLE'],
      whose: `is owned by role "${other}", not by the current user`,
    },
    {
      schema: 's_unmarked',
      setup: [table('s_unmarked'), "INSERT INTO s_unmarked.pg_background_migrations VALUES (1, 'x', '2020-01-01')"],
      whose: 'was not created by pg-background',
    },
    {
      schema: 's_view',
      setup: ["CREATE VIEW s_view.pg_background_migrations AS SELECT 1 AS id, 'progress function'::text AS name, '2020-01-01'::timestamptz AS applied_at"],
      whose: 'is not a plain table (relkind v)',
    },
    {
      schema: 's_writable',
      setup: [...forged('s_writable'), `GRANT SELECT, INSERT ON s_writable.pg_background_migrations TO ${q(other)}`],
      whose: `grants role "${other}" more than SELECT`,
    },
    {
      schema: 's_public',
      setup: [...forged('s_public'), 'GRANT UPDATE ON s_public.pg_background_migrations TO PUBLIC'],
      whose: 'grants role "PUBLIC" more than SELECT',
    },
    {
      schema: 's_trigger',
      setup: [
        ...forged('s_trigger'),
        'CREATE FUNCTION s_trigger.hook() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$',
        'CREATE TRIGGER hook BEFORE INSERT ON s_trigger.pg_background_migrations FOR EACH ROW EXECUTE FUNCTION s_trigger.hook()',
      ],
      whose: 'has triggers or rules',
    },
    {
      schema: 's_child',
      setup: [...forged('s_child'), 'CREATE TABLE s_child.extra () INHERITS (s_child.pg_background_migrations)'],
      whose: 'takes part in table inheritance',
    },
  ];
  const bg = db.background();
  for (const { schema, setup, whose } of scenarios) {
    await db.query(`CREATE SCHEMA ${schema}`);
    await db.query(setup.join('; '));
    const before = await db.query(`SELECT * FROM ${schema}.pg_background_migrations`);
    await assert.rejects(bg.install({ schema }), {
      code: 'PGBG_INSTALL_CONFLICT',
      message:
        `install(): table ${schema}.pg_background_migrations already exists and ${whose}; pg-background will not use it. ` +
        'Install into another schema ({ schema }) or drop that table first.',
    });
    assert.deepEqual(await progressFunctions(schema), [], `${schema}: a function was created`);
    assert.deepEqual(await db.query(`SELECT * FROM ${schema}.pg_background_migrations`), before, `${schema}: the table changed`);
  }
  // Only SELECT granted to others is fine (a monitoring role may read the versions).
  await db.query('CREATE SCHEMA s_readable');
  await bg.install({ schema: 's_readable' });
  await db.query(`GRANT SELECT ON s_readable.pg_background_migrations TO ${q(other)}`);
  await bg.install({ schema: 's_readable' });
  await bg.close();
});

test('rows claiming migration 1 ran never make install() adopt a function it did not create', async () => {
  await db.query('CREATE SCHEMA claimed');
  const bg = db.background();
  await bg.install({ schema: 'claimed' });
  const rows = await recorded('claimed');
  const refused = (whose: string) => ({
    code: 'PGBG_INSTALL_CONFLICT',
    message:
      `install(): claimed.pg_background_progress(integer,text) already exists and ${whose}; pg-background will not replace it. ` +
      'Install into another schema ({ schema }) or drop that function first.',
  });
  const create = "CREATE FUNCTION claimed.pg_background_progress(pct integer, msg text) RETURNS void LANGUAGE sql AS 'SELECT NULL'";
  // The function is swapped for one install() did not create (no marker); the record stays.
  await db.query('DROP FUNCTION claimed.pg_background_progress(integer, text)');
  await db.query(create);
  await assert.rejects(bg.install({ schema: 'claimed' }), refused('was not created by pg-background'));
  assert.equal((await progressFunctions('claimed'))[0]!.prosrc, 'SELECT NULL');
  // A marked function another role owns (it could rewrite it at will) is refused too.
  await db.query('DROP FUNCTION claimed.pg_background_progress(integer, text)');
  await db.query(`GRANT CREATE, USAGE ON SCHEMA claimed TO ${q(other)}`);
  const marker = `'${FUNCTION_MARKER} v1: reports progress to the pg-background caller'`;
  await db.query(`SET ROLE ${q(other)}; ${create}; COMMENT ON FUNCTION claimed.pg_background_progress(integer, text) IS ${marker}; RESET ROLE`);
  await assert.rejects(bg.install({ schema: 'claimed' }), refused(`is owned by role "${other}", not by the current user`));
  const [fn] = await progressFunctions('claimed');
  assert.deepEqual([fn!.owner, fn!.prosrc], [other, 'SELECT NULL']);
  assert.deepEqual(await recorded('claimed'), rows);
  await bg.close();
});

test('an optional migration: skipped by a plain install(), applied later by install({ journal: true }), then kept by plain ones', async () => {
  await db.query('CREATE SCHEMA optional');
  const bg = db.background();
  const client = await db.client();
  assert.deepEqual(await migrate(client, 'optional', q), { applied: BASE.map((m) => m.id), repaired: [], version: Math.max(...BASE.map((m) => m.id)) });
  assert.deepEqual(await db.query("SELECT to_regclass('optional.pg_background_journal') AS t"), [{ t: null }]);
  assert.deepEqual(await migrate(client, 'optional', q, () => {}, MIGRATIONS, new Set(['journal'])), { applied: JOURNAL, repaired: [], version: LAST });
  // The schema has the journal now: a plain install() neither drops nor re-creates anything…
  assert.deepEqual(await migrate(client, 'optional', q), { applied: [], repaired: [], version: LAST });
  // …and repairs the journal's objects as its own (the table dropped by hand, with the view).
  await db.query('DROP TABLE optional.pg_background_journal CASCADE');
  assert.deepEqual(await migrate(client, 'optional', q), { applied: [], repaired: [2, ...JOURNAL], version: LAST });
  assert.deepEqual(
    (
      await db.query(
        "SELECT relname::text FROM pg_class WHERE relnamespace = 'optional'::regnamespace AND relname LIKE 'pg_background_%' AND relkind IN ('r', 'v') ORDER BY 1",
      )
    ).map((r) => r.relname),
    ['pg_background_control_requests', 'pg_background_journal', 'pg_background_journal_ends', 'pg_background_migrations', 'pg_background_workers'],
  );
  await bg.close();
});

test('an optional migration applied after a later base migration that redefines its view: the view ends on the newest definition', async () => {
  await db.query('CREATE SCHEMA late');
  const client = await db.client();
  const view = MIGRATIONS.find((m) => m.id === 2)!;
  // A later base migration redefining the view: for each case, as migrations.ts asks of it.
  const redefine: Migration = {
    id: NEXT,
    name: 'view again',
    functions: [],
    relations: view.relations!,
    statements: (schema, features) => [
      ...MIGRATIONS.filter((m) => m.relations?.some((r) => r.name === 'pg_background_workers') && (!m.feature || features.has(m.feature)))
        .at(-1)!
        .statements(schema, features),
      `COMMENT ON VIEW ${schema}.pg_background_workers IS 'pg-background workers view v${NEXT} ${features.has('journal') ? 'with' : 'without'} the journal'`,
    ],
  };
  const all = [...MIGRATIONS, redefine];
  await migrate(client, 'late', q, () => {}, all);
  const comment = async () => (await db.query("SELECT obj_description('late.pg_background_workers'::regclass, 'pg_class') AS c"))[0]!.c;
  assert.equal(await comment(), `pg-background workers view v${NEXT} without the journal`);
  assert.deepEqual(await migrate(client, 'late', q, () => {}, all, new Set(['journal'])), { applied: JOURNAL, repaired: [NEXT], version: NEXT });
  assert.equal(await comment(), `pg-background workers view v${NEXT} with the journal`);
  await db.query(`INSERT INTO late.pg_background_journal (cookie, scope, state, updated_at) VALUES (77, 'root', 'stopped', now())`);
  assert.deepEqual(await db.query('SELECT cookie, state FROM late.pg_background_workers WHERE cookie = 77'), [{ cookie: '77', state: 'stopped' }]);
});
