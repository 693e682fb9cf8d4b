// PostgreSQL's protocol-level CancelRequest: a 16-byte packet on a fresh connection carrying the
// target's process id and secret key. The server signals the backend and closes the socket; we
// resolve on that close, so the caller knows the request was delivered (whether it had any
// effect is only visible on the worker's own connection).
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import type { CancelTarget } from './worker-connection.js';

const CANCEL_REQUEST_CODE = 80877102;
const SSL_REQUEST_CODE = 80877103;

export function sendCancelRequest(target: CancelTarget, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const packet = Buffer.alloc(16);
    packet.writeInt32BE(16, 0);
    packet.writeInt32BE(CANCEL_REQUEST_CODE, 4);
    packet.writeInt32BE(target.processID, 8);
    // The secret key is a signed int32 in node-postgres (it can be negative).
    packet.writeInt32BE(target.secretKey, 12);

    const socket: Socket = target.host.startsWith('/')
      ? netConnect(`${target.host}/.s.PGSQL.${target.port}`)
      : netConnect(target.port, target.host);
    let current: Socket = socket;
    const timer = setTimeout(() => finish(new Error(`cancel request to ${target.host}:${target.port} timed out after ${timeoutMs} ms`)), timeoutMs);
    const finish = (error?: Error) => {
      clearTimeout(timer);
      current.destroy();
      socket.destroy();
      if (error) reject(error);
      else resolve();
    };
    socket.once('error', finish);

    socket.once('connect', () => {
      if (!target.ssl || target.host.startsWith('/')) {
        socket.once('close', () => finish());
        socket.write(packet);
        return;
      }
      // Encrypted connections get an encrypted cancel (managed services may refuse a plain one).
      const sslRequest = Buffer.alloc(8);
      sslRequest.writeInt32BE(8, 0);
      sslRequest.writeInt32BE(SSL_REQUEST_CODE, 4);
      socket.write(sslRequest);
      socket.once('data', (answer: Buffer) => {
        if (answer[0] !== 0x53 /* S */) {
          // The server does not speak TLS here: a plain request on a new socket is all we can do.
          socket.destroy();
          sendCancelRequest({ ...target, ssl: false }, timeoutMs).then(() => finish(), finish);
          return;
        }
        const tlsOptions: ConnectionOptions = typeof target.ssl === 'object' ? { ...target.ssl } : {};
        const secure = tlsConnect({ ...tlsOptions, socket, servername: tlsOptions.servername ?? (isIp(target.host) ? undefined : target.host) });
        current = secure;
        secure.once('error', finish);
        secure.once('secureConnect', () => {
          secure.once('close', () => finish());
          secure.write(packet);
        });
      });
    });
  });
}

function isIp(host: string): boolean {
  return /^[\d.]+$/.test(host) || host.includes(':');
}
