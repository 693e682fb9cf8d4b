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
  // The string's passwords as written (raw: percent-encoded, or unencoded with spaces or `@` in
  // them), known secrets before anything is printed, even that the string does not parse.
  secrets.push(...rawPasswords(connectionString));
  let parsed: ReturnType<typeof parseConnectionString>;
  try {
    parsed = parseConnectionString(connectionString);
  } catch (error) {
    throw new UsageError(`${source} is not a valid connection string (${redact(connectionString, secrets)}): ${(error as Error).message}`);
  }
  if (parsed.password) secrets.push(parsed.password);
  const user = parsed.user ?? env.PGUSER ?? env.USER ?? '';
  const target = `${user}@${parsed.host ?? env.PGHOST ?? 'localhost'}:${parsed.port ?? env.PGPORT ?? '5432'}/${parsed.database ?? env.PGDATABASE ?? user}`;
  return { options: { connectionString }, target, secrets };
}

/**
 * The passwords a connection string holds as written: its userinfo's (everything between the
 * user's `:` and the last `@`) and its `password=` parameter's (up to the next `&`).
 */
function rawPasswords(connectionString: string): string[] {
  const userinfo = /^[a-z][a-z0-9+.-]*:\/\/[^:@/]*:(.*)@[^@]*$/is.exec(connectionString)?.[1];
  const parameter = /[?&]password=([^&]*)/i.exec(connectionString)?.[1];
  return [userinfo, parameter].filter((secret): secret is string => !!secret);
}

/** `text` with every URL's password, every `password=` parameter and every known secret replaced by ***. */
export function redact(text: string, secrets: readonly string[]): string {
  // The known secrets first, whole: the URL rule below stops at whitespace and at the first `@`,
  // and would cut one that holds either, leaving its rest to be shown.
  let out = text;
  for (const secret of secrets) {
    if (secret.length > 0) out = out.split(secret).join('***');
  }
  return out.replace(/([a-z][a-z0-9+.-]*:\/\/[^\s/@:]*):[^\s@]*@/gi, '$1:***@').replace(/(\bpassword\s*=\s*)('[^']*'|[^\s&]+)/gi, '$1***');
}
