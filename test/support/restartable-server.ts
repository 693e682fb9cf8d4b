// A throwaway server of one test file's own, which that file may stop, crash and start again
// (the suite's shared server must never be restarted), with an admin connection that is
// reopened after a restart.
import { after, before } from 'node:test';
import pg from 'pg';
import { startLocalPostgres, type LocalPostgres, type LocalPostgresOptions } from '../../scripts/local-postgres.js';

export interface RestartableServer {
  /** The server (set once the file's `before` hooks ran). */
  readonly server: LocalPostgres;
  /** A query on the admin connection, reopened after a restart. */
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values?: unknown[]): Promise<R[]>;
  /** The server went down: the next query opens a new admin connection (its 'end' may not have come yet). */
  dropAdmin(): void;
}

/** Registers the file's before/after hooks: the server starts before its tests and is destroyed after. */
export function useRestartableServer(options?: LocalPostgresOptions): RestartableServer {
  let server: LocalPostgres | undefined;
  let admin: pg.Client | null = null;
  before(async () => {
    server = await startLocalPostgres(options);
  });
  after(async () => {
    await admin?.end().catch(() => {});
    await server?.destroy();
  });
  return {
    get server() {
      if (!server) throw new Error('the restartable server is not started yet (used outside a test?)');
      return server;
    },
    async query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values?: unknown[]): Promise<R[]> {
      if (!admin) {
        const client = new pg.Client({ connectionString: this.server.url, application_name: 'pgbg-test-admin' });
        client.on('error', () => {});
        client.on('end', () => {
          if (admin === client) admin = null;
        });
        await client.connect();
        admin = client;
      }
      return (await admin.query<R>(text, values)).rows;
    },
    dropAdmin() {
      admin = null;
    },
  };
}
