// A login role of a test file's own, for what another role may not do (signal the superuser's
// workers): created before the file's tests and dropped after them (roles are the server's, not
// the database's, hence the pid in its name).
import type { DatabaseHooks } from './database.js';

const PASSWORD = 'outsider-pw';

export interface Outsider {
  readonly name: string;
  /** useDatabase's hooks that create and drop the role. */
  readonly hooks: Required<DatabaseHooks>;
  /** `url` with the outsider's login instead of its own. */
  url(url: string): string;
}

export function outsider(prefix: string): Outsider {
  const name = `${prefix}_${process.pid}`;
  return {
    name,
    hooks: {
      async setup(db) {
        await db.query(`CREATE ROLE ${name} LOGIN PASSWORD '${PASSWORD}'`);
      },
      async teardown(db) {
        await db.query(`DROP ROLE IF EXISTS ${name}`);
      },
    },
    url(url) {
      const parsed = new URL(url);
      parsed.username = name;
      parsed.password = PASSWORD;
      return parsed.toString();
    },
  };
}
