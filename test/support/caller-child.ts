// The caller process of fault-caller-dies.test.ts: it launches one worker, prints the worker's
// pid on stdout, and then waits to be killed. Run it as
//   node --conditions=pg-background-source --import tsx test/support/caller-child.ts
// with PGBG_CHILD_URL (connection string), PGBG_CHILD_ON_CALLER_EXIT ('finish' or 'rollback')
// and PGBG_CHILD_SQL (the worker's SQL).
import { PgBackground } from 'pg-background';

const url = process.env.PGBG_CHILD_URL;
const onCallerExit = process.env.PGBG_CHILD_ON_CALLER_EXIT;
const sql = process.env.PGBG_CHILD_SQL;
if (!url || !sql || (onCallerExit !== 'finish' && onCallerExit !== 'rollback')) {
  console.error('caller-child: set PGBG_CHILD_URL, PGBG_CHILD_SQL and PGBG_CHILD_ON_CALLER_EXIT (finish | rollback)');
  process.exit(2);
}

const bg = new PgBackground({ connectionString: url, onCallerExit });
const h = await bg.launch(sql);
process.stdout.write(`${h.pid}\n`);
// Wait forever: the test kills this process.
setInterval(() => {}, 1 << 30);
