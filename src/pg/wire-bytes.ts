// Pre-encoded frontend messages for the statements of ours that ride ahead of a task in its
// write (the deferred reset, the tag): Parse, Bind and Execute of each in one buffer, so a task's
// prefix goes to the socket as one chunk instead of one buffer (and one entry in the socket's
// corked write queue) per message; the reset's never changes and is encoded once per process.
// Unnamed statement and portal, no parameters, text format: the bytes pg's own serializer
// writes for `parse({ text })`, `bind({ values: [] })` and `execute({})`.

/** Bind of the unnamed portal to the unnamed statement: no formats, no parameters, no result formats. */
const BIND_NONE = Buffer.from([0x42, 0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0]);
/** Execute of the unnamed portal, no row limit. */
const EXECUTE = Buffer.from([0x45, 0, 0, 0, 9, 0, 0, 0, 0, 0]);

/**
 * Parse, Bind and Execute of `text` (one statement, no parameters) behind `lead` (messages
 * encoded before, to go first), all in one buffer.
 */
export function encodeStatement(text: string, lead: Buffer | null = null): Buffer {
  const leadLength = lead === null ? 0 : lead.length;
  const textBytes = Buffer.byteLength(text, 'utf8');
  // Parse: 'P', length, statement name '' (a NUL), the text, NUL, no parameter types (int16 0).
  const parseLength = 4 + 1 + textBytes + 1 + 2;
  const out = Buffer.allocUnsafe(leadLength + 1 + parseLength + BIND_NONE.length + EXECUTE.length);
  let at = lead === null ? 0 : lead.copy(out, 0);
  out[at] = 0x50; // 'P'
  out.writeInt32BE(parseLength, at + 1);
  out[at + 5] = 0;
  at += 6;
  at += out.write(text, at, 'utf8');
  out[at] = 0;
  out[at + 1] = 0;
  out[at + 2] = 0;
  at += 3;
  at += BIND_NONE.copy(out, at);
  EXECUTE.copy(out, at);
  return out;
}
