export { PgBackground } from './api/pg-background.js';
export { PgBackgroundError, WorkerError } from './errors.js';
export type { PgBackgroundErrorCode, WorkerErrorInfo } from './errors.js';
export type { WorkerResult } from './results/worker-result.js';
export type * from './api/types.js';
