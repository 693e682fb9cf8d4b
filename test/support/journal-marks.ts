// The set-up of a journal test file: a `marks` table its workers insert into, and the journal
// installed (install({ journal: true })) on the file's database.
import { PgBackground } from 'pg-background';
import type { TestDatabase } from './database.js';

export async function journalWithMarks(db: TestDatabase): Promise<void> {
  await db.query('CREATE TABLE marks (mark text)');
  const bg = new PgBackground({ connectionString: db.url });
  await bg.install({ journal: true });
  await bg.close();
}
