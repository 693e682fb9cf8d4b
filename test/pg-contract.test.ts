// The node-postgres behaviours src/pg relies on, pinned without a server: a real pg.Client runs
// over a fake protocol connection (pg's own unit-test technique: a Client takes `connection` in
// its config), the test emits the server's messages as pg's Connection would, and watches what
// the Client does with them and with our readers. If pg changes one of these (its query queue
// is due to change in pg 9), this file fails before any worker misbehaves.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { createServer, type Socket } from 'node:net';
import pg from 'pg';
import {
  backendKey,
  endpointOf,
  onParameterStatus,
  prepareValue,
  sendCancelRequest,
  socketOf,
  startTask,
  TrailerReader,
  transactionStatus,
  type WireReader,
  type WireWriter,
} from '../src/pg/index.js';
import { RowQueue } from '../src/results/row-queue.js';
import { TaskQuery } from '../src/results/task-query.js';
import { planTask, type TaskPlan } from '../src/plan/task-plan.js';

// Every warning of the whole file: our use of pg must raise no DeprecationWarning (see the end).
const warnings: Error[] = [];
process.on('warning', (warning) => warnings.push(warning));

/** What the Client wrote, as words: 'parse:SELECT 1', 'sync', 'query:DISCARD ALL', ... */
class FakeConnection extends EventEmitter {
  readonly writes: string[] = [];
  stream = fakeSocket(this.writes);
  _connecting = false;
  connect(): void {
    this._connecting = true;
  }
  startup(): void {
    this.writes.push('startup');
  }
  query(text: string): void {
    this.writes.push(`query:${text}`);
  }
  parse(config: { text: string }): void {
    this.writes.push(`parse:${config.text}`);
  }
  bind(config: { values: unknown[] }): void {
    this.writes.push(`bind:${JSON.stringify(config.values)}`);
  }
  describe(config: { type: string; name: string }): void {
    this.writes.push(`describe:${config.type}${config.name}`);
  }
  execute(): void {
    this.writes.push('execute');
  }
  sync(): void {
    this.writes.push('sync');
  }
  flush(): void {
    this.writes.push('flush');
  }
  sendCopyFail(message: string): void {
    this.writes.push(`copyFail:${message}`);
  }
  end(): void {
    this.writes.push('end');
    process.nextTick(() => this.emit('end'));
  }
}

function fakeSocket(writes: string[]) {
  return Object.assign(new EventEmitter(), {
    cork: () => writes.push('cork'),
    uncork: () => writes.push('uncork'),
    pause: () => writes.push('pause'),
    resume: () => writes.push('resume'),
    ref() {},
    unref() {},
    destroy() {},
  });
}

/** A Client over a fake connection, before connect(). */
function fakeClient(config: pg.ClientConfig = {}): { client: pg.Client; wire: FakeConnection; errors: Error[] } {
  const wire = new FakeConnection();
  const client = new pg.Client({ ...config, connection: wire } as pg.ClientConfig);
  const errors: Error[] = [];
  client.on('error', (error) => errors.push(error));
  return { client, wire, errors };
}

/** The startup a server answers with: BackendKeyData, ParameterStatus, ReadyForQuery. */
async function connect(client: pg.Client, wire: FakeConnection): Promise<void> {
  const connected = client.connect();
  wire.emit('connect');
  wire.emit('backendKeyData', { processID: 4242, secretKey: 987654 });
  wire.emit('parameterStatus', { parameterName: 'standard_conforming_strings', parameterValue: 'on' });
  wire.emit('readyForQuery', { status: 'I' });
  await connected;
}

async function connected(): Promise<{ client: pg.Client; wire: FakeConnection; errors: Error[] }> {
  const fake = fakeClient();
  await connect(fake.client, fake.wire);
  fake.wire.writes.length = 0;
  return fake;
}

