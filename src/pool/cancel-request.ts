// The protocol cancel moved to src/pg (it builds a pg.Connection); this path stays only until
// api/pg-background.ts, being split now, imports it from there.
export { sendCancelRequest } from '../pg/index.js';
