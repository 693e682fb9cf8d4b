// A job: a root task and its subtasks (bg.job). The root is a Worker without a connection (pid 0,
// found by its cookie) whose state this runner decides: running while the body runs or any
// subtask is active; then stopped (the body resolved, every subtask stopped), error (a subtask
// failed or was canceled, named in lastError; or the body rejected), or canceled (cancel(root),
// the job's signal, close({ cancel: true })). A cancel aborts ctx.signal at once (the root's
// own AbortSignal) and the stopper (control/stopper.ts) stops every active subtask with the same
// grace; the root ends once they are all terminal, without waiting for a body that ignores its
// signal. `canceled` keeps its promise for a tree: nothing of it committed; a cancelled root one
// of whose subtasks had already committed ends in error and says which.
import { PgBackgroundError, WorkerError, type WorkerErrorInfo } from '../errors.js';
import type { JobBody, JobContext, LaunchOptions, WorkerHandle, WorkerSql } from '../api/types.js';
import type { Stopper } from '../control/stopper.js';
import type { LaunchEvents } from '../run/launcher.js';
import type { InstanceOptions } from '../store/instance-options.js';
import type { LaunchPlan } from '../store/launch-plan.js';
import { Worker, type TerminalState } from '../store/worker.js';
import type { WorkerStore } from '../store/worker-store.js';
import { syntheticError } from '../results/error-info.js';
import { describe } from '../util/validate.js';
import { invalidArgument } from '../errors.js';

/** SQLSTATE of a root whose body threw an error that carries none (external_routine_exception). */
export const BODY_FAILED = '38000';

/** What the runner needs of the instance. */
export interface JobHost {
  readonly options: InstanceOptions;
  readonly store: WorkerStore;
  readonly stopper: Stopper;
  readonly events: Pick<LaunchEvents, 'finished'>;
  /** Validates and launches a subtask of `root` (the facade's launch, with `parent`). */
  launch(sql: WorkerSql, options: LaunchOptions | undefined, submitted: boolean, root: Worker): Promise<WorkerHandle>;
}

/** Accepts the job: its root is listed and running, its body started; returns the root's handle. */
export function startJob(host: JobHost, body: JobBody, launch: LaunchPlan): WorkerHandle {
  const root = new Worker(launch, host.options.loginUser, host.store);
  host.store.add(root);
  const signal = launch.signal;
  if (signal) {
    const onAbort = () => void host.stopper.stop(root, 'signal', host.options.cancelGraceMs).catch(() => {});
    signal.addEventListener('abort', onAbort, { once: true });
    void root.whenTerminal.then(() => signal.removeEventListener('abort', onAbort));
  }
  root.apply({ kind: 'body-started' });
  // Subtask launches not yet accepted (a journaling instance's first launch waits for the
  // journal, whenFull 'error' for the cluster cap): the root waits for them as for its subtasks.
  const launching = new Set<Promise<unknown>>();
  void run(host, root, body, context(host, root, launching), launching);
  return root.handle;
}

function context(host: JobHost, root: Worker, launching: Set<Promise<unknown>>): JobContext {
  const subtask = (sql: WorkerSql, options: LaunchOptions | undefined, submitted: boolean): Promise<WorkerHandle> => {
    if (root.cancelRequested || !root.active) {
      const why = root.cancelRequested ? `was cancelled (${root.canceledBy})` : `has ended (${root.state})`;
      return Promise.reject(new PgBackgroundError('PGBG_ABORTED', `No subtask can be launched: the job ${why}`, { cookie: root.cookie, label: root.label }));
    }
    const launch = host.launch(sql, options, submitted, root);
    launching.add(launch);
    const done = () => void launching.delete(launch);
    launch.then(done, done);
    return launch;
  };
  return Object.freeze({
    handle: root.handle,
    signal: root.signal,
    launch: (sql: WorkerSql, options?: LaunchOptions) => subtask(sql, options, false),
    submit: (sql: WorkerSql, options?: LaunchOptions) => subtask(sql, options, true),
    status(phase: string): void {
      if (typeof phase !== 'string') throw invalidArgument(`Expected \`phase\` to be a string, got ${describe(phase)}`);
      root.apply({ kind: 'status', phase, fraction: root.fraction });
    },
    progress(fraction: number, message?: string): void {
      if (typeof fraction !== 'number' || !(fraction >= 0 && fraction <= 1)) {
        throw invalidArgument(`Expected \`fraction\` to be a number from 0 to 1, got ${describe(fraction)}`);
      }
      if (message !== undefined && typeof message !== 'string') throw invalidArgument(`Expected \`message\` to be a string, got ${describe(message)}`);
      root.apply({ kind: 'status', phase: message ?? root.phase, fraction });
    },
  });
}

