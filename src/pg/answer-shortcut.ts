// The short way for the answers a warm worker connection gets back most: a task's write (the
// deferred reset, the tag, the statement, one Sync) is answered by a dozen small messages that
// carry nothing but a command tag, a reported setting and the transaction status
// (ParseComplete, BindComplete, NoData, CommandComplete, ParameterStatus, ReadyForQuery).
// pg-protocol's parser builds an object per message and the connection emits an event for
// each: 2.2 µs a task, against 0.8 for the five answers of a plain pool.query (measured, the
// same buffers). A chunk made only of whole messages of those kinds, read at a message
// boundary, is handed here to the very listeners pg's own emit would call (the Client's, and
// anyone's on 'parameterStatus'), in order, with the same fields (a ParameterStatus value that only
// our own listeners hear is a getter, decoded if read); any other chunk goes to pg's
// parser untouched, and this side keeps count of message boundaries across chunks so that it
// only ever starts reading where pg's parser would. Whatever it cannot vouch for (a listener
// pg does not have, a COPY export that reads the socket itself) turns it off for good.
import type { EventEmitter } from 'node:events';
import type pg from 'pg';
import { internals, ownStatusListeners, socketOf } from './client-internals.js';

/** Chunks read the short way and chunks given to pg's parser, over the process (for tests and diagnostics). */
export const answerCounts = { short: 0, parsed: 0 };

const PARSE_COMPLETE = 0x31; // '1'
const BIND_COMPLETE = 0x32; // '2'
const NO_DATA = 0x6e; // 'n'
const COMMAND_COMPLETE = 0x43; // 'C'
const PARAMETER_STATUS = 0x53; // 'S'
const READY_FOR_QUERY = 0x5a; // 'Z'

/** What pg-protocol emits for a ParseComplete (a shared object there too). */
const PARSE_COMPLETE_MESSAGE = Object.freeze({ name: 'parseComplete', length: 5 });

/**
 * What pg-protocol emits for a ReadyForQuery, one shared object per transaction status (pg's
 * handler reads `status` and keeps nothing); any other status byte gets an object of its own.
 */
const READY_IDLE = Object.freeze({ name: 'readyForQuery', length: 5, status: 'I' });
const READY_IN_TRANSACTION = Object.freeze({ name: 'readyForQuery', length: 5, status: 'T' });
const READY_FAILED = Object.freeze({ name: 'readyForQuery', length: 5, status: 'E' });

function readyMessage(status: number): { readonly name: string; readonly length: number; readonly status: string } {
  if (status === 0x49) return READY_IDLE; // 'I'
  if (status === 0x54) return READY_IN_TRANSACTION; // 'T'
  if (status === 0x45) return READY_FAILED; // 'E'
  return { name: 'readyForQuery', length: 5, status: String.fromCharCode(status) };
}

type Listener = (message: unknown) => void;

/**
 * The big-endian uint32 at `at` (a message's length field): the bytes read where they are, not
 * through Buffer's readUInt32BE (a call and its bounds checks, ~20 times a task). The four bytes
 * must be within `chunk`.
 */
function uint32(chunk: Buffer, at: number): number {
  return ((chunk[at]! << 24) | (chunk[at + 1]! << 16) | (chunk[at + 2]! << 8) | chunk[at + 3]!) >>> 0;
}

/** Where the first NUL byte of `chunk` from `from` to before `end` is, or -1 (a JS loop: the strings here are short, a native indexOf costs more than the scan). */
function nulIndex(chunk: Buffer, from: number, end: number): number {
  for (let i = from; i < end; i++) if (chunk[i] === 0) return i;
  return -1;
}

/**
 * The short strings answers repeat (command tags such as 'INSERT 0 1', 'SET', 'DISCARD ALL';
 * setting names), decoded once: a small direct-mapped cache of ASCII strings, each hit checked
 * byte for byte against the string's characters. A string of ASCII characters only is exactly
 * what those bytes decode to (any other byte decodes to something else), so a hit is the string
 * the bytes decode to; a miss decodes them as before and keeps the string if it is ASCII. Tags
 * that differ every time ('UPDATE 37', 'SELECT 1234') cost a miss: a decode and one pass over it.
 */
const SHORT = 32;
const SLOTS = 64;
const cachedStrings: string[] = new Array<string>(SLOTS).fill('');

