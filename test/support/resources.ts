// Node's active handles and requests (sockets, timers, pending connects), counted per type, so
// a test can tell whether anything of ours outlived close().

export type ResourceCounts = ReadonlyMap<string, number>;

export function activeResources(): ResourceCounts {
  const counts = new Map<string, number>();
  for (const type of process.getActiveResourcesInfo()) {
    if (type === 'TTYWrap') continue; // the test runner's own output streams
    counts.set(type, (counts.get(type) ?? 0) + 1);
  }
  return counts;
}

/** The resource types there are more of now than in `before`, as 'type: before → now'. */
export function resourcesGrownSince(before: ResourceCounts): string[] {
  return [...activeResources()].filter(([type, n]) => n > (before.get(type) ?? 0)).map(([type, n]) => `${type}: ${before.get(type) ?? 0} → ${n}`);
}
