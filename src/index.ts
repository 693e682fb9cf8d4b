export { PgBackground } from './api/pg-background.js';
// The operator's view from a process that did not launch the workers (the CLI sits on it).
export { WorkerMonitor } from './monitor/worker-monitor.js';
export { PgBackgroundError, WorkerError } from './errors.js';
// The state vocabulary (frozen): what a job layer, a journal's schema or a dashboard maps from.
export { CANCEL_REASONS, WORKER_STATES } from './core/states.js';
export type { PgBackgroundErrorCode, PgBackgroundErrorDetails, WorkerErrorInfo } from './errors.js';
// The application_name of a connection running a worker (pg_stat_activity), as SPEC fixes it.
export { workerTag } from './store/worker-identity.js';
export type { WorkerResult } from './results/worker-result.js';
export type * from './api/types.js';
export type { MonitorCancelOptions, MonitorListOptions, MonitorRef, MonitoredWorker, WorkerMonitorOptions } from './monitor/worker-monitor.js';
