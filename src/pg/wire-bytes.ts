// Pre-encoded frontend messages for the statements of ours that ride ahead of a task in its
// write (the deferred reset, the tag): Parse, Bind and Execute of each in one buffer, so a task's
// prefix goes to the socket as one chunk instead of one buffer (and one entry in the socket's
// corked write queue) per message; the reset's never changes and is encoded once per process.
// Unnamed statement and portal, no parameters, text format: the bytes pg's own serializer
// writes for `parse({ text })` and `execute({})`, and for `bind({ values: [] })` but for its
// result formats: ours lists none, pg's one (text), which the protocol reads alike.

/** Bind of the unnamed portal to the unnamed statement: no formats, no parameters, no result formats. */
const BIND_NONE = Buffer.from([0x42, 0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0]);
/** Execute of the unnamed portal, no row limit. */
const EXECUTE = Buffer.from([0x45, 0, 0, 0, 9, 0, 0, 0, 0, 0]);
/** Describe of the unnamed portal, and Sync. */
const DESCRIBE_PORTAL = Buffer.from([0x44, 0, 0, 0, 6, 0x50, 0]);
const SYNC = Buffer.from([0x53, 0, 0, 0, 4]);

/** Lowercase hexadecimal digits, as bytes. */
const HEX_DIGITS = Buffer.from('0123456789abcdef', 'latin1');
/** Where a 64-bit value is laid out, big-endian, to be written as hex (one per process). */
const HEX_SCRATCH = new DataView(new ArrayBuffer(8));

/**
 * A statement of ours kept as its encoded head and tail around a 64-bit value written as 16
 * lowercase hexadecimal digits (its two's complement): the tag's SET, whose head never changes,
 * whose tail changes with the label, and whose middle (a worker's cookie) is new every task.
 * Written into a task's buffer as it is: no string of the statement (nor of the digits) is
 * built, flattened or encoded per task.
 */
export class SplitStatement {
  readonly head: Buffer;
  /** The 64-bit value between them, written as its 16 hex digits. */
  readonly value: bigint;
  readonly tail: Buffer;

  constructor(head: Buffer, value: bigint, tail: Buffer) {
    this.head = head;
    this.value = value;
    this.tail = tail;
  }

  get byteLength(): number {
    return this.head.length + 16 + this.tail.length;
  }

  /** The statement's text (for the paths that write it through pg's serializer). */
  get text(): string {
    return this.head.toString('utf8') + hex64(this.value) + this.tail.toString('utf8');
  }

  /** Writes the statement's bytes at `at` of `out`; returns the offset after them. */
  write(out: Buffer, at: number): number {
    out.set(this.head, at);
    at += this.head.length;
    HEX_SCRATCH.setBigUint64(0, this.value); // ToBigUint64: a negative value as its two's complement
    for (let i = 0; i < 8; i++) {
      const byte = HEX_SCRATCH.getUint8(i);
      out[at++] = HEX_DIGITS[byte >>> 4]!;
      out[at++] = HEX_DIGITS[byte & 15]!;
    }
    out.set(this.tail, at);
    return at + this.tail.length;
  }
}

/** A 64-bit value as 16 lowercase hexadecimal digits (its two's complement), as SplitStatement writes it. */
export function hex64(value: bigint): string {
  return BigInt.asUintN(64, value).toString(16).padStart(16, '0');
}

/** A statement of ours: its text, or its split form. */
export type OwnStatement = string | SplitStatement;

/** The text of a statement of ours. */
export function statementText(statement: OwnStatement): string {
  return typeof statement === 'string' ? statement : statement.text;
}

function byteLengthOf(statement: OwnStatement): number {
  return typeof statement === 'string' ? Buffer.byteLength(statement, 'utf8') : statement.byteLength;
}

function writeInt32(out: Buffer, at: number, value: number): void {
  out[at] = value >>> 24;
  out[at + 1] = value >>> 16;
  out[at + 2] = value >>> 8;
  out[at + 3] = value;
}

/**
 * Parse, Bind and Execute of `text` (one statement, no parameters) behind `lead` (messages
 * encoded before, to go first), all in one buffer.
 */
export function encodeStatement(text: OwnStatement, lead: Buffer | null = null): Buffer {
  const leadLength = lead === null ? 0 : lead.length;
  // Parse: 'P', length, statement name '' (a NUL), the text, NUL, no parameter types (int16 0).
  const parseLength = 4 + 1 + byteLengthOf(text) + 1 + 2;
  const out = Buffer.allocUnsafe(leadLength + 1 + parseLength + BIND_NONE.length + EXECUTE.length);
  if (lead !== null) out.set(lead, 0);
  writeStatement(out, leadLength, text, parseLength);
  return out;
}

/**
 * Parse of `text` into the unnamed statement, at `at` of `out`: 'P', `length`, statement name ''
 * (a NUL), the text, NUL, no parameter types (int16 0). Returns the offset after it.
 */
