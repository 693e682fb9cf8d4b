// COPY to and from the client through pg-copy-streams (copyTo / copyFrom workers): COPY ... TO
// STDOUT as a Readable of Buffer chunks, COPY ... FROM STDIN as a Writable, each a Submittable
// that pg queues like a query. Two adjustments, per stream, to fit a worker connection:
// - The export takes the socket's 'data' listener over while the COPY runs (it reads the socket
//   itself, and asserts that pg's listener is the only one); the worker connection has one of
//   its own (when a byte last came, for the liveness check), so that one is set aside for the
//   COPY, and told of every chunk the export reads, then put back.
// - The end of each is reported once, in our words: the ReadyForQuery after its CommandComplete
//   (pg tells the stream nothing else at the end), or the error; and for the load, whether its
//   CopyDone went out (after which it may have committed even if the connection then broke).
import copyStreams from 'pg-copy-streams';
import type pg from 'pg';
import type { Readable, Writable } from 'node:stream';
import { stopShortcut } from './answer-shortcut.js';
import { internals, socketOf } from './client-internals.js';

/** How a COPY ended: null at its ReadyForQuery, else the ErrorResponse or connection error. */
export interface CopyEnd {
  ended(error: Error | null, commandTag: string | null): void;
}

/** An export: the COPY's data as Buffer chunks (the stream ends at CopyDone). */
export interface CopyOut {
  readonly data: Readable;
}

/** A load: write the data to `data`, end it for CopyDone, destroy it for CopyFail. */
export interface CopyIn {
  readonly data: Writable;
  /** True once CopyDone was written: the COPY may then have committed. */
  readonly doneSent: boolean;
}

/**
 * Runs `text` (a COPY ... TO STDOUT) on `client`. `received` is called for every chunk read off
 * the socket while the export holds it (the worker connection's own 'data' listener is off).
 */
export function startCopyOut(client: pg.Client, text: string, end: CopyEnd, received: () => void): CopyOut {
  const stream = copyStreams.to(text);
  const attach = stream._attach.bind(stream);
  const detach = stream._detach.bind(stream);
  const parse = stream._parse.bind(stream);
  let setAside: ((...args: unknown[]) => void)[] = [];
  stream._attach = () => {
    // The export reads the socket from where pg's parser stopped: the short way for plain answers
    // can no longer tell where messages begin on this connection, and stops (answer-shortcut.ts).
    stopShortcut(client);
    // pg's parser (or the short way's listener in front of it) listens first, since connect;
    // everything after it is ours.
    const socket = socketOf(client);
    setAside = socket.listeners('data').slice(1) as typeof setAside;
    for (const listener of setAside) socket.removeListener('data', listener);
    attach();
  };
  stream._detach = () => {
    detach();
    const socket = socketOf(client);
    for (const listener of setAside) socket.on('data', listener);
    setAside = [];
  };
  stream._parse = (chunk: Buffer) => {
    received();
    return parse(chunk);
  };
  hookEnd(stream, end);
  internals(client).query(stream);
  return { data: stream };
}

/** Runs `text` (a COPY ... FROM STDIN) on `client`; its data goes to the returned Writable. */
export function startCopyIn(client: pg.Client, text: string, end: CopyEnd): CopyIn {
  const stream = copyStreams.from(text);
  let doneSent = false;
  const final = stream._final.bind(stream);
  stream._final = (callback) => {
    final(callback);
    doneSent = true; // written synchronously when the COPY is under way, else on CopyInResponse
  };
  hookEnd(stream, end);
  internals(client).query(stream);
  return {
    data: stream,
    get doneSent() {
      return doneSent;
    },
  };
}

function hookEnd(stream: { handleCommandComplete(m: { text: string }): void; handleReadyForQuery(): void; handleError(e: Error): void }, end: CopyEnd): void {
  let tag: string | null = null;
  let ended = false;
  const finish = (error: Error | null) => {
    if (ended) return;
    ended = true;
    end.ended(error, tag);
  };
  const complete = stream.handleCommandComplete.bind(stream);
  const ready = stream.handleReadyForQuery.bind(stream);
  const failed = stream.handleError.bind(stream);
  stream.handleCommandComplete = (message) => {
    tag = message.text;
    complete(message);
  };
  stream.handleReadyForQuery = () => {
    ready();
    finish(null);
  };
  stream.handleError = (error) => {
    finish(error);
    failed(error);
  };
}
