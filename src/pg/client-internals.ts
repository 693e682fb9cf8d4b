// The parts of a node-postgres Client (and of the Connection it talks through) that this library
// uses beyond pg's typed API, declared structurally, as the small subset we rely on. Members
// marked `// internal` are undeclared by pg (no .d.ts, no docs): they are what pg 9 may change,
// and test/pg-contract.test.ts pins how they behave. Nothing outside src/pg reads a Client's
// internals: it calls the functions here. The one cast to these shapes is `internals()`.
import type { Socket } from 'node:net';
import type pg from 'pg';

/** pg's Connection (lib/connection.js) as a Submittable and this library use it. */
export interface ConnectionInternals {
  /** The socket; with TLS, pg swaps in the TLS socket during the handshake. // internal */
  readonly stream: Socket;
  on(event: 'parameterStatus', listener: (message: { parameterName: string; parameterValue: string }) => void): unknown;
  query(text: string): void;
  parse(config: { text: string }): void;
  bind(config: { values: (string | Buffer | null)[] }): void;
  describe(config: { type: 'P'; name: string }): void;
  execute(config: Record<string, never>): void;
  sync(): void;
  flush(): void;
  /** CopyFail, the answer to a CopyInResponse. // internal */
  sendCopyFail(message: string): void;
}

/** pg's Client beyond @types/pg. */
interface ClientInternals {
  /** From BackendKeyData (null before it came). // internal */
  readonly processID: number | null;
  /** // internal */
  readonly secretKey: number | null;
  /** As pg resolved them from the config, the connection string and the environment. // internal */
  readonly host: string;
  readonly port: number;
  /** The resolved TLS settings; pg keeps their `key` non-enumerable. // internal */
  readonly ssl: pg.ClientConfig['ssl'];
  /** // internal */
  readonly sslNegotiation: 'postgres' | 'direct';
  /** // internal */
  readonly connection: ConnectionInternals;
  /** Status of the last ReadyForQuery (pg >= 8.21). */
  getTransactionStatus?(): TransactionStatus;
  /** What getTransactionStatus() returns, on pg versions without it. // internal */
  _txStatus?: TransactionStatus;
  /** Queues a Submittable (see submittable.ts); typed by @types/pg for its own Query only. */
  query(submittable: object): unknown;
}

/** 'I' idle, 'T' in a transaction, 'E' in a failed one; null before the first ReadyForQuery. */
export type TransactionStatus = 'I' | 'T' | 'E' | null;

/** How pg connected: a cancel request connects the same way (see cancel-request.ts). */
export interface ResolvedEndpoint {
  /** Host name or unix socket directory, and port. */
  readonly host: string;
  readonly port: number;
  /** The ssl object itself, never a copy: pg keeps its `key` non-enumerable. */
  readonly ssl: pg.ClientConfig['ssl'];
  readonly sslNegotiation: 'postgres' | 'direct';
}

export function internals(client: pg.Client): ClientInternals {
  return client as unknown as ClientInternals;
}

/** The client's socket now (after a TLS handshake, the TLS socket). */
export function socketOf(client: pg.Client): Socket {
  return internals(client).connection.stream;
}

/** The protocol connection a Submittable writes to. */
export function connectionOf(client: pg.Client): ConnectionInternals {
  return internals(client).connection;
}

/**
 * Listeners registered by onParameterStatus: they read a message's `parameterName`, and its
 * `parameterValue` only for the names they asked for (answer-shortcut.ts then hands them a
 * message whose value is decoded only if read).
 */
export const ownStatusListeners = new WeakSet<(message: never) => void>();

/**
 * Every ParameterStatus the server sends (at startup, and whenever a reported setting changes)
 * of the settings `names` (null: all of them).
 */
export function onParameterStatus(client: pg.Client, names: ReadonlySet<string> | null, listener: (name: string, value: string) => void): void {
  const heard = (message: { parameterName: string; parameterValue: string }): void => {
    if (names === null || names.has(message.parameterName)) listener(message.parameterName, message.parameterValue);
  };
  ownStatusListeners.add(heard);
  internals(client).connection.on('parameterStatus', heard);
}

/** Transaction status from the last ReadyForQuery. */
export function transactionStatus(client: pg.Client): TransactionStatus {
  const raw = internals(client);
  return raw.getTransactionStatus?.() ?? raw._txStatus ?? null;
}

/** The BackendKeyData (a pooler's own behind a pooler), or null if none came. */
export function backendKey(client: pg.Client): { processID: number; secretKey: number } | null {
  const { processID, secretKey } = internals(client);
  if (processID === null || secretKey === null) return null;
  return { processID, secretKey };
}

export function endpointOf(client: pg.Client): ResolvedEndpoint {
  const { host, port, ssl, sslNegotiation } = internals(client);
  return { host, port, ssl, sslNegotiation };
}

/** Writes a Flush message (the server answers nothing unless something is pending). */
export function writeFlush(client: pg.Client): void {
  internals(client).connection.flush();
}