function writeParse(out: Buffer, at: number, text: OwnStatement, length: number): number {
  out[at] = 0x50; // 'P'
  writeInt32(out, at + 1, length);
  out[at + 5] = 0;
  at += 6;
  at = typeof text === 'string' ? at + out.write(text, at, 'utf8') : text.write(out, at);
  out[at] = 0;
  out[at + 1] = 0;
  out[at + 2] = 0;
  return at + 3;
}

/** Parse, Bind and Execute of a statement of ours without parameters, at `at`; returns the offset after it. */
function writeStatement(out: Buffer, at: number, text: OwnStatement, parseLength: number): number {
  at = writeParse(out, at, text, parseLength);
  out.set(BIND_NONE, at);
  out.set(EXECUTE, at + BIND_NONE.length);
  return at + BIND_NONE.length + EXECUTE.length;
}

/** Byte lengths of the values of the task being encoded (reused: no array per task). */
const valueBytes: number[] = [];

/**
 * A whole single-statement task in one buffer: `lead` (its prefix, encoded before), then
 * (`leadStatement`, a statement of ours without parameters: the tag) its Parse, Bind and Execute,
 * written in place rather than encoded into a buffer of its own first, then Parse of
 * `text`, Bind of `values` (text format, a Buffer as binary, null as NULL; text results),
 * Describe of the portal, Execute, then (`trailer`, a statement of ours without parameters, the
 * journal's) its Parse, Bind and Execute, and Sync. Byte for byte what pg's serializer writes for
 * `parse`, `bind`, `describe({ type: 'P' })`, `execute({})` (and `parse`, `bind({ values: [] })`,
 * `execute({})` of the trailer) and `sync()`.
 */
export function encodeExtended(
  lead: Buffer | null,
  text: string,
  values: readonly (string | Buffer | null)[],
  trailer: string | null = null,
  leadStatement: OwnStatement | null = null,
): Buffer {
  const statement = BIND_NONE.length + EXECUTE.length;
  const leadParseLength = leadStatement === null ? 0 : 4 + 1 + byteLengthOf(leadStatement) + 1 + 2;
  const leadLength = (lead === null ? 0 : lead.length) + (leadStatement === null ? 0 : 1 + leadParseLength + statement);
  const parseLength = 4 + 1 + Buffer.byteLength(text, 'utf8') + 1 + 2;
  const trailerParseLength = trailer === null ? 0 : 4 + 1 + Buffer.byteLength(trailer, 'utf8') + 1 + 2;
  const trailerLength = trailer === null ? 0 : 1 + trailerParseLength + statement;
  const count = values.length;
  let bindLength = 4 + 1 + 1 + 2 + 2 * count + 2 + 4; // ... + result formats: 1, text
  for (let i = 0; i < count; i++) {
    const value = values[i];
    const bytes = value === null || value === undefined ? 0 : typeof value === 'string' ? Buffer.byteLength(value, 'utf8') : value.length;
    valueBytes[i] = bytes;
    bindLength += 4 + bytes;
  }
  const out = Buffer.allocUnsafe(leadLength + 1 + parseLength + 1 + bindLength + DESCRIBE_PORTAL.length + EXECUTE.length + trailerLength + SYNC.length);
  let at = 0;
  if (lead !== null) {
    out.set(lead, 0);
    at = lead.length;
  }
  if (leadStatement !== null) at = writeStatement(out, at, leadStatement, leadParseLength);
  at = writeParse(out, at, text, parseLength);
  out[at] = 0x42; // 'B'
  writeInt32(out, at + 1, bindLength);
  out[at + 5] = 0; // portal ''
  out[at + 6] = 0; // statement ''
  out[at + 7] = count >>> 8;
  out[at + 8] = count;
  at += 9;
  for (let i = 0; i < count; i++) {
    out[at++] = 0;
    out[at++] = values[i] instanceof Buffer ? 1 : 0;
  }
  out[at] = count >>> 8;
  out[at + 1] = count;
  at += 2;
  for (let i = 0; i < count; i++) {
    const value = values[i];
    if (value === null || value === undefined) {
      writeInt32(out, at, -1);
      at += 4;
    } else {
      writeInt32(out, at, valueBytes[i]!);
      at += 4;
      if (typeof value === 'string') at += out.write(value, at, 'utf8');
      else {
        out.set(value, at);
        at += value.length;
      }
    }
  }
  out[at] = 0; // one result format: text
  out[at + 1] = 1;
  out[at + 2] = 0;
  out[at + 3] = 0;
  at += 4;
  out.set(DESCRIBE_PORTAL, at);
  at += DESCRIBE_PORTAL.length;
  out.set(EXECUTE, at);
  at += EXECUTE.length;
  if (trailer !== null) at = writeStatement(out, at, trailer, trailerParseLength);
  out.set(SYNC, at);
  return out;
}
