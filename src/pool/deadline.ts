// Deadlines on promises: every wait on the server or on our own cleanup is bounded.
import { untilSettled } from '../core/abort.js';

/**
 * Settles like `promise`, unless `ms` pass first: then `expire()` runs (it may drop a connection)
 * and its error is the rejection.
 */
export function withDeadline<T>(promise: Promise<T>, ms: number, expire: () => Error): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(expire()), ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}

/** True once `promise` has settled (either way), false if `ms` pass first. Never rejects. */
export function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  return untilSettled(promise, ms, null);
}
