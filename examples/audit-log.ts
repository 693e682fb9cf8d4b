// Run: npx tsx scripts/with-postgres.ts -- node --conditions=pg-background-source --import tsx examples/audit-log.ts
//
// Autonomous audit log: the application's transaction rolls back, yet the audit row written
// through a background worker stays, because the worker commits in its own transaction on its
// own connection (pg_background's classic use).
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { PgBackground } from 'pg-background';

const url = process.env.DATABASE_URL;
if (!url) throw new Error('Set DATABASE_URL (or run through scripts/with-postgres.ts)');

const schema = pg.escapeIdentifier(`audit_example_${randomBytes(3).toString('hex')}`);
const app = new pg.Client({ connectionString: url });
await app.connect();
await app.query(`
  CREATE SCHEMA ${schema};
  CREATE TABLE ${schema}.accounts (id int PRIMARY KEY, balance int NOT NULL);
  INSERT INTO ${schema}.accounts VALUES (1, 300);
  CREATE TABLE ${schema}.audit_log (id serial, at timestamptz DEFAULT now(), actor text, action text)`);

const bg = new PgBackground({ connectionString: url });

/** Writes an audit row that commits whatever happens to the caller's transaction. */
async function audit(actor: string, action: string): Promise<void> {
  // Parameters, never string interpolation. Reading the (empty) result to the end waits for
  // the commit and throws a WorkerError if the insert failed.
  const h = await bg.launch({ text: `INSERT INTO ${schema}.audit_log (actor, action) VALUES ($1, $2)`, values: [actor, action] }, { label: 'audit' });
  await bg.result(h).toArray();
}

// The caller's transaction: record the attempt, then fail and roll back. The worker is another
// session: it does not see the caller's uncommitted update, and (writing to another table) it
// takes no lock the caller holds, so waiting for it inside the transaction cannot deadlock.
try {
  await app.query('BEGIN');
  await app.query(`UPDATE ${schema}.accounts SET balance = balance - 500 WHERE id = 1`);
  await audit('alice', 'withdraw 500 from account 1');
  const { rows } = await app.query<{ balance: number }>(`SELECT balance FROM ${schema}.accounts WHERE id = 1`);
  if (rows[0]!.balance < 0) throw new Error('insufficient funds');
  await app.query('COMMIT');
} catch (error) {
  await app.query('ROLLBACK');
  console.log(`caller's transaction rolled back: ${(error as Error).message}`);
}

const balance = await app.query(`SELECT balance FROM ${schema}.accounts WHERE id = 1`);
const log = await app.query(`SELECT actor, action FROM ${schema}.audit_log ORDER BY id`);
console.log(`balance of account 1: ${balance.rows[0].balance} (unchanged)`);
console.log(`audit rows: ${log.rowCount}`);
for (const row of log.rows) console.log(`  ${row.actor}: ${row.action}`);

await bg.close();
await app.query(`DROP SCHEMA ${schema} CASCADE`);
await app.end();
