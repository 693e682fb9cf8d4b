// The parts of one PgBackground instance, wired together once: the worker store, the warm pool
// and its connector, the control connection, the backend monitor (liveness and observation), the
// stopper, the cluster-wide cap (when asked for), the launcher, and the handler of control
// requests from SQL (remote control, acting through the facade's ControlActions); and the
// instance's shutdown.
// The facade holds a Runtime and delegates to it.
import { BackendObserver, backendMonitor } from '../control/backend-monitor.js';
import { JournalWriter } from '../control/journal-writer.js';
import { LISTEN_WAIT_MS, RemoteControl, type ControlActions } from '../control/remote-control.js';
import { Stopper } from '../control/stopper.js';
import { ClusterSlots } from '../pool/cluster-slots.js';
import { ConnectionPool } from '../pool/connection-pool.js';
import { WorkerConnector } from '../pool/connector.js';
import { ControlConnection } from '../pool/control-connection.js';
import { settlesWithin } from '../pool/deadline.js';
import type { LivenessMonitor } from '../pool/liveness-monitor.js';
import type { WorkerConnection } from '../pool/worker-connection.js';
import { WorkerSlots, type Admission } from '../pool/worker-slots.js';
import type { InstanceOptions } from '../store/instance-options.js';
import { JournalStore } from '../store/journal.js';
import type { Worker } from '../store/worker.js';
import { WorkerRegistry, type StoreListener } from '../store/worker-registry.js';
import { CONTROL_TAG } from '../store/worker-identity.js';
import type { WorkerStore } from '../store/worker-store.js';
import { Launcher, type LaunchEvents } from './launcher.js';

export interface Runtime {
  readonly options: InstanceOptions;
  readonly store: WorkerStore;
  readonly pool: ConnectionPool;
  readonly control: ControlConnection;
  readonly liveness: LivenessMonitor;
  readonly observer: BackendObserver;
  readonly stopper: Stopper;
  readonly launcher: Launcher;
  /** Admission to the instance's slots (pause and resume act on its queue). */
  readonly slots: Admission;
  /** The cluster-wide cap, or null when clusterMaxWorkers is off (no connection, no query). */
  readonly cluster: ClusterSlots | null;
  /** The journal's writer (journal: true), or null: then nothing of the journal runs at all. */
  readonly journal: JournalWriter | null;
  /** Hears control requests from SQL on the control connection. */
  readonly remote: RemoteControl;
}

/**
 * `events` hears what the launcher reports and, as the store's listener, every worker's change;
 * `actions` is what a control request from SQL may do to a worker of ours.
 */
export function createRuntime(options: InstanceOptions, events: LaunchEvents & StoreListener, actions: ControlActions): Runtime {
  const { connection, maxWorkers, controlTimeoutMs, maxIdle, minIdle, idleTimeoutMs } = options;
  const connector = new WorkerConnector(connection, controlTimeoutMs, options.onCallerExit);
  const pool = new ConnectionPool({ maxConnections: maxWorkers, maxIdle, minIdle, idleTimeoutMs, connect: () => connector.open() });
  const controlName = options.tagConnections ? CONTROL_TAG : 'pg-background control';
  // A direct worker's tag waits (at most LISTEN_WAIT_MS) for the control connection to listen;
  // untagged and unjournaled, no SQL function can find a worker: nothing to wait for.
  const findable = options.tagConnections || options.journal !== null;
  const listenWaitMs = findable ? Math.min(LISTEN_WAIT_MS, controlTimeoutMs) : 0;
  const control = new ControlConnection({ ...connection, application_name: controlName }, controlTimeoutMs, listenWaitMs);
  // Each start arms the observer's poll (once a second, only while a worker has run for a second).
  const registry = new WorkerRegistry(options.retentionMs, () => observer.started(), options.maxRetained, events);
  const journal =
    options.journal &&
    new JournalWriter(control, options.journal.retentionMs, options.journal.application, (warning) => events.warning(warning), options.tagConnections);
  // With the journal, the registry is wrapped: every change Worker.apply makes reaches it too.
  const store: WorkerStore = journal ? new JournalStore(registry, journal) : registry;
  const observer = new BackendObserver(control, store);
  const liveness = backendMonitor(options.livenessTimeoutMs, control);
  // The connection of each worker past its start: the launcher sets it, the stopper reads it.
  const running = new Map<Worker, WorkerConnection>();
  const stopper = new Stopper({ running, control, controlTimeoutMs });
  const slots = new WorkerSlots(maxWorkers);
  const cap = options.cluster;
  const cluster = cap && new ClusterSlots(connection, { key: cap.key, max: cap.max, timeoutMs: controlTimeoutMs });
  const launcher = new Launcher({ options, registry: store, slots, cluster, pool, control, liveness, stopper, running, events, journal });
  const remote = new RemoteControl(control, actions);
  return { options, store, pool, control, liveness, observer, stopper, launcher, cluster, slots, journal, remote };
}

/**
 * Closes the instance: every accepted launch runs (those still waiting for a slot or a
 * connection too: a caller who did not await its launch, fire and forget, expects the work done)
 * unless `cancel`, or `timeoutMs` passes first; rows nobody will read are discarded; then every
 * connection closes. A stop that cannot be proven leaves its worker in 'error', outcome unknown.
 * Paused workers (and jobs) are resumed first: nothing could resume them later.
 */
export async function shutdown(runtime: Runtime, cancel: boolean, timeoutMs: number | undefined): Promise<void> {
  const { store, stopper, options } = runtime;
  runtime.launcher.close();
  const active = [...store.active];
  for (const worker of active) worker.apply({ kind: 'discarded', reason: 'close' });
  // Held work is let go: close() runs (or cancels) every accepted launch, paused ones too.
  for (const worker of active) worker.apply({ kind: 'resumed' });
  runtime.slots.reconsider();
  for (const worker of store.list()) if (!worker.active) worker.apply({ kind: 'discarded', reason: 'close' });
  const stopAll = () => Promise.allSettled(active.map((worker) => stopper.stop(worker, 'close', options.cancelGraceMs)));
  if (cancel) {
    await stopAll();
  } else {
    const all = Promise.all(active.map((worker) => worker.whenTerminal));
    if (timeoutMs !== undefined && !(await settlesWithin(all, timeoutMs))) await stopAll();
    await all;
  }
  store.dispose();
  runtime.liveness.close();
  runtime.observer.close();
  runtime.remote.close();
  // The last rows go on the control connection before it closes (a failure was warned of).
  await runtime.journal?.close();
  await Promise.all([runtime.pool.close(), runtime.control.close(), runtime.cluster?.close()]);
}
