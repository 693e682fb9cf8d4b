// Control from SQL, the instance's side (the functions are store/migrations.ts migration 3).
// Each control connection, when it is direct (not behind a pooler), LISTENs on CONTROL_CHANNEL
// and holds a shared advisory lock on CONTROL_LISTENER_KEY, which tells the SQL functions (in
// pg_locks) that this session hears requests. A request names the worker (cookie, and its
// backend pid when running), the action, the grace and the handler: the listening session the
// function chose (the owner the journal names, else the one of lowest pid).
// - The owner (this instance tracks an active worker with that cookie) acts through the facade's
//   ControlActions, so the worker's state stays exact (a cancel ends it 'canceled'), and NOTIFYs
//   an ack with the request's id.
// - The handler, when it is not the owner, waits ACK_WAIT_MS for that ack; when none comes (the
//   owner is dead, detached the worker, or cannot listen) it stops the backend directly: a
//   cancel, sent again now and then, then after the grace a terminate, always by pid and tag.
//   Pause and resume of a worker nobody owns do nothing.
// Anyone may NOTIFY any channel, so a notification proves nothing by itself: it names a row of
// the requests table (<schema>.pg_background_control_requests), whose policy stamps the role that
// inserted it, and the handler acts only if that role passes pg_cancel_backend's rule against the
// worker's backend, as the SQL function checked it, and the table is one a forger cannot have
// filled (marked, row level security forced, owned by a role that could signal the worker
// itself). The row outlives the requester's session, so a one-shot `psql -c` is heard too.
// Anything else is ignored, with a warning PGBG_CONTROL_REFUSED.
// Behind a transaction pooler LISTEN cannot work (the session is not ours): this instance does
// not listen, the functions see nobody listening for it and stop the backend themselves.
import pg from 'pg';
import { BACKEND_PID_SQL, CANCEL_TAGGED_SQL, CONTROL_CHANNEL, CONTROL_LISTEN_SQL, CONTROL_NOTIFY_SQL, CONTROL_REQUESTS_TABLE } from '../catalog.js';
import { TAGGED_BUSY_SQL, TERMINATE_TAGGED_SQL, controlRequestSql } from '../catalog.js';
import { backendKey } from '../pg/index.js';
import type { ControlConnection, ControlSubscriber } from '../pool/control-connection.js';
import { workerTag } from '../store/worker-identity.js';

/** What the facade does for a request it owns (a worker it tracks, by cookie). */
export interface ControlActions {
  /** This instance tracks an active worker with that cookie. */
  owns(cookie: bigint): boolean;
  /** The backend pid of the active worker with that cookie (0 while it is pending). */
  backendPid(cookie: bigint): number;
  /** Like cancel(handle, { graceMs }). */
  cancel(cookie: bigint, graceMs: number): Promise<unknown>;
  /** Like pause(handle) / resume(handle); false where the facade cannot yet. */
  pause(cookie: bigint): Promise<unknown>;
  resume(cookie: bigint): Promise<unknown>;
}

/** How long a handler that does not own the worker waits for the owner's ack. */
export const ACK_WAIT_MS = 1000;
/**
 * How long a direct worker's task waits at most for its instance's control connection to listen
 * before its tag goes out (pool/control-connection.ts): the time a handler gives an owner to
 * answer. A control connection that fails to connect or listen lets the task go at once.
 */
export const LISTEN_WAIT_MS = ACK_WAIT_MS;
/** Pause between checks of a backend stopped directly; a cancel goes again every RESEND_MS. */
const POLL_MS = 20;
const RESEND_MS = 200;

type Action = 'cancel' | 'pause' | 'resume';

/** What a notification says (untrusted: only for routing, until its row is read). */
interface Request {
  readonly id: string;
  /** The schema of the functions and their requests table. */
  readonly schema: string;
  readonly action: Action;
  readonly cookie: bigint;
  /** The worker's backend, 0 when it is not running. */
  readonly pid: number;
  readonly handler: number;
  /** The session that sent it (from the server). */
  readonly sender: number;
}

interface RequestRow {
  action: string;
  cookie: string;
  grace_ms: number;
  running: boolean;
  allowed: boolean;
}

/** 'pgbg:' + the cookie as 16 hex digits (64-bit two's complement) + ':': the tag of any label. */
export function tagPrefix(cookie: bigint): string {
  return workerTag(cookie, null);
}

export class RemoteControl implements ControlSubscriber {
  readonly #control: ControlConnection;
  readonly #actions: ControlActions;
  /** Our listening session's backend pid, null while none listens. */
  #listening: { client: pg.Client; pid: number } | null = null;
  /** Acks awaited, by request id. */
  readonly #acks = new Map<string, () => void>();
  readonly #timers = new Set<NodeJS.Timeout>();
  #closed = false;

  constructor(control: ControlConnection, actions: ControlActions) {
    this.#control = control;
    this.#actions = actions;
    control.subscribe(this);
  }

