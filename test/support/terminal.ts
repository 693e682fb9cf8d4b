// A real terminal for tests of full-screen output: a tmux session of a fixed size on a private
// server (its own socket, no user config), running one shell command. screen() is what the
// terminal shows now (tmux capture-pane), flag() one of tmux's pane flags (alternate_on,
// cursor_flag), keys() types into it. close() kills that tmux server and everything in it.
// tmux is a Debian package (.ci/run installs it).
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { promisify } from 'node:util';

const run = promisify(execFile);

export class Terminal {
  readonly #socket: string;
  /** The server's socket file: kill-server leaves it behind. */
  #socketPath = '';

  private constructor(socket: string) {
    this.#socket = socket;
  }

  /** Starts `command` (run by sh) in a terminal of `width` x `height` cells, with `env` added. */
  static async open(command: string, options: { width: number; height: number; env?: Record<string, string> }): Promise<Terminal> {
    const terminal = new Terminal(`pgbg-test-${process.pid}-${randomBytes(4).toString('hex')}`);
    const env = Object.entries(options.env ?? {}).flatMap(([key, value]) => ['-e', `${key}=${value}`]);
    await terminal.#tmux('-f', '/dev/null', 'new-session', '-d', '-x', String(options.width), '-y', String(options.height), ...env, command);
    terminal.#socketPath = await terminal.flag('socket_path');
    return terminal;
  }

  /** The visible screen, one string per row, trailing blanks removed. */
  async screen(): Promise<string[]> {
    const { stdout } = await this.#tmux('capture-pane', '-p');
    return stdout.split('\n').map((line) => line.trimEnd());
  }

  /** A pane format variable, e.g. 'alternate_on' ('1' on the alternate screen) or 'cursor_flag' ('1' cursor shown). */
  async flag(name: string): Promise<string> {
    const { stdout } = await this.#tmux('display-message', '-p', `#{${name}}`);
    return stdout.trim();
  }

  /** tmux key names, e.g. 'C-c'. */
  async keys(...keys: string[]): Promise<void> {
    await this.#tmux('send-keys', ...keys);
  }

  async close(): Promise<void> {
    await this.#tmux('kill-server').catch(() => {});
    if (this.#socketPath) await rm(this.#socketPath, { force: true });
  }

  #tmux(...args: string[]) {
    return run('tmux', ['-u', '-L', this.#socket, ...args], { env: { ...process.env, TMUX: '' } });
  }
}
