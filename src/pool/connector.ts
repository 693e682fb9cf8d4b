// Opens worker connections. With onCallerExit 'rollback' each one asks the server to watch for
// our death (client_connection_check_interval, PostgreSQL 14+, as a startup option); where that
// cannot take effect (an older server, a pooler that refuses startup options) it says so once, as
// a warning, and connects without it.
import pg from 'pg';
import { WorkerConnection } from './worker-connection.js';

/** How often the server checks for our death with onCallerExit 'rollback'. */
export const CALLER_CHECK_INTERVAL_MS = 1000;

export class WorkerConnector {
  readonly #config: Readonly<pg.ClientConfig>;
  readonly #timeoutMs: number;
  /** onCallerExit 'rollback' needs client_connection_check_interval (PostgreSQL 14+). */
  #callerCheck: 'wanted' | 'unsupported' | 'off';

  constructor(config: Readonly<pg.ClientConfig>, timeoutMs: number, onCallerExit: 'finish' | 'rollback') {
    this.#config = config;
    this.#timeoutMs = timeoutMs;
    this.#callerCheck = onCallerExit === 'rollback' ? 'wanted' : 'off';
  }

  /** A new worker connection; with onCallerExit 'rollback', one the server watches for our death. */
  async open(): Promise<WorkerConnection> {
    const config = this.#config;
    const timeoutMs = this.#timeoutMs;
    if (this.#callerCheck !== 'wanted') return WorkerConnection.open(config, timeoutMs);
    try {
      const connection = await WorkerConnection.open(withStartupSetting(config, 'client_connection_check_interval', CALLER_CHECK_INTERVAL_MS), timeoutMs);
      if (connection.callerCheckMs !== CALLER_CHECK_INTERVAL_MS) {
        this.#unsupported(
          `onCallerExit: 'rollback' did not take effect (client_connection_check_interval is ${connection.callerCheckMs ?? 'missing'} on worker connections; a pooler or the server may drop startup options): workers of a process that dies finish and commit`,
        );
      }
      return connection;
    } catch (error) {
      const tooOld = error instanceof pg.DatabaseError && error.code === '42704' && /client_connection_check_interval/.test(error.message);
      // PgBouncer refuses the startup packet's `options` unless told to ignore them.
      const refused = error instanceof pg.DatabaseError && error.code === '08P01' && /unsupported startup parameter/i.test(error.message);
      if (!tooOld && !refused) throw error;
      this.#unsupported(
        tooOld
          ? "onCallerExit: 'rollback' needs PostgreSQL 14 or later (client_connection_check_interval); on this server, workers of a process that dies finish and commit"
          : `onCallerExit: 'rollback' did not take effect (${error.message}: a connection pooler refuses startup options); workers of a process that dies finish and commit`,
      );
      return WorkerConnection.open(config, timeoutMs);
    }
  }

  /** Once per instance: from now on connections are opened without the check. */
  #unsupported(message: string): void {
    if (this.#callerCheck !== 'wanted') return;
    this.#callerCheck = 'unsupported';
    process.emitWarning(message, { code: 'PGBG_CALLER_CHECK_UNSUPPORTED' });
  }
}

/** The config with `-c name=value` added to its startup options (the connection string, if any, was resolved into them). */
function withStartupSetting(config: Readonly<pg.ClientConfig>, name: string, value: number): pg.ClientConfig {
  return { ...config, options: [config.options, `-c ${name}=${value}`].filter(Boolean).join(' ') };
}
