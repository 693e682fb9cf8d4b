// The vocabulary of a worker's life: every fact a caller, a journal or a CLI reads about a
// worker comes from one of these changes, applied by Worker.apply (worker.ts), the one door;
// a WorkerStore (worker-store.ts) hears each applied change, once, through `changed`.
import type { WorkerErrorInfo } from '../errors.js';
import type { CancelReason, TerminalState, WorkerState } from '../core/states.js';
import type { Observation } from '../core/observation.js';
import type { WorkerProgress } from '../api/types.js';
import type { ResultField } from '../results/row-parser.js';
import type { DiscardReason } from '../results/worker-result.js';
import type { Worker } from './worker.js';

export type WorkerChange =
  /** Its connection is attached: it runs as backend `pid`, started at `backendStart`. */
  | { readonly kind: 'started'; readonly pid: number; readonly backendStart: string; readonly user: string }
  /** Its SQL is on the wire as `task` (whose row count is live). */
  | { readonly kind: 'sent'; readonly task: { readonly rowCount: number } }
  /** The server described the last statement's columns. */
  | { readonly kind: 'described'; readonly fields: readonly ResultField[] }
  /** Its SQL reported progress with pg_background_progress(). */
  | { readonly kind: 'progress'; readonly progress: WorkerProgress }
  /** The server said what its backend is doing (phase, fraction, wait event, blockers): the backend monitor's poll. */
  | { readonly kind: 'observed'; readonly observation: Observation }
  /** Held before its start (pause()), or, for a job's root, its unstarted subtasks held. */
  | { readonly kind: 'paused' }
  /** No longer held (resume()): back to pending (a root: back to running). */
  | { readonly kind: 'resumed' }
  /** A job's root: its body began (it has no connection; it runs as pid 0). */
  | { readonly kind: 'body-started' }
  /** A job's root: its body reported its phase and/or fraction (ctx.status, ctx.progress). */
  | { readonly kind: 'status'; readonly phase: string | null; readonly fraction: number | null }
  /** A job's root: `child` was launched as its subtask. */
  | { readonly kind: 'subtask'; readonly child: Worker }
  /** A try failed with a retryable error that proves nothing of it committed; the next comes after `delayMs`. */
  | { readonly kind: 'retrying'; readonly error: WorkerErrorInfo; readonly delayMs: number }
  /** The first cancel request (cancel, timeout, caller's signal, close); later ones change nothing. */
  | { readonly kind: 'cancel-requested'; readonly reason: CancelReason }
  /** Its unread rows are thrown away from now on. */
  | { readonly kind: 'discarded'; readonly reason: DiscardReason }
  /** result(h) took its rows. */
  | { readonly kind: 'claimed' }
  /** Its result was read to the end, or its reader stopped early. */
  | { readonly kind: 'consumed' }
  /** No longer listed or reachable by handle: detached, or pruned after retentionMs (or purge). */
  | { readonly kind: 'untracked'; readonly reason: 'detach' | 'prune' }
  /** The terminal transition. */
  | {
      readonly kind: 'finished';
      readonly state: TerminalState;
      readonly error: WorkerErrorInfo | null;
      readonly commandTag: string | null;
      readonly rowCount: number;
      /**
       * It failed after its own statement ran, and that statement commits as it goes (a CALL or
       * DO that commits, VACUUM, CONCURRENTLY...): part of its work may have committed.
       */
      readonly partial?: boolean;
    };
