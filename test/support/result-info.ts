// resultInfo() without its timestamps, for comparing the rest with exact values; the
// timestamps are checked here: startedAt no later than finishedAt, finishedAt set once completed.
import assert from 'node:assert/strict';
import type { ResultInfo } from 'pg-background';

export function untimed(info: ResultInfo): Omit<ResultInfo, 'startedAt' | 'finishedAt'> {
  const { startedAt, finishedAt, ...rest } = info;
  assert.ok(startedAt === null || startedAt instanceof Date, `startedAt: ${String(startedAt)}`);
  assert.equal(finishedAt instanceof Date, info.completed, `finishedAt ${String(finishedAt)} with completed ${info.completed}`);
  if (startedAt && finishedAt) assert.ok(startedAt.getTime() <= finishedAt.getTime(), 'startedAt after finishedAt');
  return rest;
}
