// Outcome classification (src/run/classify.ts), offline: the rules that decide a worker's
// terminal state, whether its connection serves again, and whether a failed task provably never
// ran. No server: the errors are built as node-postgres builds them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { classify, neverRan, PARTIAL } from '../src/run/classify.js';
import { WorkerFailure } from '../src/results/error-info.js';

function serverError(code: string, severity: 'ERROR' | 'FATAL' = 'ERROR', message = `error ${code}`): pg.DatabaseError {
  const error = new pg.DatabaseError(message, 0, 'error');
  error.code = code;
  error.severity = severity;
  return error;
}

const base = { cancelRequested: false, connectionFailure: null, pooled: false, partial: false };
const E = 0x45; // 'E' ErrorResponse
const N = 0x4e; // 'N' NoticeResponse
const ONE = 0x31; // '1' ParseComplete

test('success: stopped, no error, the connection serves again', () => {
  assert.deepEqual(classify({ ...base, error: null }), { state: 'stopped', info: null, reusable: true });
});

test('an ERROR: state error with the server fields, the connection serves again after its reset', () => {
  const { state, info, reusable } = classify({ ...base, error: serverError('22012') });
  assert.equal(state, 'error');
  assert.equal(info?.sqlstate, '22012');
  assert.equal(reusable, true);
});

test('canceled only when a cancel was asked and the server confirmed it (57014, 57P01)', () => {
  for (const [error, state] of [
    [serverError('57014'), 'canceled'],
    [serverError('57P01', 'FATAL'), 'canceled'],
    [new WorkerFailure('57014', 'before it ran'), 'canceled'],
    [serverError('22012'), 'error'],
    [new Error('Connection terminated unexpectedly'), 'error'],
  ] as const) {
    assert.equal(classify({ ...base, cancelRequested: true, error }).state, state, String(error));
    assert.equal(classify({ ...base, error }).state, 'error', `${error} without a cancel request`);
  }
});

test('a confirmed cancel of a statement that commits as it goes is an error whose message says what stays, never canceled', () => {
  for (const error of [serverError('57014', 'ERROR', 'canceling statement due to user request'), serverError('57P01', 'FATAL', 'terminating connection')]) {
    const { state, info } = classify({ ...base, cancelRequested: true, partial: true, error });
    assert.equal(state, 'error');
    assert.deepEqual([info?.sqlstate, info?.message], [error.code, `${error.message}${PARTIAL}`]);
  }
  // Ours (the task never reached the server), or an ERROR that is no cancel: as before.
  assert.equal(classify({ ...base, cancelRequested: true, partial: true, error: new WorkerFailure('57014', 'before it ran') }).state, 'canceled');
  assert.deepEqual(classify({ ...base, cancelRequested: true, partial: true, error: serverError('22012') }).info?.message, 'error 22012');
  assert.equal(classify({ ...base, cancelRequested: true, partial: true, error: null }).state, 'stopped');
});

test('a lost connection is 08006 with the reason we gave when we dropped it ourselves', () => {
  const dropped = new Error('the server did not answer within 30000 ms');
  const { info, reusable } = classify({ ...base, error: new Error('Connection terminated'), connectionFailure: dropped });
  assert.deepEqual([info?.sqlstate, info?.message], ['08006', 'the server did not answer within 30000 ms']);
  assert.equal(reusable, false);
});

test('never reused: after a cancel request, a FATAL, a broken connection, or behind a pooler', () => {
  assert.equal(classify({ ...base, cancelRequested: true, error: null }).reusable, false);
  assert.equal(classify({ ...base, error: serverError('57P01', 'FATAL') }).reusable, false);
  assert.equal(classify({ ...base, error: null, connectionFailure: new Error('x') }).reusable, false);
  assert.equal(classify({ ...base, error: null, pooled: true }).reusable, false);
  // A refusal raised here never reached the session.
  assert.equal(classify({ ...base, error: new WorkerFailure('0A000', 'refused') }).reusable, true);
});

test('never ran: the settings round trip died, or a Parse-first task saw an error before its ParseComplete', () => {
  const fatal = serverError('57P01', 'FATAL');
  assert.equal(neverRan(fatal, { kind: 'settings' }, null), true);
  assert.equal(neverRan(serverError('22023'), { kind: 'settings' }, E), false); // the session lives
  assert.equal(neverRan(fatal, { kind: 'task', startsWithParse: true }, E), true);
  assert.equal(neverRan(fatal, { kind: 'task', startsWithParse: true }, N), true);
  assert.equal(neverRan(fatal, { kind: 'task', startsWithParse: true }, ONE), false);
  // A simple query may have committed before anything came back (a procedure, VACUUM).
  assert.equal(neverRan(fatal, { kind: 'task', startsWithParse: false }, E), false);
  assert.equal(neverRan(serverError('57P05', 'FATAL'), { kind: 'task', startsWithParse: false }, E), true); // idle-session timeout
  assert.equal(neverRan(new Error('read ECONNRESET'), { kind: 'task', startsWithParse: true }, null), false);
  assert.equal(neverRan(null, { kind: 'task', startsWithParse: true }, E), false);
  assert.equal(neverRan(fatal, null, E), false);
});
