// Each test file gets its own database on the test server (DATABASE_URL, which `npm test` points
// at a throwaway server when unset). When the file is done we check that nothing of ours is
// still connected to it, then drop it.
import { after, before } from 'node:test';
import { randomBytes } from 'node:crypto';
import { basename } from 'node:path';
import pg from 'pg';
import { PgBackground, type PgBackgroundOptions } from 'pg-background';

export interface TestDatabase {
  /** Connection string of this file's database (superuser). */
  readonly url: string;
  readonly name: string;
  /** A query on a separate admin connection to this database. */
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values?: unknown[]): Promise<R[]>;
  /** A PgBackground on this database, closed after the file if the test did not close it. */
  background(options?: PgBackgroundOptions): PgBackground;
  /** A plain pg client on this database, ended after the file. */
  client(config?: pg.ClientConfig): Promise<pg.Client>;
  /** Backends connected to this database other than the admin connection. */
  backends(): Promise<{ pid: number; application_name: string; state: string | null; wait_event: string | null; query: string }[]>;
}

export function serverUrl(): string {
  const url = process.env.DATABASE_URL;
  if (!url) throw new Error('DATABASE_URL is not set: run the tests with `npm test`');
  return url;
}

export function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = '/' + encodeURIComponent(database);
  return parsed.toString();
}

export interface DatabaseHooks {
  /** Runs once the database exists, before the file's tests. */
  setup?(db: TestDatabase): Promise<void>;
  /** Runs after the file's tests, before the leak check and the drop. */
  teardown?(db: TestDatabase): Promise<void>;
}

/** Registers before/after hooks for this test file and returns its database. */
export function useDatabase(file: string, hooks: DatabaseHooks = {}): TestDatabase {
  const name = `pgbg_test_${basename(file)
    .replace(/\.test\.[jt]s$/, '')
    .replace(/\W/g, '_')}_${randomBytes(3).toString('hex')}`.toLowerCase();
  const url = withDatabase(serverUrl(), name);
  let admin: pg.Client | undefined;
  const instances: PgBackground[] = [];
  const clients: pg.Client[] = [];

  before(async () => {
    const server = new pg.Client(serverUrl());
    await server.connect();
    try {
      await server.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`);
    } finally {
      await server.end();
    }
    admin = new pg.Client({ connectionString: url, application_name: 'pgbg-test-admin' });
    await admin.connect();
    await hooks.setup?.(database);
  });

  after(async () => {
    await Promise.all(instances.map((bg) => bg.close({ cancel: true })));
    await hooks.teardown?.(database);
    await Promise.all(clients.map((c) => c.end().catch(() => {})));
    // Our connections end asynchronously on the server side: give them a moment to go.
    let left: unknown[] = [];
    for (let i = 0; i < 100; i++) {
      left = await database.backends();
      if (left.length === 0) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await admin?.end();
    const server = new pg.Client(serverUrl());
    await server.connect();
    try {
      await server.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`);
    } finally {
      await server.end();
    }
    if (left.length > 0) throw new Error(`connections left on ${name} after the tests: ${JSON.stringify(left)}`);
  });

  const database: TestDatabase = {
    url,
    name,
    async query(text, values) {
      if (!admin) throw new Error('database not ready: call from inside a test');
      return (await admin.query(text, values)).rows;
    },
    background(options) {
      const bg = new PgBackground({ connectionString: url, ...options });
      instances.push(bg);
      return bg;
    },
    async client(config) {
      const client = new pg.Client({ connectionString: url, application_name: 'pgbg-test-client', ...config });
      client.on('error', () => {});
      await client.connect();
      clients.push(client);
      return client;
    },
    async backends() {
      return database.query(
        `SELECT pid, application_name, state, wait_event, query FROM pg_stat_activity
          WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'`,
      );
    },
  };
  return database;
}

/** Polls `check` until it returns a truthy value (or throws after `timeoutMs`). */
export async function until<T>(check: () => T | Promise<T>, what: string, timeoutMs = 10_000): Promise<Exclude<T, false | null | undefined | 0 | ''>> {
  const deadline = Date.now() + timeoutMs;
  for (let delay = 2; ; delay = Math.min(delay * 2, 50)) {
    const value = await check();
    if (value) return value as Exclude<T, false | null | undefined | 0 | ''>;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, delay));
  }
}
