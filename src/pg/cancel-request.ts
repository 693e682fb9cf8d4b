// PostgreSQL's protocol-level CancelRequest: a 16-byte packet on a fresh connection carrying the
// target's process id and secret key. The server signals the backend and closes the socket; we
// resolve on that close, so the caller knows the request was delivered (whether it had any
// effect is only visible on the worker's own connection). The connection is node-postgres' own
// (pg.Connection), made from the worker connection's resolved settings, so it connects exactly
// as the worker did: same stream factory, same TLS options (ssl.key included, which pg keeps
// non-enumerable), same SSLRequest or direct negotiation, same certificate host and SNI rules.
import pg from 'pg';
import type { Socket } from 'node:net';
import type { ResolvedEndpoint } from './client-internals.js';

/** The pg.Connection members used here that @types/pg does not declare. */
interface CancelWire extends NodeJS.EventEmitter {
  readonly stream: Socket;
  /** // internal */
  connect(port: number | string, host?: string): void;
  /** // internal */
  requestSsl(): void;
  /** CancelRequest (pg-protocol's serialize.cancel). // internal */
  cancel(processID: number, secretKey: number): void;
}

/** A backend to cancel: where and how its connection was made, and its BackendKeyData. */
export interface CancelTarget extends ResolvedEndpoint {
  readonly processID: number;
  readonly secretKey: number;
  /** The config's stream factory (or socket), if it had one. */
  readonly stream: pg.ClientConfig['stream'];
}

export function sendCancelRequest(target: CancelTarget, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const wire = new pg.Connection({
      // A factory makes a socket of its own; a socket instance is the worker's, never ours to use.
      stream: typeof target.stream === 'function' ? target.stream : undefined,
      ssl: target.ssl,
      sslNegotiation: target.sslNegotiation,
    } as pg.ConnectionConfig) as unknown as CancelWire;
    // With TLS, pg swaps wire.stream for the TLS socket: keep the raw one to close both.
    const raw = wire.stream;
    let settled = false;
    /** The request is on its way: written in clear, or behind a completed TLS handshake. */
    let sent = false;
    const finish = (error?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      wire.stream.destroy();
      raw.destroy();
      if (error) reject(error);
      else resolve();
    };
    const where = target.host.startsWith('/') ? `${target.host}/.s.PGSQL.${target.port}` : `${target.host}:${target.port}`;
    const timer = setTimeout(() => finish(new Error(`cancel request to ${where} timed out after ${timeoutMs} ms`)), timeoutMs);
    // A failed handshake (certificate, refused TLS) is an error, never a delivered request.
    wire.on('error', (error: Error) => finish(error));
    // pg reports the socket's close as 'end': after the request, the server read it and hung up;
    // before it (a pooler or proxy closing on us), nothing was delivered.
    wire.on('end', () => finish(sent ? undefined : new Error(`${where} closed the connection before the cancel request was sent`)));
    wire.once('connect', () => {
      if (target.ssl) {
        if (target.sslNegotiation !== 'direct') wire.requestSsl();
        return;
      }
      wire.cancel(target.processID, target.secretKey);
      sent = true;
    });
    wire.once('sslconnect', () => {
      wire.stream.once('secureConnect', () => (sent = true));
      wire.cancel(target.processID, target.secretKey);
    });
    if (target.host.startsWith('/')) wire.connect(`${target.host}/.s.PGSQL.${target.port}`);
    else wire.connect(target.port, target.host);
  });
}
