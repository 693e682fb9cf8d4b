// The launching process of journal.test.ts's kill -9 acceptance: a journaling PgBackground
// launches one worker, prints its cookie and pid on stdout, and waits to be killed. Run it as
//   node --conditions=pg-background-source --import tsx test/support/journal-child.ts
// with PGBG_CHILD_URL (connection string) and PGBG_CHILD_SQL (the worker's SQL).
import { PgBackground } from 'pg-background';

const url = process.env.PGBG_CHILD_URL;
const sql = process.env.PGBG_CHILD_SQL;
if (!url || !sql) {
  console.error('journal-child: set PGBG_CHILD_URL and PGBG_CHILD_SQL');
  process.exit(2);
}

const bg = new PgBackground({ connectionString: url, journal: true });
const h = await bg.launch(sql, { label: 'orphan' });
process.stdout.write(`${h.cookie} ${h.pid}\n`);
// Wait forever: the test kills this process.
setInterval(() => {}, 1 << 30);
