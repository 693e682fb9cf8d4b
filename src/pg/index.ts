// The only code that touches node-postgres internals (client.connection and its socket, the
// Submittable protocol, ParameterStatus, BackendKeyData, the transaction status, pg.Connection
// for a cancel request, pg/lib/utils.js). Everything else uses pg's typed API and what this
// folder exports; test/pg-contract.test.ts pins the pg behaviours it relies on, without a
// server. When pg changes its query queue (pg 9), this folder and that test are the migration.
// It imports nothing of this library's: data flows into it, never back out of it to a caller.
export {
  backendKey,
  endpointOf,
  onParameterStatus,
  socketOf,
  transactionStatus,
  writeFlush,
  type ResolvedEndpoint,
  type TransactionStatus,
} from './client-internals.js';
export { answerCounts, shortcutAnswers } from './answer-shortcut.js';
export { sendCancelRequest, type CancelTarget } from './cancel-request.js';
export { prepareValue } from './prepare-value.js';
export { startTask, TrailerReader, type WireField, type WireReader, type WireWriter } from './submittable.js';
export { encodeExtended, encodeStatement, hex64, SplitStatement, statementText, type OwnStatement } from './wire-bytes.js';
export { startCursor, type CursorReader, type CursorSink } from './cursor-reader.js';
export { startCopyIn, startCopyOut, type CopyEnd, type CopyIn, type CopyOut } from './copy-streams.js';
