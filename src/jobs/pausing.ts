// Pause and resume. A worker can be paused only while it waits in admission's queue for a slot
// (pending, not cancelled): it then keeps its place there but takes no slot (pool/worker-slots.ts)
// until resumed; one that holds a slot (connecting, or waiting for the cluster-wide cap) or runs
// cannot be paused. A job's root pauses while running: every subtask still waiting for a slot is
// held, and every subtask launched meanwhile is born paused (run/launcher.ts); running subtasks
// go on. Each state change goes through Worker.apply; true means something changed.
import type { Admission } from '../pool/worker-slots.js';
import type { Worker } from '../store/worker.js';

export function pauseWorker(worker: Worker, slots: Admission): boolean {
  if (worker.children === null) return worker.state === 'pending' && slots.waiting(worker) && worker.apply({ kind: 'paused' });
  if (!worker.apply({ kind: 'paused' })) return false;
  for (const child of worker.children) if (child.state === 'pending' && slots.waiting(child)) child.apply({ kind: 'paused' });
  return true;
}

export function resumeWorker(worker: Worker, slots: Admission): boolean {
  if (!worker.apply({ kind: 'resumed' })) return false;
  for (const child of worker.children ?? []) child.apply({ kind: 'resumed' });
  slots.reconsider();
  return true;
}
