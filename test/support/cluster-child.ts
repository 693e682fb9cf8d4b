// A process of cluster-cap.test.ts: one PgBackground with a cluster-wide cap (whenFull 'queue'),
// driven over stdin. "go" starts the launches: PGBG_CHILD_COUNT of them at once, or, with 0, one
// after another in a tight loop (the next launch as soon as the last one's SQL is on its way)
// until "stop". It prints "ready" once its instance exists, "launched <ms waited>" per launch,
// then "done <workers that ended stopped>" and exits after close(). Run it as
//   node --conditions=pg-background-source --import tsx test/support/cluster-child.ts
// with PGBG_CHILD_URL, PGBG_CHILD_SQL, PGBG_CHILD_COUNT, PGBG_CLUSTER_MAX, PGBG_CLUSTER_KEY and
// optionally PGBG_CHILD_ON_CALLER_EXIT ('finish', the default, or 'rollback').
import { createInterface } from 'node:readline';
import { PgBackground, type WorkerHandle } from 'pg-background';

const env = process.env;
const url = env.PGBG_CHILD_URL;
const sql = env.PGBG_CHILD_SQL;
const count = Number(env.PGBG_CHILD_COUNT);
const max = Number(env.PGBG_CLUSTER_MAX);
if (!url || !sql || !Number.isInteger(count) || !Number.isInteger(max) || !env.PGBG_CLUSTER_KEY) {
  console.error('cluster-child: set PGBG_CHILD_URL, PGBG_CHILD_SQL, PGBG_CHILD_COUNT, PGBG_CLUSTER_MAX and PGBG_CLUSTER_KEY');
  process.exit(2);
}
const onCallerExit = env.PGBG_CHILD_ON_CALLER_EXIT === 'rollback' ? 'rollback' : 'finish';
const bg = new PgBackground({
  connectionString: url,
  clusterMaxWorkers: max,
  clusterKey: env.PGBG_CLUSTER_KEY,
  whenFull: 'queue',
  maxWorkers: Math.max(count, 2),
  onCallerExit,
});

const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const next = async () => (await lines.next()).value as string | undefined;
let stopped = false;

async function launchOne(): Promise<WorkerHandle> {
  const start = Date.now();
  const handle = await bg.launch(sql!);
  process.stdout.write(`launched ${Date.now() - start}\n`);
  return handle;
}

process.stdout.write('ready\n');
if ((await next()) !== 'go') process.exit(3);
const handles: WorkerHandle[] = [];
if (count > 0) {
  handles.push(...(await Promise.all(Array.from({ length: count }, launchOne))));
} else {
  void next().then(() => (stopped = true));
  while (!stopped) handles.push(await launchOne());
}
await Promise.all(handles.map((h) => bg.wait(h)));
const ok = (await bg.list()).filter((w) => w.state === 'stopped').length;
process.stdout.write(`done ${ok}\n`);
await bg.close();
process.exit(0);