/** A WireReader that records what it is told; `onEnd` runs inside error() / readyForQuery(). */
function recorder(log: string[], sql: string, onEnd: (how: string) => boolean = () => false): WireReader {
  return {
    write(writer: WireWriter) {
      log.push(`${sql}.write`);
      writer.query(sql);
    },
    rowDescription: (fields) => log.push(`${sql}.rowDescription:${fields.map((f) => f.name).join()}`),
    dataRow: (fields, bytes) => log.push(`${sql}.dataRow:${fields.join()}/${bytes}`),
    commandComplete: (tag) => log.push(`${sql}.commandComplete:${tag}`),
    copyInRefusal: () => 'no copy',
    error(error) {
      log.push(`${sql}.error:${error.message}`);
      return onEnd('error');
    },
    readyForQuery() {
      log.push(`${sql}.readyForQuery`);
      return onEnd('readyForQuery');
    },
  };
}

test('BackendKeyData fills processID and secretKey; the endpoint is what pg resolved, its ssl object itself', async () => {
  const ssl = { key: 'private', rejectUnauthorized: false };
  const { client, wire } = fakeClient({ host: 'db.example', port: 6543, ssl });
  assert.equal(backendKey(client), null);
  const endpoint = endpointOf(client);
  assert.deepEqual({ ...endpoint, ssl: null }, { host: 'db.example', port: 6543, ssl: null, sslNegotiation: 'postgres' });
  // pg hides ssl.key from enumeration: a copy ({ ...ssl }) would lose it, the object keeps it.
  assert.equal(endpoint.ssl, ssl);
  assert.equal((endpoint.ssl as { key: string }).key, 'private');
  assert.deepEqual(Object.keys(endpoint.ssl as object), ['rejectUnauthorized']);
  assert.equal(socketOf(client), wire.stream);

  const plain = fakeClient();
  await connect(plain.client, plain.wire);
  assert.deepEqual(backendKey(plain.client), { processID: 4242, secretKey: 987654 });
  await plain.client.end();
});

test('every ParameterStatus of the settings named reaches our listener, at startup and later', async () => {
  const { client, wire } = fakeClient();
  const seen: string[] = [];
  onParameterStatus(client, null, (name, value) => seen.push(`${name}=${value}`));
  const only: string[] = [];
  onParameterStatus(client, new Set(['DateStyle']), (name, value) => only.push(`${name}=${value}`));
  await connect(client, wire);
  wire.emit('parameterStatus', { parameterName: 'DateStyle', parameterValue: 'ISO, MDY' });
  assert.deepEqual(seen, ['standard_conforming_strings=on', 'DateStyle=ISO, MDY']);
  assert.deepEqual(only, ['DateStyle=ISO, MDY'], 'a listener hears only the settings it named');
  await client.end();
});

test('a task is written at once, even behind another task; pg hands out the answers in order and never writes it twice', async () => {
  const { client, wire, errors } = await connected();
  const log: string[] = [];
  startTask(client, recorder(log, 'A'));
  startTask(client, recorder(log, 'B'));
  assert.deepEqual(wire.writes, ['query:A', 'query:B']);
  assert.deepEqual(log, ['A.write', 'B.write']);
  wire.emit('rowDescription', { fields: [{ name: 'a' }] });
  wire.emit('dataRow', { fields: ['1'], length: 11 });
  wire.emit('commandComplete', { text: 'SELECT 1' });
  wire.emit('readyForQuery', { status: 'I' });
  wire.emit('commandComplete', { text: 'SELECT 0' });
  wire.emit('readyForQuery', { status: 'I' });
  assert.deepEqual(log, [
    'A.write',
    'B.write',
    'A.rowDescription:a',
    'A.dataRow:1/11',
    'A.commandComplete:SELECT 1',
    'A.readyForQuery',
    'B.commandComplete:SELECT 0',
    'B.readyForQuery',
  ]);
  assert.deepEqual(wire.writes, ['query:A', 'query:B']);
  assert.deepEqual(errors, []);
  await client.end();
});