/** The UTF-8 text of `chunk` from `start` to `end`. */
export function decodeShort(chunk: Buffer, start: number, end: number): string {
  const length = end - start;
  if (length <= 0 || length > SHORT) return chunk.toString('utf8', start, end);
  const slot = (length * 7 + chunk[start]! * 3 + chunk[end - 1]!) & (SLOTS - 1);
  const cached = cachedStrings[slot]!;
  if (cached.length === length) {
    let i = 0;
    while (i < length && cached.charCodeAt(i) === chunk[start + i]) i++;
    if (i === length) return cached;
  }
  const text = chunk.toString('utf8', start, end);
  if (text.length === length && isAscii(text)) cachedStrings[slot] = text;
  return text;
}

function isAscii(text: string): boolean {
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) > 0x7f) return false;
  return true;
}

/**
 * A ParameterStatus for listeners that read the value only of the settings they want
 * (client-internals.ts ownStatusListeners): the value is decoded only if read. A worker's tag
 * (application_name, a new value every task) is then never decoded at all.
 */
class LazyParameterStatus {
  readonly name = 'parameterStatus';
  readonly length: number;
  readonly parameterName: string;
  #chunk: Buffer | null;
  readonly #start: number;
  readonly #end: number;
  #value = '';

  constructor(length: number, parameterName: string, chunk: Buffer, start: number, end: number) {
    this.length = length;
    this.parameterName = parameterName;
    this.#chunk = chunk;
    this.#start = start;
    this.#end = end;
  }

  get parameterValue(): string {
    if (this.#chunk !== null) {
      this.#value = this.#chunk.toString('utf8', this.#start, this.#end);
      this.#chunk = null;
    }
    return this.#value;
  }
}

/** pg's Connection as an emitter; `_emitMessage` is set once anyone listens for 'message'. // internal */
type ConnectionEmitter = EventEmitter & { _emitMessage?: boolean };

const offSwitches = new WeakMap<pg.Client, () => void>();

/**
 * Takes the place of pg's 'data' listener on `client`'s socket (call it once, right after
 * connect, before any other 'data' listener): chunks of plain answers are read the short way,
 * every other one goes to pg's parser as before. Leaves everything as it is if pg's listeners
 * are not the ones this was written against.
 */
export function shortcutAnswers(client: pg.Client): void {
  const socket = socketOf(client);
  const connection = internals(client).connection as unknown as ConnectionEmitter;
  const data = socket.listeners('data') as Listener[];
  const onParse = onlyListener(connection, 'parseComplete');
  const onCommand = onlyListener(connection, 'commandComplete');
  const onReady = onlyListener(connection, 'readyForQuery');
  if (data.length !== 1 || !onParse || !onCommand || !onReady) return;
  const parse = data[0]!;
  const framing = new Framing();
  let on = true;
  // The listeners are looked at again only after one was added or removed (the emitter says so:
  // pg's Connection itself hears 'newListener'), not for every chunk; and before the first chunk.
  let listenersChanged = true;
  /** Nobody but the Client hears the kinds read here: none on BindComplete and NoData, the Client's own on the rest. */
  let clientAlone = false;
  /** Only our own listeners hear ParameterStatus (see LazyParameterStatus). Both are set by the first check. */
  let ownStatus = false;
  /** With ownStatus, those listeners as the check found them: called as emit would call them, without its lookup. */
  let statusListeners: Listener[] = [];
  const changed = (): void => {
    listenersChanged = true;
  };
  connection.on('newListener', changed);
  connection.on('removeListener', changed);
  /** The messages of `chunk` (all whole plain answers, see Framing.read), handed out here; false (nothing done) if pg's listeners changed. */
  const short = (chunk: Buffer): boolean => {
    if (listenersChanged) {
      listenersChanged = false;
      clientAlone = connection.listenerCount('bindComplete') === 0 && connection.listenerCount('noData') === 0;
      statusListeners = connection.listeners('parameterStatus') as Listener[];
      ownStatus = statusListeners.every((listener) => ownStatusListeners.has(listener));
      if (
        onlyListener(connection, 'parseComplete') !== onParse ||
        onlyListener(connection, 'commandComplete') !== onCommand ||
        onlyListener(connection, 'readyForQuery') !== onReady
      ) {
        on = false; // someone else listens now: pg's emit is the only way to reach them all
        return false;
      }
    }
    if (connection._emitMessage || !clientAlone) return false;
    for (let at = 0; at < chunk.length;) {
      const code = chunk[at]!;
      const length = uint32(chunk, at + 1);
      const body = at + 5;
      const end = at + 1 + length;
      switch (code) {
        case PARSE_COMPLETE:
          onParse(PARSE_COMPLETE_MESSAGE);
          break;
        case BIND_COMPLETE:
        case NO_DATA:
          break; // nobody listens (checked above), as pg would find
        case COMMAND_COMPLETE:
          onCommand({ name: 'commandComplete', length, text: decodeShort(chunk, body, end - 1) });
          break;
        case PARAMETER_STATUS: {
          const nul = nulIndex(chunk, body, end);
          const parameterName = decodeShort(chunk, body, nul);
          // A listener added while this chunk is handed out (by one of pg's handlers) gets a plain message.
          if (ownStatus && !listenersChanged) {
            const message = new LazyParameterStatus(length, parameterName, chunk, nul + 1, end - 1);
            for (const heard of statusListeners) heard.call(connection, message);
          } else {
            const parameterValue = chunk.toString('utf8', nul + 1, end - 1);
            connection.emit('parameterStatus', { name: 'parameterStatus', length, parameterName, parameterValue });
          }
          break;
        }
        case READY_FOR_QUERY:
          onReady(readyMessage(chunk[body]!));
          break;
      }
      at = end;
    }
    return true;
  };
  const listener = (chunk: Buffer): void => {
    // One pass over the chunk's headers: where the next message begins, and whether it is all plain.
    if (on && framing.read(chunk) && short(chunk)) {
      answerCounts.short++;
      return;
    }
    answerCounts.parsed++;
    parse.call(socket, chunk);
  };
  socket.removeListener('data', parse);
  socket.on('data', listener);
  offSwitches.set(client, () => {
    on = false;
  });
}

