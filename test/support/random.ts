// A small seeded PRNG for randomised tests, so that a failing run can be replayed exactly (as
// far as the scheduling of the server and the event loop allow).
import { randomInt } from 'node:crypto';

export interface Random {
  readonly seed: number;
  /** A float in [0, 1). */
  next(): number;
  /** An integer in [min, max]. */
  int(min: number, max: number): number;
  /** true with probability p. */
  chance(p: number): boolean;
  /** One of the options, weighted: [[value, weight], ...]. */
  weighted<T>(options: readonly (readonly [T, number])[]): T;
  /** An independent generator derived from this seed and `salt`. */
  fork(salt: number): Random;
}

/** mulberry32: 32 bits of state, good enough to drive a test. */
export function random(seed: number): Random {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const self: Random = {
    seed: seed >>> 0,
    next,
    int: (min, max) => min + Math.floor(next() * (max - min + 1)),
    chance: (p) => next() < p,
    weighted(options) {
      const total = options.reduce((sum, [, weight]) => sum + weight, 0);
      let pick = next() * total;
      for (const [value, weight] of options) {
        pick -= weight;
        if (pick < 0) return value;
      }
      return options[options.length - 1]![0];
    },
    fork: (salt) => random(Math.imul((seed >>> 0) ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(salt + 1, 0xc2b2ae35)),
  };
  return self;
}

/** The seed from `envName` (decimal or 0x hex) when set, otherwise a fresh random one. */
export function seedFrom(envName: string): number {
  const value = process.env[envName];
  if (value === undefined || value === '') return randomInt(2 ** 32 - 1) >>> 0;
  const seed = Number(value);
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new Error(`${envName} must be an integer from 0 to 4294967295, got ${value}`);
  return seed;
}