test('ReadyForQuery: pg drops the query and records the status before its handler, and starts one queued from it at once', async () => {
  const { client, wire, errors } = await connected();
  const log: string[] = [];
  // A plain Submittable (pg's public protocol for pg-cursor and the like), to see when it starts.
  const next = {
    submit: () => void log.push('next.submit'),
    handleCommandComplete: (message: { text: string }) => void log.push(`next.commandComplete:${message.text}`),
    handleReadyForQuery: () => void log.push('next.readyForQuery'),
    handleError: (error: Error) => void log.push(`next.error:${error.message}`),
  };
  startTask(
    client,
    recorder(log, 'A', () => {
      log.push(`A sees status ${transactionStatus(client)}`);
      client.query(next as unknown as pg.QueryConfig);
      log.push('A returns');
      return false;
    }),
  );
  wire.emit('commandComplete', { text: 'BEGIN' });
  wire.emit('readyForQuery', { status: 'T' });
  // Started before A's handler returned: nothing pg does after the handler can take its place.
  assert.deepEqual(log, ['A.write', 'A.commandComplete:BEGIN', 'A.readyForQuery', 'A sees status T', 'next.submit', 'A returns']);
  wire.emit('commandComplete', { text: 'DISCARD ALL' });
  wire.emit('readyForQuery', { status: 'I' });
  assert.deepEqual(log.slice(6), ['next.commandComplete:DISCARD ALL', 'next.readyForQuery']);
  assert.equal(transactionStatus(client), 'I');
  assert.deepEqual(errors, []);
  await client.end();
});

test("a reader queued from a task's last handler receives the trailer's answers (the reset behind a task)", async () => {
  const { client, wire, errors } = await connected();
  const log: string[] = [];
  const trailer = new TrailerReader(client, (error) => log.push(`trailer done: ${error?.message ?? 'ok'}`));
  startTask(
    client,
    recorder(log, 'A', () => (trailer.expect(), false)),
  );
  wire.emit('commandComplete', { text: 'SELECT 0' });
  wire.emit('readyForQuery', { status: 'I' });
  wire.emit('commandComplete', { text: 'DISCARD ALL' });
  wire.emit('readyForQuery', { status: 'I' });
  // Used again for the next task; this time the reset itself fails.
  startTask(
    client,
    recorder(log, 'B', () => (trailer.expect(), false)),
  );
  wire.emit('readyForQuery', { status: 'I' });
  wire.emit('errorMessage', new pg.DatabaseError('reset failed', 0, 'error'));
  wire.emit('readyForQuery', { status: 'I' });
  assert.deepEqual(log, [
    'A.write',
    'A.commandComplete:SELECT 0',
    'A.readyForQuery',
    'trailer done: ok',
    'B.write',
    'B.readyForQuery',
    'trailer done: reset failed',
  ]);
  assert.deepEqual(errors, []);
  await client.end();
});

test('handleError is terminal: pg drops the task, calls nothing else on it; a reader queued there starts next', async () => {
  const { client, wire, errors } = await connected();
  const log: string[] = [];
  const trailer = new TrailerReader(client, (error) => log.push(`trailer done: ${error?.message ?? 'ok'}`));
  startTask(
    client,
    recorder(log, 'A', () => (trailer.expect(), false)),
  );
  wire.emit('errorMessage', new pg.DatabaseError('division by zero', 0, 'error'));
  wire.emit('readyForQuery', { status: 'I' }); // the task's own: no handler of A runs
  assert.deepEqual(log, ['A.write', 'A.error:division by zero']);
  wire.emit('commandComplete', { text: 'DISCARD ALL' });
  wire.emit('readyForQuery', { status: 'I' });
  assert.deepEqual(log, ['A.write', 'A.error:division by zero', 'trailer done: ok']);
  assert.deepEqual(errors, []);
  await client.end();
});

/** A TaskQuery (with a reset trailer) over the fake connection. */
function runTask(client: pg.Client, plan: TaskPlan, log: string[]) {
  const queue = new RowQueue(65536);
  const trailer = new TrailerReader(client, (error) => log.push(`reset done: ${error?.message ?? 'ok'}`));
  const session = {
    trailer: 'DISCARD ALL',
    taskEnded: () => (log.push('task ended'), trailer.expect()),
    resetDeferred: () => log.push('reset deferred'),
  };
  const task = new TaskQuery(plan, { queue, columns: (fields) => log.push(`columns:${fields.map((f) => f.name).join()}`) }, session);
  startTask(client, task);
  return { task, queue };
}

