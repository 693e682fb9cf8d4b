// What names a worker besides its pid: a random cookie (so a stale handle never reaches a new
// worker on a reused pid), and the preview of its SQL that list() shows.
import { getRandomValues } from 'node:crypto';

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
  let end = 0;
  for (let count = 0; count < PREVIEW_CODE_POINTS && end < text.length; count++) {
    end += text.codePointAt(end)! > 0xffff ? 2 : 1;
  }
  return text.slice(0, end);
}
