// The public events of a PgBackground, from what the launcher hears: a worker's end, and its
// notices (progress reported with pg_background_progress() becomes a 'progress' event and the
// worker's progress). Events are built only when someone listens.
import type { EventEmitter } from 'node:events';
import type { ServerNotice } from '../pool/worker-connection.js';
import type { LaunchEvents } from '../run/launcher.js';
import type { TerminalState, Worker } from '../store/worker.js';
import { progressFromNotice } from './progress-function.js';
import type { PgBackgroundEvents } from './types.js';

export function eventRelay(target: EventEmitter<PgBackgroundEvents>): LaunchEvents {
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
  return {
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
        worker.apply({ kind: 'progress', progress });
        if (target.listenerCount('progress') > 0) emitSafely('progress', { handle: worker.handle, label: worker.label, progress: { ...progress } });
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
