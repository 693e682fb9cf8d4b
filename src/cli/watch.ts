// `list --watch`: the table redrawn in place once a second until Ctrl-C. On a terminal it draws
// on the alternate screen with the cursor hidden, each frame from the top-left corner (cursor
// home, every line cleared to its end, the rest of the screen cleared), lines cut to the
// terminal's width and the frame to its height, so nothing wraps or scrolls; on SIGINT, SIGTERM
// or SIGHUP it puts the terminal back as it found it (cursor shown, main screen restored) and
// ends with status 0. A refresh that fails keeps the last table and says why in the header; the
// next second tries again. Without a terminal (a pipe) it prints one frame after another.
import type { WriteStream } from 'node:tty';

const ENTER = '\x1b[?1049h\x1b[?25l'; // alternate screen, hide the cursor
const LEAVE = '\x1b[?25h\x1b[?1049l'; // show the cursor, back to the main screen
const HOME = '\x1b[H';
const CLEAR_LINE = '\x1b[K';
const CLEAR_BELOW = '\x1b[J';

export interface WatchOptions {
  /** The header's first line, e.g. where it is connected. */
  title: string;
  /** Lines of one frame; rejects when the refresh failed. */
  frame(): Promise<string[]>;
  /** A failure's one-line description (already redacted). */
  describeError(error: unknown): string;
  intervalMs?: number;
}

export async function watch(out: NodeJS.WritableStream & Partial<Pick<WriteStream, 'isTTY' | 'columns' | 'rows'>>, options: WatchOptions): Promise<void> {
  const interval = options.intervalMs ?? 1000;
  const tty = out.isTTY === true;
  let lines: string[] = [];
  let status = '';
  /** When the table shown was read (local time). */
  let at = '';
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  let finish!: () => void;
  const done = new Promise<void>((resolve) => (finish = resolve));

  const draw = () => {
    const header = `${options.title} · ${at} · every ${interval / 1000}s, Ctrl-C to quit${status ? ` · ${status}` : ''}`;
    const all = [header, '', ...lines];
    if (!tty) {
      out.write(all.join('\n') + '\n\n');
      return;
    }
    const width = Math.max(1, out.columns ?? 80);
    const height = Math.max(1, out.rows ?? 24);
    const shown = all.slice(0, height).map((line) => clip(line, width) + CLEAR_LINE);
    // No newline after the last line: writing in the bottom row's last cell must not scroll.
    out.write(HOME + shown.join('\r\n') + CLEAR_BELOW);
  };

  const tick = async () => {
    const started = Date.now();
    try {
      lines = await options.frame();
      at = new Date().toLocaleTimeString('en-GB');
      status = '';
    } catch (error) {
      status = `refresh failed: ${options.describeError(error)}`;
    }
    if (stopped) return;
    draw();
    timer = setTimeout(tick, Math.max(0, interval - (Date.now() - started)));
  };

  const stop = () => {
    if (stopped) return;
    stopped = true;
    clearTimeout(timer);
    finish();
  };
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
  for (const signal of signals) process.on(signal, stop);
  const resize = () => {
    if (!stopped) draw();
  };
  if (tty) {
    out.write(ENTER);
    out.on('resize', resize);
  }
  try {
    void tick();
    await done;
  } finally {
    for (const signal of signals) process.off(signal, stop);
    if (tty) {
      out.off('resize', resize);
      out.write(LEAVE);
    }
  }
}

/** At most `width` code points: a wrapped line would push the frame down. */
function clip(line: string, width: number): string {
  const chars = [...line];
  return chars.length <= width ? line : chars.slice(0, width).join('');
}
