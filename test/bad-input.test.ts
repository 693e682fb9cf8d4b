// Property-based tests over every public argument: a call either succeeds — and only when its
// input is valid by the documented rules — or it throws/rejects a PgBackgroundError with a
// documented code (PGBG_INVALID_ARGUMENT for a bad argument, PGBG_UNKNOWN_WORKER /
// PGBG_COOKIE_MISMATCH for a well-formed handle that names no worker). Never another error
// type, never a hang, and a rejected call opens no connection and changes no state.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { inspect } from 'node:util';
import fc from 'fast-check';
import { PgBackground, PgBackgroundError, type PgBackgroundErrorCode, type WorkerHandle, type WorkerInfo } from 'pg-background';
import { until, useDatabase } from './support/database.js';

const db = useDatabase(import.meta.filename);

/** fast-check's seed: fixed, so a failure replays; PGBG_FC_SEED overrides it. */
const FC_SEED = process.env.PGBG_FC_SEED ? Number(process.env.PGBG_FC_SEED) : 0x5eed_1234;
const runs = (numRuns: number) => ({ seed: FC_SEED, numRuns });

const MAX_TIMER_MS = 2_147_483_647;
const MAX_GRACE_MS = 3_600_000;
const MIN_QUEUE = 4096;
const MAX_QUEUE = 268_435_456;
const LAUNCH_KEYS = ['queueSize', 'label', 'signal', 'settings', 'role', 'rowMode', 'types', 'timeoutMs', 'fresh'];
const SETTING_NAME = /^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)*$/;

// ---- the documented rules, as predicates ---------------------------------------------------------

const bytes = (s: string) => Buffer.byteLength(s, 'utf8');
const isIntIn = (v: unknown, min: number, max: number) => typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;
const isPlainObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
const isGoodString = (v: unknown, maxBytes: number, allowEmpty: boolean) =>
  typeof v === 'string' && (allowEmpty || v.length > 0) && v.isWellFormed() && bytes(v) <= maxBytes;
const isGoodSettings = (v: unknown) =>
  isPlainObject(v) &&
  Object.entries(v).every(
    ([key, value]) =>
      SETTING_NAME.test(key) &&
      ((typeof value === 'string' && value.isWellFormed()) || (typeof value === 'number' && Number.isFinite(value)) || typeof value === 'boolean'),
  );
const isGoodTypes = (v: unknown) => v !== null && typeof v === 'object' && typeof (v as { getTypeParser?: unknown }).getTypeParser === 'function';

/** A launch option value is valid (undefined means "not given" and is always valid). */
const launchOptionValid: Record<string, (v: unknown) => boolean> = {
  queueSize: (v) => isIntIn(v, MIN_QUEUE, MAX_QUEUE),
  label: (v) => isGoodString(v, 64, true),
  signal: (v) => v instanceof AbortSignal,
  settings: isGoodSettings,
  role: (v) => isGoodString(v, 63, false),
  rowMode: (v) => v === 'object' || v === 'array',
  types: isGoodTypes,
  timeoutMs: (v) => isIntIn(v, 0, MAX_TIMER_MS),
  fresh: (v) => typeof v === 'boolean',
};

function launchOptionsValid(options: unknown): boolean {
  if (options === undefined) return true;
  if (!isPlainObject(options)) return false;
  return (
    Object.keys(options).every((key) => LAUNCH_KEYS.includes(key)) &&
    LAUNCH_KEYS.every((key) => options[key] === undefined || launchOptionValid[key]!(options[key]))
  );
}

/** What a handle should get: 'valid' (it names a tracked worker) or the documented error code. */
function handleVerdict(handle: unknown, workers: readonly WorkerInfo[]): 'valid' | PgBackgroundErrorCode {
  if (handle === null || typeof handle !== 'object') return 'PGBG_INVALID_ARGUMENT';
  const { pid, cookie } = handle as { pid?: unknown; cookie?: unknown };
  if (!isIntIn(pid, 0, 2 ** 31 - 1) || typeof cookie !== 'bigint') return 'PGBG_INVALID_ARGUMENT';
  // A pid of 0 is what a pending worker's handle says: its cookie still names it.
  if (workers.some((w) => w.cookie === cookie && (w.pid === pid || pid === 0))) return 'valid';
  return workers.some((w) => w.pid === pid) ? 'PGBG_COOKIE_MISMATCH' : 'PGBG_UNKNOWN_WORKER';
}

// ---- arbitraries ---------------------------------------------------------------------------------

/** Values of every type but the one asked for: the "wrong type" cases. */
const someValue = fc.oneof(
  fc.string({ maxLength: 12 }),
  fc.boolean(),
  fc.constant(null),
  fc.bigInt(),
  fc.double(),
  fc.array(fc.nat(), { maxLength: 3 }),
  fc.object({ maxDepth: 1, maxKeys: 3 }),
  fc.constant(Symbol('pg-background')),
  fc.constant(() => 1),
  fc.constant(new Date(0)),
  fc.constant(Buffer.from('16')),
);

