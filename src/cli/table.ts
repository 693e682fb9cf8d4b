// What `list` prints, as pure functions of the monitor's rows and the time: the SHOW TASKS-style
// table (roots newest first, each with its subtasks indented under it in launch order), the
// progress bar, the durations, and --json's rows (the view's own column names; bigints as
// strings, dates in ISO 8601). Text that came from users (labels, phases, errors) has its control
// characters replaced, so a label can never move the cursor or recolour the operator's terminal.
import { WORKER_STATES } from '../core/states.js';
import type { MonitoredWorker } from '../monitor/worker-monitor.js';

const BAR_CELLS = 10;
/** The widest a free-text column gets; longer text ends with '…'. */
const MAX_TEXT = { label: 32, phase: 32, owner: 28, wait: 24 } as const;

export interface TableOptions {
  /** The time the rows were read: decides whether `started` shows a date. */
  now: Date;
}

/** Workers in display order with their depth: roots newest first, subtasks under their root. */
export function treeOrder(workers: readonly MonitoredWorker[]): { worker: MonitoredWorker; depth: number }[] {
  const byCookie = new Map(workers.map((w) => [w.cookie, w]));
  const children = new Map<bigint, MonitoredWorker[]>();
  const tops: MonitoredWorker[] = [];
  for (const worker of workers) {
    // A subtask whose root is not in the list (filtered out, or pruned) stands on its own.
    if (worker.parent !== null && worker.parent !== worker.cookie && byCookie.has(worker.parent)) {
      const list = children.get(worker.parent) ?? [];
      list.push(worker);
      children.set(worker.parent, list);
    } else {
      tops.push(worker);
    }
  }
  const newestFirst = (a: MonitoredWorker, b: MonitoredWorker) => b.launchedAt.getTime() - a.launchedAt.getTime() || compare(a.cookie, b.cookie);
  const oldestFirst = (a: MonitoredWorker, b: MonitoredWorker) => a.launchedAt.getTime() - b.launchedAt.getTime() || compare(a.cookie, b.cookie);
  const out: { worker: MonitoredWorker; depth: number }[] = [];
  const seen = new Set<bigint>();
  const visit = (worker: MonitoredWorker, depth: number) => {
    if (seen.has(worker.cookie)) return; // a cycle in bad data must not loop
    seen.add(worker.cookie);
    out.push({ worker, depth });
    for (const child of (children.get(worker.cookie) ?? []).sort(oldestFirst)) visit(child, depth + 1);
  };
  for (const top of tops.sort(newestFirst)) visit(top, 0);
  // Whatever a cycle kept unreachable still gets a line.
  for (const worker of workers) if (!seen.has(worker.cookie)) visit(worker, 0);
  return out;
}