/**
 * From now on every chunk of `client`'s goes to pg's parser (a COPY export reads the socket
 * itself, from where pg's parser stopped: this side could no longer tell where messages begin).
 */
export function stopShortcut(client: pg.Client): void {
  offSwitches.get(client)?.();
}

function onlyListener(connection: ConnectionEmitter, event: string): Listener | null {
  const listeners = connection.listeners(event) as Listener[];
  return listeners.length === 1 ? listeners[0]! : null;
}

/**
 * A whole plain answer at `at` (its type byte `code`, its length field `size`): one of the kinds
 * read the short way, well formed (a CommandComplete and a ParameterStatus made of their
 * strings, a ReadyForQuery of its one byte) and not cut by the end of the chunk.
 */
export function plainAnswer(chunk: Buffer, at: number, code: number, size: number): boolean {
  const end = at + 1 + size;
  if (end > chunk.length) return false;
  switch (code) {
    case PARSE_COMPLETE:
    case BIND_COMPLETE:
    case NO_DATA:
      return size === 4;
    case COMMAND_COMPLETE:
      return size >= 5 && nulIndex(chunk, at + 5, end) === end - 1;
    case PARAMETER_STATUS: {
      const nul = nulIndex(chunk, at + 5, end);
      return size >= 6 && nul !== -1 && nul < end - 1 && nulIndex(chunk, nul + 1, end) === end - 1;
    }
    case READY_FOR_QUERY:
      return size === 5;
    default:
      return false;
  }
}

/** Where messages begin in the byte stream pg's parser reads (its type byte and length, then the rest). */
export class Framing {
  /** Bytes of the current message still to come after its header. */
  #rest = 0;
  /** Bytes of a header (type and length, 5) read so far, when a chunk ended inside one. */
  #headerBytes = 0;
  readonly #header = Buffer.alloc(5);

  /** The next byte begins a message. */
  get atBoundary(): boolean {
    return this.#rest === 0 && this.#headerBytes === 0;
  }

  /**
   * `chunk` was read: where does the next message begin? True when the chunk began at a message
   * boundary and is whole plain answers only (see plainAnswer), so that it also ends at one.
   */
  read(chunk: Buffer): boolean {
    const length = chunk.length;
    let plain = length > 0 && this.atBoundary;
    let at = 0;
    while (at < length) {
      if (this.#rest > 0) {
        const take = Math.min(this.#rest, length - at);
        this.#rest -= take;
        at += take;
        continue;
      }
      if (this.#headerBytes === 0 && at + 5 <= length) {
        const size = uint32(chunk, at + 1);
        if (plain) plain = plainAnswer(chunk, at, chunk[at]!, size);
        this.#rest = Math.max(0, size - 4);
        at += 5;
        continue;
      }
      // A header cut by the chunk's end (or completed from the last one).
      plain = false;
      const take = Math.min(5 - this.#headerBytes, length - at);
      chunk.copy(this.#header, this.#headerBytes, at, at + take);
      this.#headerBytes += take;
      at += take;
      if (this.#headerBytes === 5) {
        this.#headerBytes = 0;
        this.#rest = Math.max(0, this.#header.readUInt32BE(1) - 4);
      }
    }
    return plain && this.atBoundary;
  }
}
