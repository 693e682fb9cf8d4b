// Launching: admission (a slot, then a connection), the task on its connection, a second try on
// a fresh connection for a task proven never to have run, and the end of the task turned into the
// worker's terminal state (classify.ts), and retries of transient failures on the same connection
// (the rule in retry.ts, the loop in #again). The facade hands it validated launches and hears back
// through LaunchEvents; the worker record changes only through Worker.apply. A cancel before the
// start aborts the worker's signal, which every wait of the start (slot, connection) listens to.
import pg from 'pg';
import { pinSql, tagSql } from '../catalog.js';
import { PgBackgroundError, type WorkerErrorInfo } from '../errors.js';
import type { WorkerHandle } from '../api/types.js';
import { unlessAborted } from '../core/abort.js';
import type { JournalWriter } from '../control/journal-writer.js';
import type { Stopper } from '../control/stopper.js';
import { bothSlots, type ClusterSlots } from '../pool/cluster-slots.js';
import type { ConnectionPool } from '../pool/connection-pool.js';
import type { ControlConnection } from '../pool/control-connection.js';
import type { LivenessMonitor } from '../pool/liveness-monitor.js';
import { poolerUnsupported, refusesTransactions } from '../pool/pooler.js';
import type { NoticeSink, ServerNotice, WorkerConnection } from '../pool/worker-connection.js';
import { SlotRequest, type Admission, type Slot } from '../pool/worker-slots.js';
import { CONNECTION_FAILURE, errorInfo, syntheticError, WorkerFailure } from '../results/error-info.js';
import { TaskQuery, type TaskEnd, type TaskOutcome } from '../results/task-query.js';
import { endPinnedTask } from './pinned-task.js';
import { pooledRefusal, streamTask } from './stream-tasks.js';
import { commitsOnItsOwn } from '../plan/commit-points.js';
import { planAgain, type TaskPlan } from '../plan/task-plan.js';
import type { InstanceOptions } from '../store/instance-options.js';
import type { LaunchPlan } from '../store/launch-plan.js';
import { Worker, type TerminalState } from '../store/worker.js';
import type { WorkerStore } from '../store/worker-store.js';
import { workerTag, workerTagStatement } from '../store/worker-identity.js';
import { classify, neverRan, type Sent } from './classify.js';
import { retryDelay } from './retry.js';

/** What the facade hears of a worker's life (it emits the public events). */
export interface LaunchEvents {
  finished(worker: Worker, state: TerminalState): void;
  notice(worker: Worker, notice: ServerNotice): void;
  /** Something failed that fails no worker (a journal write). */
  warning(warning: PgBackgroundError): void;
}

export interface LauncherDeps {
  readonly options: InstanceOptions;
  readonly registry: WorkerStore;
  readonly slots: Admission;
  /** The cluster-wide cap (clusterMaxWorkers), taken after the local slot; null when off. */
  readonly cluster: ClusterSlots | null;
  readonly pool: ConnectionPool;
  readonly control: ControlConnection;
  readonly liveness: LivenessMonitor;
  readonly stopper: Stopper;
  /** The connection of each worker past its start (between attach and completion). */
  readonly running: Map<Worker, WorkerConnection>;
  readonly events: LaunchEvents;
  /** The journal's writer, or null when journal is off. */
  readonly journal: JournalWriter | null;
}

export class Launcher {
  readonly #deps: LauncherDeps;
  #closed = false;
  /** A connection that came after its start was cancelled goes back. */
  readonly #releaseLate = (late: WorkerConnection): void => this.#deps.pool.release(late, true);

  constructor(deps: LauncherDeps) {
    this.#deps = deps;
  }

  /**
   * The instance is closing: a launch still asking the cluster cap for a slot (whenFull
   * 'error', before its worker exists) is refused with PGBG_CLOSED instead of starting a worker
   * close() would not know of.
   */
  close(): void {
    this.#closed = true;
  }

