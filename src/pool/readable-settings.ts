// Session settings that node-postgres cannot live with. pg always writes and reads UTF-8, and
// its type parsers read only ISO dates and postgres-style intervals: in another client_encoding
// the server reads our SQL in that encoding (so its statement boundaries are no longer ours),
// and in another DateStyle or IntervalStyle timestamps come back null and intervals {}, with no
// error. Launch settings are checked here, and so is every worker session as it starts.

/** The settings checked, as the server reports them (ParameterStatus names). */
export const CHECKED_SETTINGS = ['client_encoding', 'DateStyle', 'IntervalStyle'] as const;

/**
 * Why a session setting would make node-postgres misread what the server sends (or the server
 * misread our SQL), or null. pg always writes and reads UTF-8, and its type parsers read only
 * ISO dates and postgres-style intervals: others come back null or {} without an error.
 */
export function unreadableSetting(name: string, value: string): string | null {
  const key = name.toLowerCase();
  const normalized = value
    .trim()
    .toLowerCase()
    .replace(/^'(.*)'$/, '$1');
  if (key === 'client_encoding') {
    return ['utf8', 'utf-8', 'unicode'].includes(normalized)
      ? null
      : 'node-postgres always sends and reads UTF-8 (the server would read the SQL in another encoding)';
  }
  if (key === 'datestyle') {
    const parts = normalized.split(/[\s,]+/).filter(Boolean);
    const output = parts.filter((part) => ['iso', 'sql', 'postgres', 'german'].includes(part));
    return output.every((part) => part === 'iso') ? null : "node-postgres parses dates in the ISO style only ('ISO', 'ISO, DMY', 'ISO, MDY')";
  }
  if (key === 'intervalstyle') {
    return normalized === 'postgres' ? null : "node-postgres parses intervals in the 'postgres' style only";
  }
  return null;
}