test('a wrapped task (BEGIN, statements, Sync; COMMIT as a simple Query; reset) is queued again for its COMMIT and ends at its answer', async () => {
  const { client, wire, errors } = await connected();
  const log: string[] = [];
  const { task, queue } = runTask(client, planTask('INSERT INTO t VALUES (1); SELECT 2 AS two'), log);
  const statement = (text: string) => [`parse:${text}`, 'bind:[]', 'execute'];
  assert.deepEqual(wire.writes, [
    'cork',
    ...statement('BEGIN'),
    ...statement('INSERT INTO t VALUES (1)'),
    'parse: SELECT 2 AS two',
    'bind:[]',
    'describe:P',
    'execute',
    'sync',
    'query:COMMIT',
    'query:DISCARD ALL',
    'uncork',
  ]);
  wire.emit('commandComplete', { text: 'BEGIN' });
  wire.emit('commandComplete', { text: 'INSERT 0 1' });
  wire.emit('rowDescription', { fields: [{ name: 'two' }] });
  wire.emit('dataRow', { fields: ['2'], length: 11 });
  wire.emit('commandComplete', { text: 'SELECT 1' });
  wire.emit('readyForQuery', { status: 'T' }); // the first Sync: the task waits on for its COMMIT
  wire.emit('commandComplete', { text: 'COMMIT' });
  wire.emit('readyForQuery', { status: 'I' });
  wire.emit('commandComplete', { text: 'DISCARD ALL' });
  wire.emit('readyForQuery', { status: 'I' });
  assert.deepEqual(await task.done, { error: null, commandTag: 'SELECT', rowCount: 1 });
  assert.deepEqual(queue.shift(), ['2']);
  assert.deepEqual(log, ['columns:two', 'task ended', 'reset done: ok']);
  assert.deepEqual(errors, []);
  await client.end();
});

test('a wrapped task whose statement fails waits, queued from handleError, for the rollback of its COMMIT', async () => {
  const { client, wire, errors } = await connected();
  const log: string[] = [];
  const { task } = runTask(client, planTask('INSERT INTO t VALUES (1); SELECT 1/0'), log);
  wire.emit('commandComplete', { text: 'BEGIN' });
  wire.emit('commandComplete', { text: 'INSERT 0 1' });
  const failure = new pg.DatabaseError('division by zero', 0, 'error');
  failure.code = '22012';
  wire.emit('errorMessage', failure);
  wire.emit('readyForQuery', { status: 'E' });
  assert.deepEqual(log, []); // not over: the COMMIT's answer is still to come
  wire.emit('commandComplete', { text: 'ROLLBACK' });
  wire.emit('readyForQuery', { status: 'I' });
  wire.emit('commandComplete', { text: 'DISCARD ALL' });
  wire.emit('readyForQuery', { status: 'I' });
  const outcome = await task.done;
  assert.equal(outcome.error, failure);
  assert.deepEqual({ ...outcome, error: null }, { error: null, commandTag: null, rowCount: 0 });
  assert.deepEqual(log, ['task ended', 'reset done: ok']);
  assert.deepEqual(errors, []);
  await client.end();
});

test('a CopyInResponse is answered with a CopyFail on the connection pg passes', async () => {
  const { client, wire } = await connected();
  const plan: TaskPlan = { text: 'COPY t FROM STDIN', values: null, pieces: null, statementCount: 1, refusal: null, inBlock: false };
  const { task } = runTask(client, plan, []);
  wire.emit('copyInResponse', {});
  assert.deepEqual(wire.writes.slice(-1), ['copyFail:COPY FROM STDIN is not supported in pg-background workers']);
  wire.emit('errorMessage', new pg.DatabaseError('COPY from stdin failed', 0, 'error'));
  wire.emit('readyForQuery', { status: 'I' });
  wire.emit('commandComplete', { text: 'DISCARD ALL' });
  wire.emit('readyForQuery', { status: 'I' });
  assert.equal((await task.done).error?.message, 'COPY from stdin failed');
  await client.end();
});

