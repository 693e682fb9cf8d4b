// What names a worker besides its pid: a random cookie (so a stale handle never reaches a new
// worker on a reused pid), the preview of its SQL that list() shows, and the tag its connection
// carries as application_name while it runs (SPEC Part 2, "Tagged connections"), which the
// pg_background_workers view and other processes parse back.
import { getRandomValues } from 'node:crypto';
import { plainLiteral, tagSql } from '../catalog.js';
import { hex64, SplitStatement } from '../pg/index.js';

const PREVIEW_CODE_POINTS = 120;

// Cookies are drawn from the CSPRNG in batches: one call per 256 workers, not one per worker.
const cookies = new BigInt64Array(256);
let nextCookie = cookies.length;

/** 64 random bits as a signed bigint (fits PostgreSQL's int8), never 0. */
export function newCookie(): bigint {
  for (;;) {
    if (nextCookie === cookies.length) {
      getRandomValues(cookies);
      nextCookie = 0;
    }
    const cookie = cookies[nextCookie++]!;
    if (cookie !== 0n) return cookie;
  }
}

/** The first 120 code points, never cutting one in half. */
export function preview(text: string): string {
  if (text.length <= PREVIEW_CODE_POINTS) return text; // no more UTF-16 units than code points wanted
  let end = 0;
  for (let count = 0; count < PREVIEW_CODE_POINTS && end < text.length; count++) {
    end += text.codePointAt(end)! > 0xffff ? 2 : 1;
  }
  return text.slice(0, end);
}

/** application_name of a warm worker connection between tasks (its startup value: a reset restores it). */
export const IDLE_TAG = 'pgbg:idle';
/** application_name of an instance's control connection. */
export const CONTROL_TAG = 'pgbg:control';
/** What every tag starts with: `application_name LIKE 'pgbg:%'` finds every connection of ours. */
export const TAG_PREFIX = 'pgbg:';
/** The server keeps application_name to NAMEDATALEN - 1 bytes. */
const TAG_BYTES = 63;

const encoder = new TextEncoder();

/**
 * The application_name of a connection while it runs worker `cookie`: `pgbg:`, the cookie as 16
 * lowercase hexadecimal digits (its 64-bit two's complement), `:`, then the label's UTF-8 bytes
 * with every byte outside printable ASCII (0x20 to 0x7e) replaced by `_`; all cut to 63 bytes.
 * The result is printable ASCII, so the server stores it unchanged.
 */
export function workerTag(cookie: bigint, label: string | null): string {
  let tag = TAG_PREFIX + hex64(cookie) + ':';
  if (label === null || label.length === 0) return tag;
  const room = TAG_BYTES - tag.length;
  let ascii = true;
  for (let i = 0; i < label.length && i < room; i++) {
    const c = label.charCodeAt(i);
    if (c < 0x20 || c > 0x7e) {
      ascii = false;
      break;
    }
  }
  if (ascii) return tag + label.slice(0, room);
  const bytes = encoder.encode(label);
  for (let i = 0; i < bytes.length && i < room; i++) {
    const b = bytes[i]!;
    tag += b < 0x20 || b > 0x7e ? '_' : String.fromCharCode(b);
  }
  return tag;
}

/** The tag's SET up to the cookie's hex digits, encoded once per process (and for SET LOCAL). */
const TAG_HEAD = Buffer.from(tagSql(TAG_PREFIX, false).slice(0, -1));
const TAG_HEAD_LOCAL = Buffer.from(tagSql(TAG_PREFIX, true).slice(0, -1));
/** The last label's tail of the statement (`:label'`): consecutive tasks mostly share a label. */
let lastLabel: string | null | undefined;
let lastTail: Buffer | null = null;

/**
 * `tagSql(workerTag(cookie, label), local)`, byte for byte, as a task's write carries it: the
 * constant head, the cookie (written as its hex digits), and the label's tail encoded once for a run of tasks
 * with the same label. A label the literal must escape (a quote, a backslash) gets the text.
 */
export function workerTagStatement(cookie: bigint, label: string | null, local: boolean): SplitStatement | string {
  if (label !== lastLabel) {
    // The tag after the cookie's 16 hex digits depends on the label alone.
    const tail = workerTag(0n, label).slice(TAG_PREFIX.length + 16);
    lastTail = plainLiteral(tail) ? Buffer.from(`${tail}'`, 'latin1') : null;
    lastLabel = label;
  }
  if (lastTail === null) return tagSql(workerTag(cookie, label), local);
  return new SplitStatement(local ? TAG_HEAD_LOCAL : TAG_HEAD, cookie, lastTail);
}