  /**
   * Starts the worker; resolves with its handle once its SQL is on its way. The accepted worker
   * rejects it with PGBG_ABORTED if cancelled before its start: a caller who awaits the launch
   * still sees that, but a fire-and-forget one must not get an unhandled rejection for a cancel.
   */
  launch(launch: LaunchPlan): Promise<WorkerHandle> {
    const { options, cluster, journal } = this.#deps;
    if (!launch.signal?.aborted && !(options.whenFull === 'error' && cluster) && !journal?.ready()) {
      // The common start: nothing to wait for before the worker exists, so it is accepted here,
      // without the closure and second async frame of #start.
      let worker: Worker;
      try {
        worker = this.#accept(launch);
      } catch (error) {
        return Promise.reject(error);
      }
      const launching = this.#begin(worker, null);
      worker.launching = launching;
      return launching;
    }
    // The worker is accepted synchronously, or after the cluster cap answered (whenFull 'error').
    let launching: Promise<WorkerHandle> | undefined;
    let accepted: Worker | undefined;
    launching = this.#start(launch, (worker) => {
      if (launching) worker.launching = launching;
      else accepted = worker;
    });
    if (accepted) accepted.launching = launching;
    return launching;
  }

  async #start(launch: LaunchPlan, onAccepted: (worker: Worker) => void): Promise<WorkerHandle> {
    const { options, cluster } = this.#deps;
    if (launch.signal?.aborted) {
      throw new PgBackgroundError('PGBG_ABORTED', 'The launch was aborted before it started', { cause: launch.signal.reason });
    }
    // A journaling instance's first launch: the journal must exist (checked once; no await after).
    const journalReady = this.#deps.journal?.ready();
    if (journalReady) await journalReady;
    this.#localFull();
    // whenFull 'error' and the cluster cap: a slot now or the error, before any worker exists.
    const reserved = options.whenFull === 'error' && cluster ? await this.#reserve(cluster) : null;
    let worker: Worker;
    try {
      worker = this.#accept(launch); // other launches may have passed the check while the server answered
    } catch (error) {
      reserved?.release();
      throw error;
    }
    onAccepted(worker);
    return this.#begin(worker, reserved);
  }

  /** Count active workers ourselves: whenFull 'error' answers now, before the worker exists. */
  #localFull(): void {
    const { options, registry } = this.#deps;
    // A job's root holds no slot: only workers that run SQL count against maxWorkers.
    if (options.whenFull !== 'error' || registry.active.size - registry.activeRoots < options.maxWorkers) return;
    const max = options.maxWorkers;
    throw new PgBackgroundError(
      'PGBG_MAX_WORKERS',
      `Too many active workers: the limit is ${max} (maxWorkers); wait for one to finish, or use whenFull: 'queue'`,
    );
  }

  /** The launch becomes a worker in the registry, unless the instance closed or is full (whenFull 'error'). */
  #accept(launch: LaunchPlan): Worker {
    const { options, registry } = this.#deps;
    if (this.#closed) throw closedDuringLaunch();
    this.#localFull();
    const worker = new Worker(launch, options.loginUser, registry);
    registry.add(worker);
    return worker;
  }

  /**
   * The accepted worker's start: a slot, a connection, its task on the wire; `reserved` a
   * cluster slot already held. The wait for a slot is where most starts suspend (fire and forget
   * queues thousands of them), so a start waits as one small object the slot queue calls back
   * (a Start: no async frame, no promise of the wait's own); the rest is in #connect.
   */
  #begin(worker: Worker, reserved: Slot | null): Promise<WorkerHandle> {
    try {
      const root = worker.parent;
      if (root) {
        // A job's subtask: known to its root at once; held while the root is paused, and
        // cancelled before its start if the root's cancel came while this launch was accepted.
        root.apply({ kind: 'subtask', child: worker });
        if (root.cancelRequested) worker.apply({ kind: 'cancel-requested', reason: root.canceledBy! });
        else if (root.state === 'paused') worker.apply({ kind: 'paused' });
      }
      const signal = worker.launch.signal;
      if (signal) this.#stopOnAbort(worker, signal);
    } catch (error) {
      return Promise.reject(error);
    }
    const start = new Start(this.#starts, worker, reserved);
    const launching = new Promise<WorkerHandle>((resolve, reject) => {
      start.resolve = resolve;
      start.reject = reject;
    });
    this.#deps.slots.enqueue(start);
    return launching;
  }

  /** What a Start hears of its slot (one object per instance, so that each Start is small). */
  readonly #starts: StartSteps = {
    granted: (start, slot) => {
      const { worker } = start;
      let connected: Promise<void>;
      try {
        connected = this.#connect(worker, slot, start.reserved);
      } catch (error) {
        connected = Promise.reject(error);
      }
      if (connected === RESOLVED) start.resolve(worker.handle);
      else connected.then(() => start.resolve(worker.handle), start.reject);
    },
    refused: (start, reason) => start.reject(this.#notStarted(start.worker, reason, undefined, start.reserved)),
  };

  /** A warm connection at once (no cluster cap), else #connectWaiting; then the task runs on it. */
  #connect(worker: Worker, slot: Slot, reserved: Slot | null): Promise<void> {
    const { cluster, pool } = this.#deps;
    if (!cluster && !worker.launch.fresh) {
      let warm: WorkerConnection | null;
      try {
        warm = pool.take();
      } catch (error) {
        return Promise.reject(this.#notStarted(worker, error, slot, reserved));
      }
      if (warm) return this.#run(worker, warm, slot);
    }
    return this.#connectWaiting(worker, slot, reserved);
  }

  async #connectWaiting(worker: Worker, slot: Slot | undefined, reserved: Slot | null): Promise<void> {
    const { cluster, pool } = this.#deps;
    const { launch } = worker;
    let connection: WorkerConnection;
    try {
      if (cluster) {
        const local = slot!;
        let shared = reserved;
        reserved = null;
        if (!shared) {
          try {
            shared = await cluster.acquire(worker.signal);
          } catch (error) {
            local.release();
            slot = undefined;
            throw error;
          }
        }
        slot = bothSlots(local, shared);
      }
      const warm = launch.fresh ? null : pool.take();
      // The control connection (re)connects alongside this new worker connection: where it is
      // to listen, the task waits for that before its tag goes out (#run), so start it now.
      if (!warm) this.#deps.control.open();
      connection = warm ?? (await unlessAborted(pool.acquire(launch.fresh), worker.signal, this.#releaseLate));
    } catch (error) {
      throw this.#notStarted(worker, error, slot, reserved);
    }
    await this.#run(worker, connection, slot!);
  }

  /** The start failed before the task ran (no slot, no connection, or cancelled meanwhile): the worker ends, and the launch rejects with this. */
  #notStarted(worker: Worker, error: unknown, slot: Slot | undefined, reserved: Slot | null): PgBackgroundError {
    const { options } = this.#deps;
    const signal = worker.launch.signal;
    slot?.release();
    reserved?.release();
    const cancelled = worker.aborted;
    const info = cancelled ? cancelledBeforeStart(worker) : errorInfo(error);
    this.#finish(worker, cancelled ? 'canceled' : 'error', info, null, 0);
    if (cancelled) {
      return new PgBackgroundError('PGBG_ABORTED', `The launch was cancelled (${worker.canceledBy}) before the worker started`, {
        cookie: worker.cookie,
        label: worker.label,
        cause: signal?.aborted ? signal.reason : undefined,
      });
    }
    if (error instanceof PgBackgroundError) return error; // a pooler refused for the cluster cap
    // pg's own words for its connect deadline name neither the time nor the option.
    const deadline = /timeout/i.test(info.message)
      ? ` (within connectionTimeoutMillis, ${options.connection.connectionTimeoutMillis} ms; it defaults to livenessTimeoutMs)`
      : '';
    return new PgBackgroundError('PGBG_CONNECTION_FAILED', `Could not open a worker connection: ${info.message}${deadline}`, {
      cookie: worker.cookie,
      label: worker.label,
      sqlstate: info.sqlstate === CONNECTION_FAILURE ? undefined : info.sqlstate,
    });
  }

  /** The launch's own signal stops the worker (kept out of #begin: no closure context per start). */
  #stopOnAbort(worker: Worker, signal: AbortSignal): void {
    const { stopper, options } = this.#deps;
    // Nobody awaits this stop: if it fails, the worker's own state says outcome unknown.
    const onAbort = () => void stopper.stop(worker, 'signal', options.cancelGraceMs).catch(() => {});
    signal.addEventListener('abort', onAbort, { once: true });
    void worker.whenTerminal.then(() => signal.removeEventListener('abort', onAbort));
  }

  /** A cluster slot for a launch with whenFull 'error', or PGBG_MAX_WORKERS naming the cap. */
  async #reserve(cluster: ClusterSlots): Promise<Slot> {
    let slot: Slot | null;
    try {
      slot = await cluster.tryAcquire();
    } catch (error) {
      if (error instanceof PgBackgroundError) throw error;
      if (this.#closed) throw closedDuringLaunch();
      const reason = errorInfo(error).message;
      throw new PgBackgroundError('PGBG_CONNECTION_FAILED', `Could not ask the cluster-wide cap for a slot: ${reason}`, { cause: error });
    }
    if (slot) return slot;
    const { max, key } = this.#deps.options.cluster!;
    const limit = `the cluster-wide limit is ${max} (clusterMaxWorkers, clusterKey ${JSON.stringify(key)})`;
    throw new PgBackgroundError('PGBG_MAX_WORKERS', `Too many active workers across processes: ${limit}; wait for one to finish, or use whenFull: 'queue'`);
  }

  /**
   * Runs the worker's task on `connection`; resolves once its SQL is on its way (after the
   * settings round trip, if settings or a role were asked for). Completion is handled later.
   * `firstStart` is set when this is the task's second (and last) try: see #retry; `again` when
   * it runs again on the same connection after a retryable error: see #again.
   * The common task (plain DML on a direct connection that needs no round trip first: no
   * settings, no reset of its own, no cursor or COPY) goes out here, without an async frame;
   * every other takes #runWaiting, and so does a task that must first wait for the control
   * connection to listen.
   */
  #run(worker: Worker, connection: WorkerConnection, slot: Slot, firstStart: number | null = null, again = false): Promise<void> {
    const { launch } = worker;
    // From the first worker on, the control connection stays open: a server that fills up later
    // must not keep us from checking, cancelling or terminating this worker. A direct one also
    // listens for control requests from SQL (see control/remote-control.ts), and until it does,
    // `listen` is what this task waits on before its tag goes out (null: nothing to wait for).
    const listen = this.#deps.control.open(!connection.pooled);
    const direct =
      listen === null &&
      !connection.pooled &&
      launch.session === null &&
      !launch.cursor &&
      !launch.copy &&
      launch.plan.refusal === null &&
      connection.standardConformingStrings &&
      (!connection.needsReset || (launch.plan.inBlock && connection.transactionStatus === 'I'));
    if (!direct) return this.#runWaiting(worker, connection, slot, firstStart, again, listen);
    try {
      const run = this.#attach(worker, connection, slot, firstStart, again);
      if (worker.cancelRequested) return Promise.resolve(run.ended(failed(new WorkerFailure('57014', 'canceling statement due to user request'))));
      // needsReset: prefixable, and takePrefixReset cannot refuse (the transaction status is idle).
      const resetFirst = connection.needsReset && connection.takePrefixReset();
      this.#send(worker, connection, launch.plan, resetFirst, run);
      return RESOLVED;
    } catch (error) {
      return Promise.reject(error);
    }
  }

  async #runWaiting(
    worker: Worker,
    connection: WorkerConnection,
    slot: Slot,
    firstStart: number | null,
    again: boolean,
    listen: Promise<void> | null,
  ): Promise<void> {
    const { options, liveness } = this.#deps;
    const { launch } = worker;
    const run = this.#attach(worker, connection, slot, firstStart, again);
    const refusal = connection.pooled ? pooledRefusal(worker) : null; // cursor mode, COPY (stream-tasks.ts)
    if (refusal) {
      run.ended(failed(new WorkerFailure('0A000', refusal)));
      throw poolerUnsupported(refusal, { cookie: worker.cookie, label: worker.label });
    }
    // The reset the last task on this connection deferred (results/task-query.ts): this task
    // carries it as its prefix, under its own Sync (plain DML, no settings round trip before it),
    // or it runs now, in a round trip of its own; a failure retires the connection either way.
    let resetFirst = false;
    if (connection.needsReset) {
      const prefixable =
        launch.session === null &&
        launch.plan.inBlock &&
        launch.plan.refusal === null &&
        !launch.cursor &&
        !launch.copy &&
        connection.standardConformingStrings;
      resetFirst = prefixable && connection.takePrefixReset();
      if (!resetFirst) {
        run.sent = { kind: 'reset' };
        try {
          await connection.reset();
        } catch (error) {
          return run.ended(failed(error));
        }
        connection.checkedOut(); // clean now, but what runs next may change the session
        run.sent = null;
      }
    }
    if (connection.pooled) {
      // Behind a pooler: BEGIN, the role and settings for this transaction only, and the identity
      // of the backend that now holds it, in one round trip (see pooler.ts).
      try {
        const results = (await connection.query(pinSql(launch.settings, launch.role))) as unknown as pg.QueryResult[];
        const backend = results.at(-1)!.rows[0] as { pid: number; started: string };
        connection.pin(backend);
      } catch (error) {
        run.ended(failed(error));
        if (!refusesTransactions(error)) return;
        throw poolerUnsupported(`The connection pooler refused to keep a transaction open (${(error as Error).message}); this is PgBouncer's statement mode`, {
          cookie: worker.cookie,
          label: worker.label,
          cause: error,
        });
      }
      started(worker, connection);
    } else if (launch.session) {
      // One round trip, only when asked for: the reset undoes it before the next task.
      run.sent = { kind: 'settings' };
      try {
        await connection.query(launch.session.text, launch.session.values);
      } catch (error) {
        return run.ended(failed(error));
      }
      run.sent = null;
    }
    // No tag before the instance listens: a cancel from SQL must reach the owner (it never rejects).
    if (listen) await listen;
    if (worker.cancelRequested) return run.ended(failed(new WorkerFailure('57014', 'canceling statement due to user request')));
    let plan = launch.plan;
    if (!connection.standardConformingStrings) {
      try {
        plan = planAgain(plan, false);
      } catch (error) {
        return run.ended(failed(error));
      }
    }
    // A copyTo/copyFrom launch is the COPY with the client the plan refuses anywhere else.
    if (plan.refusal !== null && !launch.copy) return run.ended(failed(new WorkerFailure('0A000', plan.refusal)));

    const columns = worker; // its columns() hears the result's fields (a 'described' change)
    // Cursor mode or COPY with the client (stream-tasks.ts): another task kind, the same end.
    const other = streamTask(worker, plan, columns);
    if (other) {
      if (options.tagConnections && !connection.pooled) {
        // These tasks write their own bytes: the tag goes first, in a round trip of its own (a
        // cursor or a COPY is long enough for it not to matter); the reset after it undoes it.
        run.sent = { kind: 'settings' };
        try {
          await connection.query(tagSql(workerTag(worker.cookie, worker.label), false));
        } catch (error) {
          return run.ended(failed(error));
        }
        run.sent = null;
        if (worker.cancelRequested) return run.ended(failed(new WorkerFailure('57014', 'canceling statement due to user request')));
      }
      worker.apply({ kind: 'sent', task: other.task });
      liveness.watch(connection, worker.queue);
      run.sent = { kind: 'task', startsWithParse: other.startsWithParse };
      other.task.start(connection);
      void other.task.done.then((outcome) => run.ended(outcome));
      return;
    }

    this.#send(worker, connection, plan, resetFirst, run);
  }

  /** The worker is attached to `connection`; returns its Run: what is on the wire, and the task's end. */
  #attach(worker: Worker, connection: WorkerConnection, slot: Slot, firstStart: number | null, again: boolean): Run {
    const { options, stopper, running } = this.#deps;
    const { launch } = worker;
    // Behind a pooler the worker's backend is known once its transaction holds one (below).
    if (!connection.pooled && !again) started(worker, connection);
    running.set(worker, connection);
    const run = new Run(this.#runs, worker, connection, slot, firstStart);
    connection.onNotice = run;
    if (launch.timeoutMs > 0) {
      const timeoutMs = launch.timeoutMs - (firstStart === null ? 0 : Date.now() - firstStart);
      run.timer = setTimeout(() => void stopper.stop(worker, 'timeout', options.cancelGraceMs).catch(() => {}), Math.max(0, timeoutMs));
    }
    return run;
  }

  /** What a Run hears (one object per instance, so that each Run is small). */
  readonly #runs: RunSteps = {
    ended: (run, outcome) => this.#ended(run, outcome),
    notice: (run, notice) => this.#deps.events.notice(run.worker, notice),
  };

  /** The task's end; resolves when a second try is on its way (the launch waits for it while settings are sent). */
  #ended(run: Run, outcome: TaskOutcome): Promise<void> | void {
    const { worker, connection, slot, firstStart } = run;
    if (run.timer) clearTimeout(run.timer);
    this.#deps.liveness.unwatch(connection);
    const { error } = outcome;
    const delayMs = !outcome.resetFailed && run.sent?.kind === 'task' ? retryDelay(worker, error, connection) : null;
    if (outcome.resetFailed && error) {
      // The last task's reset went ahead of this one and failed: the server skipped this task.
      if (worker.cancelRequested) {
        outcome = failed(
          new WorkerFailure('57014', `worker was cancelled (${worker.canceledBy}) before it ran (the reset ahead of it failed: ${error.message})`),
        );
      } else if (firstStart === null) {
        return this.#retry(worker, connection, slot, error, worker.startedAt ?? Date.now());
      }
    } else if (delayMs !== null) {
      // A retryable failure (retry.ts): the task runs again on this connection.
      return void this.#again(worker, connection, slot, error!, delayMs);
    } else if (neverRan(error, run.sent, connection.firstAnswer)) {
      if (worker.cancelRequested) {
        outcome = failed(new WorkerFailure('57014', `worker was cancelled (${worker.canceledBy}) before it ran (its connection had died: ${error.message})`));
      } else if (firstStart === null) {
        // Once: a second dead connection in a row is reported as it is.
        return this.#retry(worker, connection, slot, error, worker.startedAt ?? Date.now());
      }
    }
    // The journal's proof was refused (its right revoked since the instance looked, say): the
    // writer looks again, so that its later workers run without the proof rather than fail.
    if (outcome.proofRefused) this.#deps.journal?.proofRefused();
    // Whether a failure may leave part of the work committed, decided here once (the worker keeps
    // it: a cancel is then no `canceled`, and a job's root hears of it). Only the task's own
    // statement, if it commits as it goes: not an error of our settings, reset or tag round trip
    // before it, nor a task in our own BEGIN behind a pooler (a CALL or DO cannot commit there).
    const partial = outcome.error !== null && run.sent?.kind === 'task' && !connection.pooled && commitsOnItsOwn(worker.launch.plan);
    if (!connection.pinned) return this.#complete(worker, connection, slot, outcome, partial);
    void endPinnedTask(worker, connection, outcome).then((final) => this.#complete(worker, connection, slot, final, partial));
  }

  /**
   * The reset for the next task rides in the same write as this one (no extra round trip,
   * nothing on the caller's path); a connection that will not be kept needs none.
   * Pooled connections are never reused: no reset of ours may land on another client's session.
   * The tag (pg_stat_activity's application_name) rides in the same write, ahead of the task.
   */
  #send(worker: Worker, connection: WorkerConnection, plan: TaskPlan, resetFirst: boolean, run: Run): void {
    const { options, liveness } = this.#deps;
    // The tag's SET: SET LOCAL behind a pooler (it ends with the caller's transaction there).
    const tag = options.tagConnections ? workerTagStatement(worker.cookie, worker.label, connection.pinned) : null;
    const session = options.maxIdle > 0 && !connection.pooled ? connection : null;
    // With the journal, a transactional task's last statement records its end (it commits with it).
    const journal = this.#deps.journal?.commitPiece(worker, plan) ?? null;
    // The worker is the result's sink: its columns() hears the fields (a 'described' change), its
    // queue takes the rows (made at the first row only).
    const query = new TaskQuery(plan, worker, session, connection.pinned, tag, resetFirst, journal);
    worker.apply({ kind: 'sent', task: query });
    liveness.watch(connection, query);
    run.sent = query.startsWithParse ? SENT_PARSE : SENT_SIMPLE;
    query.whenDone(run);
    connection.run(query);
  }

  /**
   * The task never reached a backend (its connection was dead): it runs again, transparently, on
   * a new connection. Its handle stays valid (the registry knows the first pid too); list()
   * shows the new backend's pid.
   */
  async #retry(worker: Worker, dead: WorkerConnection, slot: Slot, cause: Error, firstStart: number): Promise<void> {
    const { pool, running } = this.#deps;
    running.delete(worker);
    dead.onNotice = null;
    pool.release(dead, false);
    let connection: WorkerConnection;
    try {
      connection = await unlessAborted(pool.acquire(true), worker.signal, this.#releaseLate);
    } catch (error) {
      slot.release();
      const info = worker.aborted
        ? cancelledBeforeStart(worker)
        : syntheticError(
            CONNECTION_FAILURE,
            `the task never ran: its connection had died (${cause.message}) and no new one could be opened: ${errorInfo(error).message}`,
          );
      this.#finish(worker, worker.aborted ? 'canceled' : 'error', info, null, 0);
      return;
    }
    // Its only rejection (a pooler refusing the pin) has already finished the worker, saying why;
    // nobody awaits a second try, so it must not become an unhandled rejection.
    await this.#run(worker, connection, slot, firstStart).catch(() => {});
  }

  /**
   * Retries (launch's `retry`): the try failed with an error that proves it rolled back, so the
   * task runs again on the same connection (the handle stays valid, the state stays running)
   * after `delayMs`. Unread rows of the failed try are dropped. During the pause there is
   * nothing to signal (the worker is not in `running`): a cancel or the timeout ends the pause,
   * and the worker is canceled, the failed try having rolled back and the next never sent.
   */
  async #again(worker: Worker, connection: WorkerConnection, slot: Slot, error: Error, delayMs: number): Promise<void> {
    const { running, stopper, options, pool } = this.#deps;
    running.delete(worker);
    worker.queue.restart();
    worker.apply({ kind: 'retrying', error: errorInfo(error), delayMs });
    const { timeoutMs } = worker.launch;
    const elapsed = Date.now() - (worker.startedAt ?? Date.now());
    const timer =
      timeoutMs > 0 ? setTimeout(() => void stopper.stop(worker, 'timeout', options.cancelGraceMs).catch(() => {}), Math.max(0, timeoutMs - elapsed)) : null;
    await pauseUnlessAborted(delayMs, worker.signal);
    if (timer) clearTimeout(timer);
    if (worker.cancelRequested) {
      connection.onNotice = null;
      pool.release(connection, true); // no cancel request was sent to it
      slot.release();
      const message = `worker was cancelled (${worker.canceledBy}) between tries: try ${worker.attempts - 1} had failed and rolled back (${error.message})`;
      this.#finish(worker, 'canceled', syntheticError('57014', message), null, 0);
      return;
    }
    // Its only rejection (a pooler refusing the pin) cannot happen here: retries are never pooled.
    await this.#run(worker, connection, slot, worker.startedAt, true).catch(() => {});
  }

  #complete(worker: Worker, connection: WorkerConnection, slot: Slot, outcome: TaskOutcome, partial: boolean): void {
    this.#deps.running.delete(worker);
    connection.onNotice = null;
    const { state, info, reusable } = classify({
      error: outcome.error,
      cancelRequested: worker.cancelRequested,
      connectionFailure: connection.failure,
      pooled: connection.pooled,
      partial,
    });
    // Give back the connection and the slot first: a 'finished' listener may launch again.
    this.#deps.pool.release(connection, reusable);
    slot.release();
    this.#finish(worker, state, info, outcome.commandTag, outcome.rowCount, partial && state === 'error');
  }

  #finish(worker: Worker, state: TerminalState, info: WorkerErrorInfo | null, commandTag: string | null, rowCount: number, partial = false): void {
    if (!worker.apply({ kind: 'finished', state, error: info, commandTag, rowCount, partial })) return;
    this.#deps.events.finished(worker, state);
  }
}

