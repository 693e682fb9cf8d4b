// Tiny validators: each names the option and what it got, and throws PGBG_INVALID_ARGUMENT.
import { invalidArgument, type PgBackgroundError } from '../errors.js';

export const MAX_TIMER_MS = 2_147_483_647; // the largest delay setTimeout honours

export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return value.length > 40 ? `a string of length ${value.length}` : JSON.stringify(value);
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'symbol') return 'a symbol';
  if (typeof value === 'function') return 'a function';
  if (typeof value === 'object') return 'an object';
  return String(value);
}

export function integer(name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw invalidArgument(`Expected \`${name}\` to be an integer from ${min} to ${max}, got ${describe(value)}`);
  }
  return value;
}

export function oneOf<T extends string>(name: string, value: unknown, allowed: readonly T[]): T {
  if (!allowed.includes(value as T)) {
    throw invalidArgument(`Expected \`${name}\` to be ${allowed.map((a) => `'${a}'`).join(' or ')}, got ${describe(value)}`);
  }
  return value as T;
}

export function boolean(name: string, value: unknown): boolean {
  if (typeof value !== 'boolean') throw invalidArgument(`Expected \`${name}\` to be a boolean, got ${describe(value)}`);
  return value;
}

export function nonEmptyString(name: string, value: unknown, maxBytes = Infinity): string {
  if (typeof value !== 'string' || value.length === 0) {
    throw invalidArgument(`Expected \`${name}\` to be a non-empty string, got ${describe(value)}`);
  }
  checkUtf8(name, value, maxBytes);
  return value;
}

/** Well-formed (no lone surrogates) and at most `maxBytes` once encoded as UTF-8. */
export function checkUtf8(name: string, value: string, maxBytes: number): void {
  if (!value.isWellFormed()) throw invalidArgument(`Expected \`${name}\` to be well-formed Unicode (it has a lone surrogate)`);
  if (maxBytes !== Infinity) {
    const bytes = Buffer.byteLength(value, 'utf8');
    if (bytes > maxBytes) throw invalidArgument(`Expected \`${name}\` to be at most ${maxBytes} bytes of UTF-8, got ${bytes} bytes`);
  }
}

export function abortSignal(name: string, value: unknown): AbortSignal {
  if (!(value instanceof AbortSignal)) throw invalidArgument(`Expected \`${name}\` to be an AbortSignal, got ${describe(value)}`);
  return value;
}

export function plainObject(name: string, value: unknown): Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw invalidArgument(`Expected \`${name}\` to be an object, got ${describe(value)}`);
  }
  return value as Record<string, unknown>;
}

/**
 * A copy of the caller's object, each property read once: its own keys, and the `known` keys it
 * inherits. A getter or proxy that throws is a bad argument naming what could not be read
 * (never its raw error), and nothing can change between the checks and the use.
 */
export function readable(name: string, value: object, known: readonly string[]): Record<string, unknown> {
  let own: string[];
  try {
    own = Object.keys(value);
  } catch (error) {
    throw unreadable(name, error);
  }
  // On every launch's path: no Set, array or closure per call (the own keys, then the known
  // ones it inherits, each read once, in that order).
  const copy: Record<string, unknown> = {};
  for (let i = 0; i < own.length; i++) put(copy, own[i]!, readKey(name, value, own[i]!));
  for (let i = 0; i < known.length; i++) {
    const key = known[i]!;
    if (own.includes(key)) continue;
    const property = readKey(name, value, key);
    if (property !== undefined) put(copy, key, property);
  }
  return copy;
}

/** `value[key]`, read once; a getter or a proxy that throws is PGBG_INVALID_ARGUMENT naming `name.key` (or `key` for options). */
export function readKey(name: string, value: object, key: string): unknown {
  try {
    return (value as Record<string, unknown>)[key];
  } catch (error) {
    throw unreadable(name === 'options' ? key : `${name}.${key}`, error);
  }
}

/** defineProperty for a key named __proto__, so it stays data for the checks to see. */
function put(copy: Record<string, unknown>, key: string, property: unknown): void {
  if (key === '__proto__') Object.defineProperty(copy, key, { value: property, enumerable: true, writable: true, configurable: true });
  else copy[key] = property;
}

export function unreadable(name: string, error: unknown): PgBackgroundError {
  return invalidArgument(`Expected \`${name}\` to be readable, but reading it threw: ${error instanceof Error ? error.message : describe(error)}`);
}

/** Rejects keys that are not options, so a typo never passes unnoticed. */
export function knownKeys(name: string, value: Record<string, unknown>, known: readonly string[]): void {
  for (const key of Object.keys(value)) {
    if (!known.includes(key)) throw invalidArgument(`Unknown option \`${key}\` in \`${name}\`; expected one of ${known.map((k) => `\`${k}\``).join(', ')}`);
  }
}