test("the cancel request is pg.Connection's 16-byte CancelRequest, resolved when the server hangs up", async () => {
  const received: Buffer[] = [];
  const server = createServer((socket: Socket) => {
    socket.on('data', (chunk) => {
      received.push(chunk);
      if (Buffer.concat(received).length >= 16) socket.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const { port } = server.address() as { port: number };
    const endpoint = { host: '127.0.0.1', port, ssl: false, sslNegotiation: 'postgres' } as const;
    const target = { ...endpoint, processID: 4242, secretKey: 987654, stream: undefined };
    await sendCancelRequest(target, 5000);
    const packet = Buffer.concat(received);
    const words = [0, 4, 8, 12].map((offset) => packet.readInt32BE(offset));
    assert.deepEqual([packet.length, ...words], [16, 16, 80877102, 4242, 987654]); // length, cancel code, key
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
});

test("parameters are serialised by pg's own prepareValue", () => {
  assert.equal(prepareValue([1, null, 'a"b']), '{"1",NULL,"a\\"b"}');
  assert.equal(prepareValue({ a: 1 }), '{"a":1}');
  const bytes = Buffer.from([1, 2]);
  assert.equal(prepareValue(bytes), bytes);
  assert.equal(prepareValue(undefined), null);
});

// Last: node's deprecate() warns once per process, so this sees everything the tests above did.
test('our use of pg raised no DeprecationWarning (and a deprecated use would have been seen)', async () => {
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(
    warnings.map((w) => `${w.name}: ${w.message}`),
    [],
  );
  const { client } = fakeClient();
  void (client as unknown as { queryQueue: unknown }).queryQueue; // deprecated in pg 8, gone in 9
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(
    warnings.map((w) => w.name),
    ['DeprecationWarning'],
  );
});

test('a FATAL after the CommandComplete of our COMMIT is a commit; a terminate before it is none; a crash before it is outcome unknown', async () => {
  for (const [answered, code, expected] of [
    [true, '57P01', null],
    [false, '57P01', '57P01'],
    [false, '57P02', 'outcome unknown'],
  ] as const) {
    const { client, wire } = await connected();
    const { task } = runTask(client, planTask('INSERT INTO t VALUES (1); SELECT 2 AS two'), []);
    wire.emit('commandComplete', { text: 'BEGIN' });
    wire.emit('commandComplete', { text: 'INSERT 0 1' });
    wire.emit('rowDescription', { fields: [{ name: 'two' }] });
    wire.emit('dataRow', { fields: ['2'], length: 11 });
    wire.emit('commandComplete', { text: 'SELECT 1' });
    wire.emit('readyForQuery', { status: 'T' });
    if (answered) wire.emit('commandComplete', { text: 'COMMIT' });
    const fatal = new pg.DatabaseError('terminating connection due to administrator command', 0, 'error');
    fatal.code = code;
    fatal.severity = 'FATAL';
    wire.emit('errorMessage', fatal);
    const { error } = await task.done;
    if (expected === null) assert.equal(error, null);
    else if (expected === '57P01') assert.equal((error as pg.DatabaseError).code, '57P01');
    else assert.match(error!.message, /^outcome unknown: the connection ended while the worker's COMMIT was in flight/);
    client.connection.stream.destroy();
  }
});

test("a FATAL after a simple query's CommandComplete is a commit: the server commits before it says so", async () => {
  const { client, wire } = await connected();
  const { task } = runTask(client, planTask('INSERT INTO t VALUES (1)'), []);
  wire.emit('commandComplete', { text: 'INSERT 0 1' });
  const fatal = new pg.DatabaseError('terminating connection due to administrator command', 0, 'error');
  fatal.code = '57P01';
  fatal.severity = 'FATAL';
  wire.emit('errorMessage', fatal);
  assert.deepEqual(await task.done, { error: null, commandTag: 'INSERT', rowCount: 1 });
  client.connection.stream.destroy();
});