/** The connection is attached: the worker runs as its backend. */
function started(worker: Worker, connection: WorkerConnection): void {
  worker.apply({ kind: 'started', pid: connection.pid, backendStart: connection.started, user: connection.user });
}

/** The error info of a worker cancelled while it waited for a slot or a connection. */
function cancelledBeforeStart(worker: Worker): WorkerErrorInfo {
  return syntheticError('57014', `worker was cancelled (${worker.canceledBy}) before it started`);
}

/** Resolves after `ms`, or as soon as `signal` aborts. */
function pauseUnlessAborted(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

/** A Start's steps, kept by the launcher (they reach its private methods). */
interface StartSteps {
  granted(start: Start, slot: Slot): void;
  refused(start: Start, reason: unknown): void;
}

/**
 * A worker's start waiting for its slot: its own wait in the slot queue, which calls it back
 * (pool/worker-slots.ts); `resolve` and `reject` settle the launch's promise.
 */
class Start extends SlotRequest {
  readonly #steps: StartSteps;
  readonly reserved: Slot | null;
  resolve!: (handle: WorkerHandle) => void;
  reject!: (reason: unknown) => void;

  constructor(steps: StartSteps, worker: Worker, reserved: Slot | null) {
    super(worker);
    this.#steps = steps;
    this.reserved = reserved;
  }

  /** The worker that starts (the request's start). */
  get worker(): Worker {
    return this.start as Worker;
  }

  granted(slot: Slot): void {
    this.#steps.granted(this, slot);
  }

  refused(reason: unknown): void {
    this.#steps.refused(this, reason);
  }
}

/** A Run's steps, kept by the launcher (they reach its private methods). */
interface RunSteps {
  ended(run: Run, outcome: TaskOutcome): Promise<void> | void;
  notice(run: Run, notice: ServerNotice): void;
}

/**
 * One run of a worker's task on its connection: what is on the wire (our settings round trip,
 * the reset, then the task), the task's end, and where the connection's notices go. One object
 * per run, not a record, an end closure and a notice closure.
 */
class Run implements TaskEnd, NoticeSink {
  readonly #steps: RunSteps;
  readonly worker: Worker;
  readonly connection: WorkerConnection;
  readonly slot: Slot;
  /** Set when this is the task's second (and last) try: see Launcher#retry. */
  readonly firstStart: number | null;
  sent: Sent = null;
  timer: NodeJS.Timeout | null = null;

  constructor(steps: RunSteps, worker: Worker, connection: WorkerConnection, slot: Slot, firstStart: number | null) {
    this.#steps = steps;
    this.worker = worker;
    this.connection = connection;
    this.slot = slot;
    this.firstStart = firstStart;
  }

  /**
   * The task's end (TaskQuery's comes a microtask after its last answer, never inside pg's
   * parser): resolves when a second try is on its way (see Launcher#ended).
   */
  ended(outcome: TaskOutcome): Promise<void> | void {
    return this.#steps.ended(this, outcome);
  }

  notice(notice: ServerNotice): void {
    this.#steps.notice(this, notice);
  }
}

const RESOLVED = Promise.resolve();
/** What a task on the wire is (one constant each, not an object per task). */
const SENT_PARSE: Sent = Object.freeze({ kind: 'task', startsWithParse: true });
const SENT_SIMPLE: Sent = Object.freeze({ kind: 'task', startsWithParse: false });

/** A task that ended before (or instead of) reaching the server. */
function failed(error: unknown): TaskOutcome {
  return { error: error instanceof Error ? error : new Error(String(error)), commandTag: null, rowCount: 0 };
}

function closedDuringLaunch(): PgBackgroundError {
  return new PgBackgroundError('PGBG_CLOSED', 'This PgBackground instance was closed while the launch waited for a cluster-wide slot');
}
