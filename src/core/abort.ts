// Waiting with AbortSignals instead of hand-made timer races: a wait ends when its promise
// settles, when its deadline passes, or when the caller's signal aborts (AbortSignal.any of the
// two), whichever is first, and leaves no listener or timer behind. A leaf: it imports nothing.

/** Hears a worker's cancel while its start waits in the slot queue (pool/worker-slots.ts): an object, so that a queue entry is its own listener. */
export interface AbortListener {
  aborted(reason: unknown): void;
}

/**
 * True once `promise` settles (either way), false if `timeoutMs` passes first (never, if
 * undefined or Infinity); rejects with the signal's reason if `signal` aborts first.
 */
export function untilSettled(promise: Promise<unknown>, timeoutMs: number | undefined, signal: AbortSignal | null): Promise<boolean> {
  if (signal?.aborted) return Promise.reject(signal.reason);
  const timer = timeoutMs === undefined || timeoutMs === Infinity ? null : deadline(timeoutMs);
  const stop = timer && signal ? AbortSignal.any([signal, timer.signal]) : (timer?.signal ?? signal);
  if (!stop) return promise.then(settled, settled);
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      timer?.clear();
      if (signal?.aborted) reject(signal.reason);
      else resolve(false);
    };
    const settle = () => {
      timer?.clear();
      stop.removeEventListener('abort', onAbort);
      resolve(true);
    };
    stop.addEventListener('abort', onAbort, { once: true });
    promise.then(settle, settle);
  });
}

/**
 * A signal that aborts with a TimeoutError after `ms`. Not AbortSignal.timeout: its timer is
 * unref'd and cannot be cleared, while a wait must keep the process alive until it ends (a worker
 * blocked on a paused socket keeps nothing else alive) and leave no timer behind when it ends.
 */
export function deadline(ms: number): { readonly signal: AbortSignal; clear(): void } {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new DOMException('The wait timed out', 'TimeoutError')), ms);
  return { signal: controller.signal, clear: () => clearTimeout(timer) };
}

/**
 * Resolves like `promise` unless `signal` aborts first: then it rejects with the signal's reason
 * and a value that still comes goes to `onLate` (a connection to give back), once.
 */
export function unlessAborted<T>(promise: Promise<T>, signal: AbortSignal, onLate: (value: T) => void): Promise<T> {
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        if (signal.aborted) onLate(value);
        else resolve(value);
      },
      (error) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}

function settled(): true {
  return true;
}
