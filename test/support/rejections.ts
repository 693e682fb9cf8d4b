// Unhandled promise rejections seen while a piece of a test runs: a library call that leaves
// one behind crashes a caller's process (Node's default), so tests assert there are none.

/** Runs `body` and returns the unhandled rejections seen meanwhile (and a few event-loop turns after). */
export async function unhandledRejections(body: () => Promise<void>): Promise<unknown[]> {
  const seen: unknown[] = [];
  const listener = (reason: unknown) => seen.push(reason);
  process.on('unhandledRejection', listener);
  try {
    await body();
    for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
  } finally {
    process.off('unhandledRejection', listener);
  }
  return seen;
}
