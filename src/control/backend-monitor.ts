// The backend monitor: one poll, on the control connection, of what the server says about the
// backends of silent workers (liveness now; pg_stat_progress_* will join the same poll).
import { PROBE_BACKENDS_SQL } from '../catalog.js';
import type { ControlConnection } from '../pool/control-connection.js';
import { LivenessMonitor, type BackendState } from '../pool/liveness-monitor.js';
import type { BackendIdentity } from '../pool/worker-connection.js';

interface ProbeRow {
  pid: number;
  started: string;
  state: string | null;
  wait_event: string | null;
  state_ms: number | null;
}

export function backendMonitor(livenessTimeoutMs: number, control: ControlConnection): LivenessMonitor {
  return new LivenessMonitor(livenessTimeoutMs, async (backends: readonly BackendIdentity[]): Promise<BackendState[]> => {
    const { rows } = await control.query<ProbeRow>(PROBE_BACKENDS_SQL, [backends.map((b) => b.pid)]);
    return rows.map((row) => ({ pid: row.pid, started: row.started, state: row.state, waitEvent: row.wait_event, stateMs: row.state_ms }));
  });
}
