// Where the command line connects, as psql decides it: --url, else DATABASE_URL, else nothing of
// ours at all, so node-postgres fills every field from the PG* variables (PGHOST, PGPORT,
// PGUSER, PGPASSWORD, PGDATABASE, PGSSLMODE, PGAPPNAME, ~/.pgpass) with psql's defaults.
// And the one rule about output: no password is ever printed. Every line the CLI writes about
// the connection goes through redact(), which hides the password of any URL in it, and every
// secret it knows of (the URL's password, raw and decoded, and PGPASSWORD) wherever it appears.
import { parse as parseConnectionString } from 'pg-connection-string';
import type { WorkerMonitorOptions } from '../monitor/worker-monitor.js';
import { UsageError } from './args.js';

export interface ResolvedConnection {
  options: WorkerMonitorOptions;
  /** Where it connects, for the watch header: user@host:port/database, never a password. */
  target: string;
  /** Strings that must never reach the terminal. */
  secrets: string[];
}

export function resolveConnection(url: string | undefined, env: NodeJS.ProcessEnv): ResolvedConnection {
  const secrets = env.PGPASSWORD ? [env.PGPASSWORD] : [];
  const source = url !== undefined ? '--url' : env.DATABASE_URL ? 'DATABASE_URL' : null;
  const connectionString = url ?? (env.DATABASE_URL || undefined);
  if (source === null || connectionString === undefined) {
    const user = env.PGUSER ?? env.USER ?? '';
    const target = `${user}@${env.PGHOST ?? 'localhost'}:${env.PGPORT ?? '5432'}/${env.PGDATABASE ?? user}`;
    return { options: {}, target, secrets };
  }
  let parsed: ReturnType<typeof parseConnectionString>;
  try {
    parsed = parseConnectionString(connectionString);
  } catch (error) {
    // The string itself may hold the password: only its redacted form is shown.
    throw new UsageError(
      `${source} is not a valid connection string (${redact(hideUserinfoPassword(connectionString), secrets)}): ${(error as Error).message}`,
    );
  }
  if (parsed.password) secrets.push(parsed.password);
  const raw = /^[a-z][a-z0-9+.-]*:\/\/[^/@]*?:([^@/]*)@/i.exec(connectionString)?.[1];
  if (raw) secrets.push(raw);
  const user = parsed.user ?? env.PGUSER ?? env.USER ?? '';
  const target = `${user}@${parsed.host ?? env.PGHOST ?? 'localhost'}:${parsed.port ?? env.PGPORT ?? '5432'}/${parsed.database ?? env.PGDATABASE ?? user}`;
  return { options: { connectionString }, target, secrets };
}

/**
 * A connection string that failed to parse, with everything between its user's `:` and its last
 * `@` hidden: unparsed, its password may hold spaces, tabs or `@` (pg-connection-string accepts
 * them unencoded), which the URL rule of redact() stops at.
 */
function hideUserinfoPassword(connectionString: string): string {
  return connectionString.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:@/]*):.*@([^@]*)$/is, '$1:***@$2').replace(/([?&]password=)[^&]*/gi, '$1***');
}

/** `text` with every URL's password, every `password=` parameter and every known secret replaced by ***. */
export function redact(text: string, secrets: readonly string[]): string {
  let out = text.replace(/([a-z][a-z0-9+.-]*:\/\/[^\s/@:]*):[^\s@]*@/gi, '$1:***@').replace(/(\bpassword\s*=\s*)('[^']*'|[^\s&]+)/gi, '$1***');
  for (const secret of secrets) {
    if (secret.length > 0) out = out.split(secret).join('***');
  }
  return out;
}
