import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { WorkerProgressEvent } from 'pg-background';
import { until, useDatabase } from './support/database.js';

const db = useDatabase(import.meta.filename);

test('progress reported from worker SQL is visible live through getProgress() and list()', async () => {
  const bg = db.background();
  await bg.install();
  const events: WorkerProgressEvent[] = [];
  bg.on('progress', (event) => events.push(event));
  const h = await bg.launch(
    "SELECT pg_background_progress(25, 'quarter'); SELECT pg_sleep(0.2); SELECT pg_background_progress(50, 'Halfway'); SELECT pg_sleep(30); SELECT 'finished'::text AS s",
    { label: 'report' },
  );
  assert.equal(await bg.getProgress(h), null);
  const live = await until(async () => {
    const progress = await bg.getProgress(h);
    return progress?.pct === 50 && progress;
  }, 'progress 50');
  assert.deepEqual(live, { pct: 50, message: 'Halfway' });
  const [info] = await bg.list();
  assert.equal(info!.state, 'running');
  assert.deepEqual(info!.progress, { pct: 50, message: 'Halfway' });
  assert.deepEqual(
    events.map((e) => [e.label, e.progress.pct, e.progress.message, e.handle.pid]),
    [
      ['report', 25, 'quarter', h.pid],
      ['report', 50, 'Halfway', h.pid],
    ],
  );
  await bg.cancel(h);
  // The last progress stays after the worker finished.
  assert.deepEqual(await bg.getProgress(h), { pct: 50, message: 'Halfway' });
  await bg.close();
});

test('progress arrives whatever client_min_messages the role or task uses', async () => {
  const bg = db.background({ settings: { client_min_messages: 'error' } });
  await bg.install();
  const h = await bg.launch("SELECT pg_background_progress(100, 'done'); SELECT 1 AS one");
  assert.deepEqual(await bg.result(h).toArray(), [{ one: 1 }]);
  assert.deepEqual(await bg.getProgress(h), { pct: 100, message: 'done' });
  await bg.close();
});

test('install() is idempotent, takes a schema, and the function validates pct', async () => {
  await db.query('CREATE SCHEMA tools');
  const bg = db.background();
  await bg.install({ schema: 'tools' });
  await Promise.all([bg.install({ schema: 'tools' }), bg.install({ schema: 'tools' })]);
  const [fn] = await db.query(
    "SELECT prosecdef, proconfig, obj_description(p.oid, 'pg_proc') AS comment FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE nspname = 'tools' AND proname = 'pg_background_progress'",
  );
  assert.equal(fn!.prosecdef, false); // SECURITY INVOKER
  assert.deepEqual(fn!.proconfig, ['search_path=pg_catalog, pg_temp']);
  const h = await bg.launch("SELECT tools.pg_background_progress(101, 'too far')");
  await bg.wait(h);
  assert.equal((await bg.errorInfo(h))?.sqlstate, '22023');
  const ok = await bg.launch('SELECT tools.pg_background_progress(7)');
  await bg.wait(ok);
  assert.deepEqual(await bg.getProgress(ok), { pct: 7, message: '' });
  await assert.rejects(bg.install({ schema: 'no_such_schema' }), { code: 'PGBG_INSTALL_FAILED', sqlstate: '3F000' });
  await assert.rejects(bg.install({ schema: 42 } as never), { code: 'PGBG_INVALID_ARGUMENT' });
  await bg.close();
});

test('install() never replaces a pg_background_progress it did not create', async () => {
  await db.query('CREATE SCHEMA foreign_fn');
  // Stands in for the real extension's function (or anyone else's).
  await db.query("CREATE FUNCTION foreign_fn.pg_background_progress(pct int, msg text) RETURNS void LANGUAGE sql AS 'SELECT NULL'");
  const bg = db.background();
  await assert.rejects(bg.install({ schema: 'foreign_fn' }), (error: Error & { code?: string }) => {
    assert.equal(error.code, 'PGBG_INSTALL_CONFLICT');
    assert.match(error.message, /foreign_fn\.pg_background_progress\(integer,text\) already exists and was not created by pg-background/);
    return true;
  });
  const [fn] = await db.query(
    "SELECT prosrc FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE nspname = 'foreign_fn' AND proname = 'pg_background_progress'",
  );
  assert.equal(fn!.prosrc, 'SELECT NULL');
  await bg.close();
});
