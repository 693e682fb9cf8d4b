// The instance's options as the facade validated them (frozen).
import type pg from 'pg';
import type { RowMode, TypeParsers } from '../api/types.js';

export interface InstanceOptions {
  readonly connection: Readonly<pg.ClientConfig>;
  readonly maxWorkers: number;
  readonly defaultQueueSize: number;
  readonly workerTimeoutMs: number;
  readonly whenFull: 'error' | 'queue';
  readonly retentionMs: number;
  /** At most this many finished workers stay listed (Infinity: no count limit). */
  readonly maxRetained: number;
  readonly settings: Readonly<Record<string, string>>;
  readonly role: string | null;
  readonly rowMode: RowMode;
  readonly types: TypeParsers | undefined;
  readonly maxIdle: number;
  readonly minIdle: number;
  readonly idleTimeoutMs: number;
  readonly cancelGraceMs: number;
  readonly livenessTimeoutMs: number;
  /** Deadline of every request to the server that is not a task: livenessTimeoutMs, or 30 s. */
  readonly controlTimeoutMs: number;
  readonly onCallerExit: 'finish' | 'rollback';
  /** Who workers run as until their connection says: the login role of the options. */
  readonly loginUser: string;
  /** The cluster-wide cap (clusterMaxWorkers, clusterKey), or null when off. */
  readonly cluster: { readonly max: number; readonly key: string } | null;
  /** Connections carry their tag as application_name (store/worker-identity.ts). */
  readonly tagConnections: boolean;
}
