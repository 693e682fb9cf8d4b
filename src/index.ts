export { PgBackground } from './api/pg-background.js';
export { PgBackgroundError, WorkerError } from './errors.js';
// The state vocabulary (frozen): what a job layer, a journal's schema or a dashboard maps from.
export { CANCEL_REASONS, WORKER_STATES } from './core/states.js';
export type { PgBackgroundErrorCode, WorkerErrorInfo } from './errors.js';
// The application_name of a connection running a worker (pg_stat_activity), as SPEC fixes it.
export { workerTag } from './store/worker-identity.js';
export type { WorkerResult } from './results/worker-result.js';
export type * from './api/types.js';
