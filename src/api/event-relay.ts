// The public events of a PgBackground, from what the launcher hears (a worker's end, its notices:
// progress reported with pg_background_progress() becomes the worker's progress) and from what
// the store hears (every worker added, every change applied): 'launched', 'started', 'state'
// (paused, pending again, running, cancelling), 'retrying', 'progress' (its SQL's, a job's
// ctx.status / ctx.progress). Events are built only when someone listens.
import type { EventEmitter } from 'node:events';
import type { ServerNotice } from '../pool/worker-connection.js';
import type { LaunchEvents } from '../run/launcher.js';
import type { TerminalState, Worker } from '../store/worker.js';
import type { WorkerChange } from '../store/worker-change.js';
import type { WorkerState } from '../core/states.js';
import type { StoreListener } from '../store/worker-registry.js';
import { progressFromNotice } from './progress-function.js';
import type { PgBackgroundEvents } from './types.js';

export function eventRelay(target: EventEmitter<PgBackgroundEvents>): LaunchEvents & StoreListener {
  /**
   * Emits from inside our own bookkeeping: a listener that throws must not leave it half done,
   * so its error is rethrown on its own, like any other uncaught error of the caller's code.
   */
  const emitSafely = <K extends keyof PgBackgroundEvents>(event: K, ...args: PgBackgroundEvents[K]): void => {
    try {
      (target.emit as (event: K, ...args: PgBackgroundEvents[K]) => boolean)(event, ...args);
    } catch (error) {
      process.nextTick(() => {
        throw error;
      });
    }
  };
  const listens = (event: keyof PgBackgroundEvents) => target.listenerCount(event) > 0;
  return {
    added(worker: Worker): void {
      if (!listens('launched')) return;
      const { scope, parent } = worker;
      emitSafely('launched', { handle: worker.handle, label: worker.label, scope, parent: parent?.cookie ?? null });
    },
    changed(worker: Worker, change: WorkerChange, priorState: WorkerState): void {
      // The handle is read only for an event someone listens to: a pending worker's would be
      // made for nothing (its pid changes at the start) and kept while it waits.
      switch (change.kind) {
        case 'started':
        case 'body-started':
          if (listens('started')) emitSafely('started', { handle: worker.handle, label: worker.label, pid: worker.pid });
          break;
        case 'retrying':
          if (listens('retrying')) {
            const { handle, label } = worker;
            emitSafely('retrying', { handle, label, attempt: worker.attempts - 1, delayMs: change.delayMs, error: { ...change.error } });
          }
          return;
        case 'progress':
        case 'status': {
          if (!listens('progress')) return;
          const { phase, fractionCompleted } = worker.info(Date.now());
          const progress = worker.progress ?? { pct: (fractionCompleted ?? 0) * 100, message: phase ?? '' };
          emitSafely('progress', { handle: worker.handle, label: worker.label, progress: { ...progress }, phase, fractionCompleted });
          return;
        }
        case 'finished':
          return; // the launcher's (or the job runner's) 'finished', with its error info
      }
      if (worker.state !== priorState && listens('state')) {
        emitSafely('state', { handle: worker.handle, label: worker.label, state: worker.state, previous: priorState });
      }
    },
    finished(worker: Worker, state: TerminalState): void {
      if (target.listenerCount('finished') === 0) return;
      const { error } = worker;
      emitSafely('finished', {
        handle: worker.handle,
        label: worker.label,
        state,
        elapsedMs: worker.finishedAt! - worker.launchedAt,
        error: error && { ...error },
      });
    },
    warning(warning): void {
      // Nobody listens: the process's own warning channel (like any library's process warning).
      if (target.listenerCount('warning') === 0) process.emitWarning(warning.message, { code: warning.code });
      else emitSafely('warning', warning);
    },
    notice(worker: Worker, notice: ServerNotice): void {
      const progress = progressFromNotice(notice);
      if (progress) {
        worker.apply({ kind: 'progress', progress }); // its 'progress' event comes from changed()
        return;
      }
      if (target.listenerCount('notice') === 0) return;
      emitSafely('notice', {
        handle: worker.handle,
        label: worker.label,
        severity: notice.severity ?? 'NOTICE',
        sqlstate: notice.code ?? '00000',
        message: notice.message ?? '',
        detail: notice.detail ?? null,
        hint: notice.hint ?? null,
        context: notice.where ?? null,
      });
    },
  };
}