/** Not an integer from min to max: out of range, fractional, non-finite, or not a number at all. */
function badInteger(min: number, max: number, alsoValid: (v: unknown) => boolean = () => false): fc.Arbitrary<unknown> {
  return fc
    .oneof(
      fc.maxSafeInteger(),
      fc.integer({ min: -10, max: 10 }).map((d) => (d < 0 ? min + d : max + 1 + d)),
      fc.double({ noInteger: true }),
      fc.constantFrom(NaN, Infinity, -Infinity, -1, 0.5, 1e21, 2 ** 53, Number.MAX_VALUE, -Number.MAX_VALUE, Number.MIN_VALUE, MAX_TIMER_MS + 1),
      // The right number in the wrong clothes.
      fc
        .integer({ min: Math.max(min, -1e6), max: Math.min(max, 1e6) })
        .chain((n) => fc.constantFrom<unknown>(String(n), BigInt(n), Object(n), [n], { valueOf: () => n })),
      someValue,
    )
    .filter((v) => v !== undefined && !isIntIn(v, min, max) && !alsoValid(v));
}

/** Well-formed strings of more than `maxBytes` UTF-8 bytes, built from graphemes. */
const tooLong = (maxBytes: number) =>
  fc.oneof(
    fc.string({ unit: 'grapheme', minLength: 1, maxLength: 40 }).map((s) => {
      let out = s;
      while (bytes(out) <= maxBytes) out += s;
      return out;
    }),
    fc.constantFrom('x'.repeat(maxBytes + 1), 'ż'.repeat(Math.ceil((maxBytes + 1) / 2)), '😀'.repeat(Math.ceil((maxBytes + 1) / 4)), 'é'.repeat(1 << 20)),
  );

/** A short string with a lone surrogate somewhere in it. */
const loneSurrogate = fc
  .tuple(fc.string({ unit: 'grapheme', maxLength: 10 }), fc.integer({ min: 0xd800, max: 0xdfff }), fc.nat())
  .map(([s, unit, at]) => {
    const i = s.length === 0 ? 0 : at % (s.length + 1);
    return s.slice(0, i) + String.fromCharCode(unit) + s.slice(i);
  })
  .filter((s) => !s.isWellFormed());

/** Not a string of 1..maxBytes well-formed UTF-8 bytes (or 0.. when empty is allowed). */
const badString = (maxBytes: number, allowEmpty: boolean) =>
  fc
    .oneof(someValue, tooLong(maxBytes), loneSurrogate, fc.constant(allowEmpty ? 7 : ''), fc.constant(Object('role')))
    .filter((v) => v !== undefined && !isGoodString(v, maxBytes, allowEmpty));

const badEnum = (allowed: readonly string[]) =>
  fc
    .oneof(someValue, fc.constantFrom(...allowed.flatMap((a) => [a.toUpperCase(), ` ${a}`, `${a} `, a.slice(0, -1), Object(a)])), fc.string({ maxLength: 8 }))
    .filter((v) => v !== undefined && !allowed.includes(v as string));

const settingValue = fc.oneof(
  fc.string({ maxLength: 8 }).filter((s) => s.isWellFormed()),
  fc.integer(),
  fc.boolean(),
);
const badSettings = fc
  .oneof(
    fc.oneof(fc.string(), fc.integer(), fc.boolean(), fc.constant(null), fc.array(fc.string(), { maxLength: 2 }), fc.constant(new Map([['work_mem', '1MB']]))),
    // one bad name among good entries
    fc.tuple(
      fc.dictionary(fc.constantFrom('work_mem', 'app.tenant', 'search_path'), settingValue),
      fc.string().filter((k) => !SETTING_NAME.test(k) && k !== '__proto__'),
      settingValue,
    ),
    // one bad value among good entries
    fc.tuple(
      fc.dictionary(fc.constantFrom('work_mem', 'app.tenant'), settingValue),
      fc.constantFrom('statement_timeout', 'app.user_id'),
      fc.oneof(
        fc.constantFrom(NaN, Infinity, -Infinity, null, undefined, 10n, [1], {}, Symbol('x'), () => 'x', new Date(0)),
        loneSurrogate,
      ),
    ),
  )
  .map((v) => {
    if (!Array.isArray(v) || v.length !== 3 || typeof v[1] !== 'string') return v;
    const [good, key, value] = v as [Record<string, unknown>, string, unknown];
    const out: Record<string, unknown> = { ...good };
    Object.defineProperty(out, key, { value, enumerable: true, configurable: true, writable: true });
    return out;
  })
  .filter((v) => !isGoodSettings(v));

const badTypes = fc
  .oneof(someValue, fc.constantFrom({}, { getTypeParser: 'pg' }, { getTypeParser: null }, { parsers: {} }))
  .filter((v) => v !== undefined && !isGoodTypes(v));

const badSignal = fc
  .oneof(
    someValue,
    fc.constantFrom<unknown>({ aborted: false }, { aborted: false, addEventListener() {}, removeEventListener() {} }, new EventTarget()),
    fc.constant(null).map(() => new AbortController()),
  )
  .filter((v) => v !== undefined && !(v instanceof AbortSignal));

const badBoolean = fc.oneof(someValue, fc.constantFrom<unknown>('true', 'false', 1, 0, Object(true))).filter((v) => v !== undefined && typeof v !== 'boolean');