/** Runs the body, waits for the tree, and ends the root. */
async function run(host: JobHost, root: Worker, body: JobBody, ctx: JobContext, launching: Set<Promise<unknown>>): Promise<void> {
  let failure: { error: unknown } | null = null;
  const settled = (async () => {
    try {
      await body(ctx);
    } catch (error) {
      failure = { error };
    }
  })();
  // A cancel does not wait for the body: its subtasks' ends are the root's.
  let onCancel: () => void = () => {};
  const cancelled = new Promise<void>((resolve) => (onCancel = resolve));
  root.signal.addEventListener('abort', onCancel, { once: true });
  await Promise.race([settled, cancelled]);
  root.signal.removeEventListener('abort', onCancel);
  const children = root.children!;
  // Subtasks launched while we waited are waited for too, and launches still being accepted.
  for (let seen = -1; seen !== children.length || launching.size > 0;) {
    await Promise.allSettled(launching);
    seen = children.length;
    await Promise.all(children.map((child) => child.whenTerminal));
  }
  const [state, error] = decide(root, children, failure);
  if (!root.apply({ kind: 'finished', state, error, commandTag: null, rowCount: 0 })) return;
  host.events.finished(root, state);
}

function decide(root: Worker, children: readonly Worker[], failure: { error: unknown } | null): [TerminalState, WorkerErrorInfo | null] {
  if (root.cancelRequested) {
    // `canceled` says nothing of the tree committed: not where a subtask did, or may have.
    const committed = children.filter((child) => child.state === 'stopped');
    const unknown = children.filter(mayHaveCommitted);
    const cancelled = `the job was cancelled (${root.canceledBy})`;
    if (committed.length === 0 && unknown.length === 0) return ['canceled', syntheticError('57014', cancelled)];
    const parts = [];
    if (committed.length > 0) parts.push(`after ${committed.length} of its ${children.length} subtasks had committed (${names(committed)}); their work stays`);
    if (unknown.length > 0) parts.push(`${unknown.length} of its ${children.length} subtasks may have committed (${names(unknown)}): their outcome is unknown`);
    return ['error', syntheticError('57014', `${cancelled}${committed.length > 0 ? ' ' : ': '}${parts.join('; ')}`)];
  }
  // The first subtask to fail, by its finish, is the root's error (the body often rejects because of it).
  const failed = children.filter((child) => child.state === 'error' || child.state === 'canceled').sort((a, b) => a.finishedAt! - b.finishedAt!)[0];
  if (failed) {
    const info = failed.error ?? syntheticError('57014', 'canceled');
    const how = failed.state === 'canceled' ? 'was canceled' : 'failed';
    return ['error', { ...info, message: `subtask ${name(failed)} ${how}: ${info.message}` }];
  }
  if (failure) {
    const { error } = failure;
    if (error instanceof WorkerError) return ['error', { ...error.info, message: `the job's body threw: ${error.message}` }];
    const message = `the job's body threw: ${error instanceof Error ? error.message : describe(error)}`;
    const sqlstate = error instanceof PgBackgroundError && error.sqlstate ? error.sqlstate : BODY_FAILED;
    return ['error', syntheticError(sqlstate, message)];
  }
  return ['stopped', null];
}

/**
 * A subtask that failed yet may have committed something: its outcome is unknown (the connection
 * broke: class 08), or its statement ran and commits as it goes (the launcher's `partial`). Any
 * other failure rolled its transaction back.
 */
function mayHaveCommitted(child: Worker): boolean {
  return child.state === 'error' && (child.partial || (child.error?.sqlstate.startsWith('08') ?? false));
}

/** The first three of `children`, named. */
function names(children: readonly Worker[]): string {
  return children.slice(0, 3).map(name).join(', ') + (children.length > 3 ? ', ...' : '');
}

/** How a subtask is named in its root's lastError: its label (or sqlPreview) and pid. */
function name(child: Worker): string {
  return `${JSON.stringify(child.label ?? child.sqlPreview)} (pid ${child.pid})`;
}