function compare(a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** `[#####-----]  50%`, or '' when nothing says how far it is. Rounded down: 100% only when done. */
export function progressBar(fraction: number | null): string {
  if (fraction === null || !Number.isFinite(fraction)) return '';
  const f = Math.min(1, Math.max(0, fraction));
  const filled = Math.floor(f * BAR_CELLS + 1e-9);
  const pct = Math.floor(f * 100 + 1e-9);
  return `[${'#'.repeat(filled)}${'-'.repeat(BAR_CELLS - filled)}] ${String(pct).padStart(3)}%`;
}

/** 0.4s, 12.3s, 4m05s, 2h03m, 3d04h. */
export function formatElapsed(ms: number | null): string {
  if (ms === null || !Number.isFinite(ms) || ms < 0) return '';
  if (ms < 60_000) return `${(Math.floor(ms / 100) / 10).toFixed(1)}s`;
  const s = Math.floor(ms / 1000);
  const two = (n: number) => String(n).padStart(2, '0');
  if (s < 3600) return `${Math.floor(s / 60)}m${two(s % 60)}s`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h${two(Math.floor(s / 60) % 60)}m`;
  return `${Math.floor(s / 86_400)}d${two(Math.floor(s / 3600) % 24)}h`;
}

/** Local time: HH:MM:SS the same day as `now`, else YYYY-MM-DD HH:MM. */
export function formatStarted(at: Date | null, now: Date): string {
  if (at === null) return '';
  const two = (n: number) => String(n).padStart(2, '0');
  const time = `${two(at.getHours())}:${two(at.getMinutes())}`;
  if (at.toDateString() === now.toDateString()) return `${time}:${two(at.getSeconds())}`;
  return `${at.getFullYear()}-${two(at.getMonth() + 1)}-${two(at.getDate())} ${time}`;
}

/** Control characters (C0, DEL, C1) become '?': the terminal is the operator's, not the label's. */
export function printable(text: string | null): string {
  return text === null ? '' : text.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
}

function cut(text: string, max: number): string {
  const chars = [...text];
  return chars.length <= max ? text : chars.slice(0, max - 1).join('') + '…';
}

const HEADERS = ['ID', 'SCOPE', 'LABEL', 'STATE', 'PHASE', 'PROGRESS', 'STARTED', 'ELAPSED', 'OWNER', 'WAIT'] as const;

/** The table's lines (header first), each without trailing blanks, and a summary line. */
export function renderTable(workers: readonly MonitoredWorker[], options: TableOptions): string[] {
  if (workers.length === 0) return ['(no workers)'];
  const rows = treeOrder(workers).map(({ worker: w, depth }) => [
    `${depth > 0 ? '  '.repeat(depth - 1) + ' └ ' : ''}${w.pid}:${w.cookie}`,
    w.scope,
    cut(printable(w.label), MAX_TEXT.label),
    w.state,
    cut(printable(w.phase), MAX_TEXT.phase),
    progressBar(w.fractionCompleted),
    formatStarted(w.startedAt ?? w.launchedAt, options.now),
    formatElapsed(w.elapsedMs),
    cut(printable(w.owner), MAX_TEXT.owner),
    cut(printable(w.waitEvent), MAX_TEXT.wait),
  ]);
  const widths = HEADERS.map((header, i) => Math.max(header.length, ...rows.map((row) => [...row[i]!].length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, i) => cell + ' '.repeat(widths[i]! - [...cell].length))
      .join('  ')
      .trimEnd();
  return [line(HEADERS), ...rows.map(line), summary(workers)];
}

/** `(3 workers: 1 running, 2 stopped)`, states in WORKER_STATES' order. */
function summary(workers: readonly MonitoredWorker[]): string {
  const counts = new Map<string, number>();
  for (const w of workers) counts.set(w.state, (counts.get(w.state) ?? 0) + 1);
  const rank = (state: string) => {
    const i = (WORKER_STATES as readonly string[]).indexOf(state);
    return i < 0 ? WORKER_STATES.length : i;
  };
  const states = [...counts]
    .sort(([a], [b]) => rank(a) - rank(b))
    .map(([state, n]) => `${n} ${state}`)
    .join(', ');
  return `(${workers.length} worker${workers.length === 1 ? '' : 's'}: ${states})`;
}

/** The view's columns, in its order, and the monitor's field for each. */
export const VIEW_COLUMNS = [
  ['cookie', 'cookie'],
  ['pid', 'pid'],
  ['label', 'label'],
  ['scope', 'scope'],
  ['parent', 'parent'],
  ['state', 'state'],
  ['phase', 'phase'],
  ['fraction_completed', 'fractionCompleted'],
  ['sql_preview', 'sqlPreview'],
  ['user_name', 'user'],
  ['owner', 'owner'],
  ['attempts', 'attempts'],
  ['launched_at', 'launchedAt'],
  ['started_at', 'startedAt'],
  ['updated_at', 'updatedAt'],
  ['finished_at', 'finishedAt'],
  ['elapsed_ms', 'elapsedMs'],
  ['wait_event', 'waitEvent'],
  ['blocked_by', 'blockedBy'],
  ['sqlstate', 'sqlstate'],
  ['error_message', 'errorMessage'],
  ['command_tag', 'commandTag'],
  ['row_count', 'rowCount'],
] as const satisfies readonly (readonly [string, keyof MonitoredWorker])[];

/** --json: the view's rows, keyed by its column names; bigints as strings, dates in ISO 8601. */
export function jsonRows(workers: readonly MonitoredWorker[]): Record<string, unknown>[] {
  return workers.map((w) =>
    Object.fromEntries(
      VIEW_COLUMNS.map(([column, field]) => {
        const value: unknown = w[field];
        return [column, typeof value === 'bigint' ? value.toString() : value instanceof Date ? value.toISOString() : value];
      }),
    ),
  );
}