const badLaunchValue: Record<string, fc.Arbitrary<unknown>> = {
  queueSize: badInteger(MIN_QUEUE, MAX_QUEUE),
  label: badString(64, true),
  signal: badSignal,
  settings: badSettings,
  role: badString(63, false),
  rowMode: badEnum(['object', 'array']),
  types: badTypes,
  timeoutMs: badInteger(0, MAX_TIMER_MS),
  fresh: badBoolean,
};

const goodLaunchValue: Record<string, fc.Arbitrary<unknown>> = {
  queueSize: fc.oneof(fc.integer({ min: MIN_QUEUE, max: MAX_QUEUE }), fc.constantFrom(MIN_QUEUE, MAX_QUEUE)),
  label: fc.oneof(
    fc.string({ unit: 'grapheme', maxLength: 64 }).filter((s) => bytes(s) <= 64),
    fc.constantFrom('', 'x'.repeat(64), 'ż'.repeat(32), '😀'.repeat(16)),
  ),
  signal: fc.constant(null).map(() => new AbortController().signal),
  settings: fc.dictionary(fc.constantFrom('app.tenant', 'app.user_id', 'pgbg.flag'), settingValue, { maxKeys: 3 }),
  role: fc.constantFrom('pgbg_no_such_role', 'Ünïcødé role', 'x'.repeat(63)),
  rowMode: fc.constantFrom('object', 'array'),
  types: fc.constant({ getTypeParser: () => (value: string) => value }),
  timeoutMs: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: MAX_TIMER_MS })),
  fresh: fc.boolean(),
};

/** An object with the given own entries, whatever their names (no prototype tricks). */
function objectOf(entries: readonly (readonly [string, unknown])[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of entries) Object.defineProperty(out, key, { value, enumerable: true, configurable: true, writable: true });
  return out;
}

/** Launch options with at least one bad entry (a wrong value, or an unknown key). */
const badLaunchOptions = fc
  .oneof(
    fc.oneof(fc.string(), fc.integer(), fc.boolean(), fc.constant(null), fc.array(fc.anything(), { maxLength: 2 }), fc.constant(Symbol('opts'))),
    fc
      .tuple(
        fc.subarray(LAUNCH_KEYS).chain((keys) => fc.tuple(...keys.map((key) => goodLaunchValue[key]!.map((value) => [key, value] as const)))),
        fc.oneof(
          fc.constantFrom(...LAUNCH_KEYS).chain((key) => badLaunchValue[key]!.map((value) => [key, value] as const)),
          fc
            .oneof(
              fc.string({ minLength: 1 }),
              fc.constantFrom('queuesize', 'QueueSize', 'timeout', 'graceMs', 'values', 'text', 'signal ', 'constructor', 'toString'),
            )
            .filter((key) => !LAUNCH_KEYS.includes(key) && key !== '__proto__')
            .chain((key) => fc.anything().map((value) => [key, value] as const)),
        ),
      )
      .map(([good, bad]) => objectOf([...good.filter(([key]) => key !== bad[0]), bad])),
  )
  .filter((options) => !launchOptionsValid(options));