  async attach(client: pg.Client): Promise<boolean> {
    const { rows } = await client.query<{ pid: number }>(BACKEND_PID_SQL);
    const pid = rows[0]!.pid;
    if (pid !== backendKey(client)?.processID) return false; // a pooler: see the file's opening
    await client.query(CONTROL_LISTEN_SQL);
    this.#listening = { client, pid };
    const forget = () => {
      if (this.#listening?.client === client) this.#listening = null;
    };
    client.once('end', forget);
    client.once('error', forget);
    return true;
  }

  notification(message: pg.Notification): void {
    if (this.#closed || message.channel !== CONTROL_CHANNEL || message.payload === undefined) return;
    const parsed = parse(message.payload, message.processId);
    if (parsed === null) return;
    if (typeof parsed === 'string') {
      this.#acks.get(parsed)?.();
      return;
    }
    this.#handle(parsed).catch(() => {
      // The control connection failed meanwhile: the function's caller sees the worker live on
      // in the view, and may ask again.
    });
  }

  /** Stops waiting for acks and stops direct stops between their steps. */
  close(): void {
    this.#closed = true;
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    for (const resolve of this.#acks.values()) resolve();
    this.#acks.clear();
  }

  async #handle(request: Request): Promise<void> {
    const owned = this.#actions.owns(request.cookie);
    if (!owned && request.handler !== this.#listening?.pid) return;
    if (!owned && (request.action !== 'cancel' || request.pid === 0)) return;
    const tag = tagPrefix(request.cookie);
    const schema = pg.escapeIdentifier(request.schema);
    // The requester's right is judged against the backend that is acted on. The owner acts on its
    // worker by cookie, so against that worker's own backend, never the pid the notification
    // names: anyone may send one naming a backend of their own that carries a copy of the tag.
    // A handler that is not the owner acts on the named pid itself (by pid and tag, below).
    const pid = owned ? this.#actions.backendPid(request.cookie) : request.pid;
    const { rows } = await this.#control.query<RequestRow>(controlRequestSql(schema), [request.id, pid, tag, `${schema}.${CONTROL_REQUESTS_TABLE}`]);
    const row = rows[0];
    if (!row || !row.allowed || row.action !== request.action || row.cookie !== request.cookie.toString()) {
      const why = row ? `its requester may not signal the worker's backend` : `it names no request of a table pg-background trusts`;
      process.emitWarning(`pg-background: a ${request.action} request for worker ${request.cookie} from backend ${request.sender} was ignored: ${why}`, {
        code: 'PGBG_CONTROL_REFUSED',
      });
      return;
    }
    const graceMs = row.grace_ms;
    if (owned) {
      await Promise.all([
        this.#control.query(CONTROL_NOTIFY_SQL, [JSON.stringify({ v: 1, ack: request.id })]),
        this.#act(request.action, request.cookie, graceMs),
      ]);
      return;
    }
    if (!row.running || (await this.#acked(request.id))) return;
    await this.#stopDirectly(request.pid, tag, graceMs);
  }

  #act(action: Action, cookie: bigint, graceMs: number): Promise<unknown> {
    return action === 'cancel' ? this.#actions.cancel(cookie, graceMs) : this.#actions[action](cookie);
  }

  /** True if the owner's ack for `id` comes within ACK_WAIT_MS. */
  #acked(id: string): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => done(false), ACK_WAIT_MS);
      const done = (acked: boolean) => {
        clearTimeout(timer);
        this.#timers.delete(timer);
        this.#acks.delete(id);
        resolve(acked || this.#closed);
      };
      this.#timers.add(timer);
      this.#acks.set(id, () => done(true));
    });
  }

  /** Cancels the backend (again every RESEND_MS) until it is idle or gone, terminates it after `graceMs`. */
  async #stopDirectly(pid: number, tag: string, graceMs: number): Promise<void> {
    const deadline = Date.now() + graceMs;
    let resend = 0;
    while (!this.#closed && Date.now() < deadline) {
      if ((await this.#control.query(TAGGED_BUSY_SQL, [pid, tag])).rows.length === 0) return;
      if (Date.now() >= resend) {
        await this.#control.query(CANCEL_TAGGED_SQL, [pid, tag]);
        resend = Date.now() + RESEND_MS;
      }
      await this.#sleep(Math.min(POLL_MS, deadline - Date.now()));
    }
    if (!this.#closed) await this.#control.query(TERMINATE_TAGGED_SQL, [pid, tag]);
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(
        () => {
          this.#timers.delete(timer);
          resolve();
        },
        Math.max(0, ms),
      );
      this.#timers.add(timer);
    });
  }
}

/** A request, an ack's id, or null for anything else (a payload is untrusted input). */
function parse(payload: string, sender: number): Request | string | null {
  let value: unknown;
  try {
    value = JSON.parse(payload);
  } catch {
    return null;
  }
  if (typeof value !== 'object' || value === null) return null;
  const v = value as Record<string, unknown>;
  if (v.v !== 1) return null;
  if (typeof v.ack === 'string') return v.ack;
  const { id, schema, action, cookie, pid, handler } = v;
  if (
    typeof id !== 'string' ||
    !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(id) ||
    (action !== 'cancel' && action !== 'pause' && action !== 'resume')
  )
    return null;
  if (typeof schema !== 'string' || schema.length === 0 || schema.length > 63) return null;
  if (typeof cookie !== 'string' || !/^-?\d{1,20}$/.test(cookie)) return null;
  const value64 = BigInt(cookie);
  if (BigInt.asIntN(64, value64) !== value64) return null;
  if (!isInt(pid, 0x7fffffff) || !isInt(handler, 0x7fffffff)) return null;
  return { id, schema, action, cookie: value64, pid, handler, sender };
}

function isInt(value: unknown, max: number): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= max;
}
