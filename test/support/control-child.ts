// The owning process of sql-control.test.ts: it launches the workers of PGBG_CHILD_WORKERS (a
// JSON array of { sql, label }), prints one JSON line { cookies, pids } once they run, then one
// line { label, state, sqlstate } as each ends, and waits to be killed. Run it as
//   node --conditions=pg-background-source --import tsx test/support/control-child.ts
// with PGBG_CHILD_URL (connection string) and PGBG_CHILD_WORKERS.
import { PgBackground } from 'pg-background';

const url = process.env.PGBG_CHILD_URL;
const workers = JSON.parse(process.env.PGBG_CHILD_WORKERS ?? 'null') as { sql: string; label: string }[] | null;
if (!url || !Array.isArray(workers)) {
  console.error('control-child: set PGBG_CHILD_URL and PGBG_CHILD_WORKERS');
  process.exit(2);
}

const bg = new PgBackground({ connectionString: url });
const handles = await Promise.all(workers.map(({ sql, label }) => bg.launch(sql, { label })));
process.stdout.write(`${JSON.stringify({ cookies: handles.map((h) => h.cookie.toString()), pids: handles.map((h) => h.pid) })}\n`);
for (const h of handles) {
  void bg.wait(h).then(async () => {
    const { state } = await bg.info(h);
    const error = await bg.errorInfo(h);
    process.stdout.write(`${JSON.stringify({ label: h.label, state, sqlstate: error?.sqlstate ?? null })}\n`);
  });
}
// Wait to be killed.
setInterval(() => {}, 1 << 30);