/** SQL text PostgreSQL would find no statement in: whitespace, comments and semicolons only. */
const pgSpace = fc.constantFrom(' ', '\t', '\n', '\r', '\f', '\v');
const lineComment = fc.string({ maxLength: 20 }).map((s) => `--${s.replace(/[\n\r]/g, '')}\n`);
const blockComment = fc.letrec<{ comment: string }>((tie) => ({
  comment: fc
    .array(
      fc.oneof(
        { depthSize: 'small' },
        fc.string({ maxLength: 10 }).map((s) => s.replaceAll('/*', '/ *').replaceAll('*/', '* /').replace(/[/*]$/, '')),
        tie('comment'),
      ),
      { maxLength: 3 },
    )
    .map((parts) => `/*${parts.join(' ')}*/`),
})).comment;
const noStatement = fc.oneof(
  fc.array(fc.oneof(pgSpace, lineComment, blockComment, fc.constant(';')), { maxLength: 12 }).map((parts) => parts.join('')),
  fc.constantFrom(
    '',
    ';',
    ' ;; ; ',
    '-- only a comment',
    '/* a /* nested */ comment */',
    ' '.repeat(5 << 20),
    '-- huge\n'.repeat(1 << 18),
    `/*${'x'.repeat(4 << 20)}*/`,
    ';'.repeat(100_000),
  ),
);

const circular: Record<string, unknown> = { a: 1 };
circular.self = circular;

/** Worker SQL that is not a string nor { text[, values] } with one statement for its values. */
const badSql = fc.oneof(
  fc.oneof(
    fc.integer(),
    fc.boolean(),
    fc.constant(null),
    fc.constant(undefined),
    fc.bigInt(),
    fc.constant(Symbol('sql')),
    fc.constant(() => 'SELECT 1'),
    fc.array(fc.string(), { maxLength: 2 }),
    fc.constant(Object('SELECT 1')),
    fc.constant(Buffer.from('SELECT 1')),
  ),
  // objects without a string `text`
  fc.object({ maxDepth: 1 }).filter((o) => typeof o.text !== 'string'),
  fc.record({ text: fc.oneof(fc.integer(), fc.constant(null), fc.constant(['SELECT 1']), fc.constant(Object('SELECT 1'))), values: fc.constant([]) }),
  // values that are not an array
  fc.record({
    text: fc.constant('SELECT $1::text'),
    values: fc.oneof(fc.string(), fc.integer(), fc.constant(null), fc.constant({ 0: 'a', length: 1 }), fc.constant(new Set(['a']))),
  }),
  // values that cannot be sent, or too many of them
  fc.record({
    text: fc.constant('SELECT $1::text'),
    values: fc.constantFrom(
      [circular],
      [{ big: 1n }],
      [
        {
          toPostgres: () => {
            throw new Error('no');
          },
        },
      ],
    ),
  }),
  fc.constant({ text: 'SELECT 1', values: Array.from({ length: 65_536 }, () => 1) }),
  // several statements with values
  fc
    .tuple(
      fc.constantFrom('SELECT $1::int', 'INSERT INTO t VALUES ($1)'),
      fc.constantFrom('; SELECT 2', ';SELECT $1', '; /* c */ VACUUM'),
      fc.array(fc.integer(), { minLength: 1, maxLength: 2 }),
    )
    .map(([a, b, values]) => ({ text: a + b, values })),
  // no statement at all
  noStatement,
  noStatement.map((text) => ({ text })),
  noStatement.map((text) => ({ text, values: [] })),
);

/** Handles: anything, near misses of real handles, and well-formed handles that name no worker. */
function handleArbitrary(workers: readonly WorkerInfo[]): fc.Arbitrary<unknown> {
  const pid = fc.oneof(
    fc.constantFrom(...workers.map((w) => w.pid)),
    fc.constantFrom(0, 1, -1, 2 ** 31 - 1, 2 ** 31, 1.5, NaN, Infinity),
    fc.integer({ min: 0, max: 2 ** 31 - 1 }),
    fc.constantFrom(...workers.map((w) => String(w.pid))),
    fc.constantFrom(...workers.map((w) => BigInt(w.pid))),
    someValue,
  );
  const cookie = fc.oneof(
    fc.constantFrom(...workers.map((w) => w.cookie)),
    fc.constantFrom(...workers.map((w) => w.cookie ^ 1n)),
    fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
    fc.bigInt(),
    fc.constantFrom(...workers.map((w) => Number(w.cookie))),
    fc.constantFrom(...workers.map((w) => String(w.cookie))),
    someValue,
  );
  // Well-formed handles: a real pid with a wrong cookie, or a pid that is not ours.
  const wellFormed = fc.record({
    pid: fc.oneof(fc.constantFrom(...workers.map((w) => w.pid)), fc.constant(0), fc.integer({ min: 0, max: 2 ** 31 - 1 })),
    cookie: fc.oneof(fc.constantFrom(...workers.map((w) => w.cookie ^ 1n)), fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), fc.bigInt()),
  });
  return fc.oneof(
    fc.anything(),
    { weight: 3, arbitrary: wellFormed },
    fc.tuple(wellFormed, fc.object({ maxDepth: 1, maxKeys: 3 })).map(([h, extra]) => ({ ...extra, ...h })),
    fc.record({ pid, cookie }),
    fc.record({ pid, cookie }, { requiredKeys: [] }),
    // with extra fields, as a WorkerInfo or a user's own object would have
    fc
      .tuple(
        fc.record({ pid, cookie }),
        fc.dictionary(
          fc.string().filter((k) => k !== 'pid' && k !== 'cookie' && k !== '__proto__'),
          fc.anything(),
          { maxKeys: 4 },
        ),
      )
      .map(([h, extra]) => ({ ...extra, ...h })),
    fc.tuple(pid, cookie).map(([p, c]) => [p, c]),
    fc.tuple(pid, cookie).map(
      ([p, c]) =>
        new Map<string, unknown>([
          ['pid', p],
          ['cookie', c],
        ]),
    ),
  );
}

// ---- checking a call -------------------------------------------------------------------------------

type Settled = { ok: true; value: unknown } | { ok: false; error: unknown };

/** Runs a call (a sync throw counts as a rejection); a call that neither resolves nor rejects fails. */
async function settle(call: () => unknown): Promise<Settled> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('the call neither resolved nor rejected within 10 s')), 10_000);
  });
  try {
    return { ok: true, value: await Promise.race([Promise.resolve().then(call), hang]) };
  } catch (error) {
    return { ok: false, error };
  } finally {
    clearTimeout(timer);
  }
}

const show = (value: unknown) => inspect(value, { depth: 3, maxStringLength: 80, maxArrayLength: 5, breakLength: Infinity });

function assertRejected(outcome: Settled, codes: readonly PgBackgroundErrorCode[], input: unknown): PgBackgroundError {
  if (outcome.ok) assert.fail(`accepted a bad input: ${show(input)} → ${show(outcome.value)}`);
  const { error } = outcome;
  if (!(error instanceof PgBackgroundError) || error.name !== 'PgBackgroundError') {
    assert.fail(`${show(input)} gave ${show(error)} instead of a PgBackgroundError`);
  }
  assert.ok(codes.includes(error.code), `${show(input)} gave ${error.code} (${error.message}), expected ${codes.join(' or ')}`);
  return error;
}

// ---- the instance under test -------------------------------------------------------------------------

const APP = `pgbg-bad-input-${randomBytes(3).toString('hex')}`;
let bg: PgBackground;
let sleeper: WorkerHandle;

/** What must not change: workers (elapsed time aside for running ones), counters, connections. */
async function observe(instance: PgBackground = bg) {
  const list = (await instance.list()).map((w) => ({ ...w, elapsedMs: w.state === 'running' ? -1 : w.elapsedMs }));
  // Not the control connection: an instance opens it in the background once its first worker
  // runs (liveness.test checks when), so a valid launch just before may still be opening it.
  const backends = (await db.backends()).filter((b) => b.application_name !== 'pg-background control');
  return { list, stats: await instance.stats(), backends: backends.length };
}

/** Sets up the instance under test once, inside the first test (after the database exists). */
let setup: Promise<void> | undefined;
const ready = () => (setup ??= prepare());
async function prepare(): Promise<void> {
  // No idle timeout and no liveness checks: nothing may open or close a connection by itself
  // while the properties run, so any change is the call's doing.
  // Untagged: the connections keep APP as their name, which tells them from other files' (tags.test).
  bg = db.background({ application_name: APP, tagConnections: false, idleTimeoutMs: 0, livenessTimeoutMs: 0 });
  sleeper = await bg.launch('SELECT pg_sleep(3600)', { label: 'sleeper' });
  const done = await bg.launch('SELECT 1 AS one', { label: 'done' });
  await bg.wait(done);
  const failed = await bg.submit('SELECT 1/0', { label: 'failed' });
  await bg.wait(failed);
  // Workers and warm connections, and the control connection (open since the first launch).
  const settled = (b: { application_name: string; state: string | null; query: string }) =>
    b.application_name === 'pg-background control' ? b.state === 'idle' : b.application_name === APP && (b.state === 'idle' || b.query.includes('pg_sleep'));
  await until(async () => (await db.backends()).every(settled), 'the connections to settle');
  // Once it has run a second, list() shows what the server says the sleeper does: settled too.
  await until(async () => (await bg.info(sleeper)).waitEvent === 'Timeout:PgSleep', 'the sleeper to be observed');
}

test('constructor: bad options throw PGBG_INVALID_ARGUMENT naming the option, synchronously', async () => {
  await ready();
  const before = (await db.backends()).length;
  const badOption: Record<string, fc.Arbitrary<unknown>> = {
    maxWorkers: badInteger(1, 1000),
    defaultQueueSize: badInteger(MIN_QUEUE, MAX_QUEUE),
    workerTimeoutMs: badInteger(0, MAX_TIMER_MS),
    whenFull: badEnum(['error', 'queue']),
    retentionMs: badInteger(0, Number.MAX_SAFE_INTEGER, (v) => v === Infinity),
    settings: badSettings,
    role: badString(63, false),
    rowMode: badEnum(['object', 'array']),
    types: badTypes,
    maxIdle: badInteger(0, 16),
    minIdle: badInteger(0, 16),
    idleTimeoutMs: badInteger(0, MAX_TIMER_MS),
    cancelGraceMs: badInteger(0, MAX_GRACE_MS),
    livenessTimeoutMs: badInteger(100, MAX_TIMER_MS, (v) => v === 0),
    onCallerExit: badEnum(['finish', 'rollback']),
    tagConnections: someValue.filter((v) => typeof v !== 'boolean'),
    connectionString: someValue.filter((v) => typeof v !== 'string'),
  };
  const cases = fc.oneof(
    fc.constantFrom(...Object.keys(badOption)).chain((name) =>
      badOption[name]!.map((value) => ({
        name,
        options: objectOf([
          ['connectionString', db.url],
          [name, value],
        ]),
      })),
    ),
    // limits that depend on each other
    fc.integer({ min: 1, max: 1000 }).chain((maxWorkers) =>
      fc.oneof(
        fc
          .integer({ min: maxWorkers + 1, max: maxWorkers + 1000 })
          .map((maxIdle) => ({ name: 'maxIdle', options: { connectionString: db.url, maxWorkers, maxIdle } })),
        fc
          .integer({ min: 0, max: maxWorkers - 1 })
          .chain((maxIdle) =>
            fc
              .integer({ min: maxIdle + 1, max: maxIdle + 100 })
              .map((minIdle) => ({ name: 'minIdle', options: { connectionString: db.url, maxWorkers, maxIdle, minIdle } })),
          ),
      ),
    ),
    // not an object at all
    fc
      .oneof(
        fc.string(),
        fc.integer(),
        fc.boolean(),
        fc.constant(null),
        fc.array(fc.anything(), { maxLength: 2 }),
        fc.constant(() => ({})),
      )
      .map((options) => ({ name: 'options', options })),
  );
  await fc.assert(
    fc.asyncProperty(cases, async ({ name, options }) => {
      const error = assertRejected(await settle(() => new PgBackground(options as never)), ['PGBG_INVALID_ARGUMENT'], options);
      assert.ok(error.message.includes(`\`${name}`), `the message names \`${name}\`: ${error.message}`);
      // Synchronously: a constructor cannot reject.
      assert.throws(() => new PgBackground(options as never), PgBackgroundError);
    }),
    runs(400),
  );
  assert.equal((await db.backends()).length, before);
});

test('constructor: accepts exactly the documented ranges (valid and invalid values mixed)', async () => {
  await ready();
  const value = (good: fc.Arbitrary<unknown>, bad: fc.Arbitrary<unknown>) =>
    fc.option(fc.oneof({ weight: 8, arbitrary: good }, { weight: 1, arbitrary: bad }), { nil: undefined, freq: 2 });
  const options = fc.record(
    {
      maxWorkers: value(fc.integer({ min: 1, max: 1000 }), badInteger(1, 1000)),
      defaultQueueSize: value(fc.integer({ min: MIN_QUEUE, max: MAX_QUEUE }), badInteger(MIN_QUEUE, MAX_QUEUE)),
      workerTimeoutMs: value(fc.integer({ min: 0, max: MAX_TIMER_MS }), badInteger(0, MAX_TIMER_MS)),
      retentionMs: value(
        fc.oneof(fc.maxSafeNat(), fc.constant(Infinity)),
        badInteger(0, Number.MAX_SAFE_INTEGER, (v) => v === Infinity),
      ),
      cancelGraceMs: value(fc.integer({ min: 0, max: MAX_GRACE_MS }), badInteger(0, MAX_GRACE_MS)),
      whenFull: value(fc.constantFrom('error', 'queue'), badEnum(['error', 'queue'])),
      maxIdle: value(fc.integer({ min: 0, max: 40 }), badInteger(0, 1000)),
      minIdle: value(fc.integer({ min: 0, max: 20 }), badInteger(0, 1000)),
    },
    { requiredKeys: [] },
  );
  const valid = (o: Record<string, unknown>) => {
    const maxWorkers = o.maxWorkers === undefined ? 16 : o.maxWorkers;
    const maxIdle = o.maxIdle === undefined ? maxWorkers : o.maxIdle;
    return (
      isIntIn(maxWorkers, 1, 1000) &&
      (o.defaultQueueSize === undefined || isIntIn(o.defaultQueueSize, MIN_QUEUE, MAX_QUEUE)) &&
      (o.workerTimeoutMs === undefined || isIntIn(o.workerTimeoutMs, 0, MAX_TIMER_MS)) &&
      (o.retentionMs === undefined || o.retentionMs === Infinity || isIntIn(o.retentionMs, 0, Number.MAX_SAFE_INTEGER)) &&
      (o.cancelGraceMs === undefined || isIntIn(o.cancelGraceMs, 0, MAX_GRACE_MS)) &&
      (o.whenFull === undefined || o.whenFull === 'error' || o.whenFull === 'queue') &&
      isIntIn(maxIdle, 0, maxWorkers as number) &&
      (o.minIdle === undefined || isIntIn(o.minIdle, 0, maxIdle as number))
    );
  };
  let accepted = 0;
  let refused = 0;
  await fc.assert(
    fc.asyncProperty(options, async (o) => {
      const outcome = await settle(() => new PgBackground({ connectionString: db.url, ...o } as never));
      if (valid(o)) {
        assert.ok(outcome.ok, `rejected valid options ${show(o)}: ${show(!outcome.ok && outcome.error)}`);
        const instance = outcome.value as PgBackground;
        assert.equal((await instance.stats()).maxWorkers, o.maxWorkers === undefined ? 16 : o.maxWorkers);
        await instance.close();
        accepted++;
      } else {
        assertRejected(outcome, ['PGBG_INVALID_ARGUMENT'], o);
        refused++;
      }
    }),
    runs(400),
  );
  assert.ok(accepted > 40 && refused > 40, `accepted ${accepted}, refused ${refused}: both kinds must be generated`);
});

test('launch/submit: bad SQL rejects PGBG_INVALID_ARGUMENT naming `sql`, opens nothing, changes nothing', async () => {
  await ready();
  const baseline = await observe();
  await fc.assert(
    fc.asyncProperty(badSql, fc.constantFrom('launch', 'submit') as fc.Arbitrary<'launch' | 'submit'>, async (sql, method) => {
      const error = assertRejected(await settle(() => bg[method](sql as never)), ['PGBG_INVALID_ARGUMENT'], sql);
      assert.match(error.message, /`sql/);
      assert.deepEqual(await observe(), baseline);
    }),
    runs(250),
  );
});

test('launch/submit: bad options (wrong types, out of range, unknown keys) reject PGBG_INVALID_ARGUMENT, open nothing, change nothing', async () => {
  await ready();
  const baseline = await observe();
  await fc.assert(
    fc.asyncProperty(
      fc.oneof(fc.constant('SELECT 1'), fc.constant({ text: 'SELECT $1::int', values: [1] }), badSql),
      badLaunchOptions,
      fc.constantFrom('launch', 'submit') as fc.Arbitrary<'launch' | 'submit'>,
      async (sql, options, method) => {
        assertRejected(await settle(() => bg[method](sql as never, options as never)), ['PGBG_INVALID_ARGUMENT'], { sql, options });
        assert.deepEqual(await observe(), baseline);
      },
    ),
    runs(400),
  );
});

test('launch: labels — at most 64 bytes of well-formed UTF-8 launch and are listed as given; others are rejected', async () => {
  await ready();
  const instance = db.background({ application_name: `${APP}-labels`, tagConnections: false, idleTimeoutMs: 0, livenessTimeoutMs: 0 });
  try {
    const label = fc.oneof(
      fc.string({ unit: 'grapheme', maxLength: 40 }),
      fc.string({ unit: 'grapheme-composite', maxLength: 40 }),
      fc.string({ unit: 'binary', maxLength: 40 }),
      tooLong(64),
      loneSurrogate,
      fc.constantFrom(
        '',
        'a'.repeat(64),
        'a'.repeat(65),
        'a'.repeat(62) + 'ż',
        'a'.repeat(63) + 'ż',
        'a'.repeat(60) + '😀',
        'a'.repeat(61) + '😀',
        '\u0000',
        'e\u0301'.repeat(21),
        'e\u0301'.repeat(22),
      ),
    );
    let launched = 0;
    await fc.assert(
      fc.asyncProperty(label, async (text) => {
        const before = await observe(instance);
        const outcome = await settle(() => instance.submit('SELECT 1', { label: text }));
        if (text.isWellFormed() && bytes(text) <= 64) {
          assert.ok(outcome.ok, `rejected the valid label ${show(text)} (${bytes(text)} bytes): ${show(!outcome.ok && outcome.error)}`);
          const handle = outcome.value as WorkerHandle;
          assert.equal(handle.label, text);
          await instance.wait(handle);
          assert.equal((await instance.info(handle)).label, text);
          await instance.detach(handle);
          launched++;
        } else {
          const error = assertRejected(outcome, ['PGBG_INVALID_ARGUMENT'], text);
          assert.match(error.message, /`label`/);
          assert.deepEqual(await observe(instance), before);
        }
      }),
      runs(200),
    );
    assert.ok(launched > 20, `only ${launched} valid labels were generated`);
  } finally {
    await instance.close();
  }
});

test('launch: options with valid and invalid entries mixed — launches exactly when every entry is valid', async () => {
  await ready();
  const instance = db.background({ application_name: `${APP}-mixed`, tagConnections: false, idleTimeoutMs: 0, livenessTimeoutMs: 0 });
  try {
    const entry = (key: string) =>
      fc.oneof({ weight: 4, arbitrary: goodLaunchValue[key]! }, { weight: 1, arbitrary: badLaunchValue[key]! }).map((value) => [key, value] as const);
    const options = fc.oneof(
      {
        weight: 9,
        arbitrary: fc
          .subarray(LAUNCH_KEYS)
          .chain((keys) => fc.tuple(...keys.map(entry)))
          .map((entries) => objectOf(entries)),
      },
      { weight: 1, arbitrary: badLaunchOptions },
    );
    let launched = 0;
    let rejected = 0;
    await fc.assert(
      fc.asyncProperty(options, async (o) => {
        const before = await observe(instance);
        const outcome = await settle(() => instance.launch('SELECT 1 AS one', o as never));
        if (launchOptionsValid(o)) {
          assert.ok(outcome.ok, `rejected valid options ${show(o)}: ${show(!outcome.ok && outcome.error)}`);
          const handle = outcome.value as WorkerHandle;
          await instance.wait(handle);
          const after = await instance.stats();
          assert.equal(after.workersLaunched, before.stats.workersLaunched + 1);
          await instance.detach(handle);
          launched++;
        } else {
          assertRejected(outcome, ['PGBG_INVALID_ARGUMENT'], o);
          const after = await observe(instance);
          assert.deepEqual([after.list, after.stats], [before.list, before.stats]);
          // A connection of an earlier (cancelled or replaced) task may still be closing: the
          // count can drop meanwhile, but a rejected call must never add one.
          assert.ok(after.backends <= before.backends, `backends ${before.backends} → ${after.backends}`);
          rejected++;
        }
      }),
      runs(250),
    );
    assert.ok(launched > 20 && rejected > 20, `launched ${launched}, rejected ${rejected}: both kinds must be generated`);
  } finally {
    await instance.close();
  }
});

test('handles: every method answers a bad handle with the documented code, naming the pid, and changes nothing', async () => {
  await ready();
  const baseline = await observe();
  const workers = await bg.list();
  const methods: [string, (h: unknown) => unknown][] = [
    ['result', (h) => bg.result(h as never)],
    ['resultInfo', (h) => bg.resultInfo(h as never)],
    ['errorInfo', (h) => bg.errorInfo(h as never)],
    ['wait', (h) => bg.wait(h as never)],
    ['wait with timeout', (h) => bg.wait(h as never, { timeoutMs: 0 })],
    ['cancel', (h) => bg.cancel(h as never)],
    ['cancel with graceMs 0', (h) => bg.cancel(h as never, { graceMs: 0 })],
    ['detach', (h) => bg.detach(h as never)],
    ['info', (h) => bg.info(h as never)],
    ['getProgress', (h) => bg.getProgress(h as never)],
  ];
  const tally: Record<string, number> = {};
  await fc.assert(
    fc.asyncProperty(
      handleArbitrary(workers).filter((h) => handleVerdict(h, workers) !== 'valid'),
      fc.constantFrom(...methods),
      async (handle, [name, call]) => {
        const verdict = handleVerdict(handle, workers) as PgBackgroundErrorCode;
        tally[verdict] = (tally[verdict] ?? 0) + 1;
        const error = assertRejected(await settle(() => call(handle)), [verdict], { method: name, handle });
        if (verdict !== 'PGBG_INVALID_ARGUMENT') {
          const { pid } = handle as WorkerHandle;
          assert.equal(error.pid, pid, name);
          assert.match(error.message, new RegExp(`pid ${pid}\\b`), name);
        }
        assert.deepEqual(await observe(), baseline);
      },
    ),
    runs(600),
  );
  for (const code of ['PGBG_INVALID_ARGUMENT', 'PGBG_UNKNOWN_WORKER', 'PGBG_COOKIE_MISMATCH']) {
    assert.ok((tally[code] ?? 0) > 20, `too few ${code} cases: ${show(tally)}`);
  }
});

test('wait/cancel/cancelAll/close/install: bad options reject PGBG_INVALID_ARGUMENT before anything happens', async () => {
  await ready();
  const baseline = await observe();
  const running = await bg.info(sleeper); // a bad option must neither cancel it nor wait for it
  assert.equal(running.state, 'running');
  const unknownKey = (known: readonly string[]) =>
    fc
      .tuple(
        fc
          .oneof(fc.string({ minLength: 1 }), fc.constantFrom('timeout', 'grace', 'GraceMs', 'timeoutms', 'cancel ', 'force'))
          .filter((k) => !known.includes(k) && k !== '__proto__'),
        fc.anything(),
      )
      .map(([key, value]) => objectOf([[key, value]]));
  const notObject = fc.oneof(fc.string(), fc.integer(), fc.boolean(), fc.constant(null), fc.array(fc.anything(), { maxLength: 2 }), fc.constant(Symbol('o')));
  const calls = fc.oneof(
    fc
      .oneof(
        notObject,
        unknownKey(['timeoutMs', 'signal']),
        badInteger(0, MAX_TIMER_MS).map((timeoutMs) => ({ timeoutMs })),
        badSignal.map((signal) => ({ timeoutMs: 5, signal })),
      )
      .map((options) => ({ method: 'wait', options, call: () => bg.wait(running, options as never) })),
    fc
      .oneof(
        notObject,
        unknownKey(['graceMs']),
        badInteger(0, MAX_GRACE_MS).map((graceMs) => ({ graceMs })),
      )
      .map((options) => ({ method: 'cancel', options, call: () => bg.cancel(running, options as never) })),
    fc
      .oneof(
        notObject,
        unknownKey(['graceMs']),
        badInteger(0, MAX_GRACE_MS).map((graceMs) => ({ graceMs })),
      )
      .map((options) => ({ method: 'cancelAll', options, call: () => bg.cancelAll(options as never) })),
    fc
      .oneof(
        notObject,
        unknownKey(['cancel', 'timeoutMs']),
        badBoolean.map((cancel) => ({ cancel })),
        badInteger(0, MAX_TIMER_MS).map((timeoutMs) => ({ cancel: true, timeoutMs })),
      )
      .map((options) => ({ method: 'close', options, call: () => bg.close(options as never) })),
    fc
      .oneof(
        notObject,
        unknownKey(['schema']),
        badString(63, false).map((schema) => ({ schema })),
      )
      .map((options) => ({ method: 'install', options, call: () => bg.install(options as never) })),
  );
  await fc.assert(
    fc.asyncProperty(calls, async ({ method, options, call }) => {
      assertRejected(await settle(call), ['PGBG_INVALID_ARGUMENT'], { method, options });
      assert.deepEqual(await observe(), baseline);
    }),
    runs(500),
  );
  assert.equal((await bg.info(running)).state, 'running');
});

test('an already-aborted launch signal is not a bad argument: PGBG_ABORTED, and nothing starts', async () => {
  await ready();
  const baseline = await observe();
  for (const method of ['launch', 'submit'] as const) {
    const reason = new Error('aborted before the call');
    const error = assertRejected(await settle(() => bg[method]('SELECT 1', { signal: AbortSignal.abort(reason) })), ['PGBG_ABORTED'], method);
    assert.equal(error.cause, reason);
  }
  assert.deepEqual(await observe(), baseline);
});

test("wait(h, { signal }): aborting the signal rejects the wait with the signal's reason and leaves the worker alone", async () => {
  await ready();
  const baseline = await observe();
  const reason = new Error('stop waiting');
  const controller = new AbortController();
  const waiting = bg.wait(sleeper, { signal: controller.signal });
  controller.abort(reason);
  await assert.rejects(waiting, (error) => error === reason);
  assert.deepEqual(await observe(), baseline);
});

test('wait(h, { signal }) with a signal that is already aborted rejects at once, like launch does', async () => {
  await ready();
  const baseline = await observe();
  const reason = new Error('aborted before the call');
  // The worker sleeps for an hour: a wait that ignores the aborted signal waits for it.
  assert.deepEqual(await settle(() => bg.wait(sleeper, { signal: AbortSignal.abort(reason) })), { ok: false, error: reason });
  assert.deepEqual(await settle(() => bg.wait(sleeper, { signal: AbortSignal.abort(reason), timeoutMs: 60_000 })), { ok: false, error: reason });
  assert.deepEqual(await observe(), baseline);
});
