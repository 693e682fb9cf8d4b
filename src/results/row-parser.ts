// Turns raw text fields into rows, with node-postgres' type parsers or the caller's `types`,
// never touching pg's global parsers.
import pg from 'pg';
import type { RawRow } from './row-queue.js';

export type RowMode = 'object' | 'array';

/** node-postgres' per-client type-parser hook (`types` option). */
export interface TypeParsers {
  getTypeParser(oid: number, format?: 'text' | 'binary'): (value: string) => unknown;
}

/** Column metadata of the result, as the server described it. */
export interface ResultField {
  name: string;
  tableID: number;
  columnID: number;
  dataTypeID: number;
  dataTypeSize: number;
  dataTypeModifier: number;
  format: 'text' | 'binary';
}

export class RowParser {
  readonly fields: readonly ResultField[];
  readonly #names: string[];
  readonly #parsers: ((value: string) => unknown)[];
  readonly #asArray: boolean;

  constructor(fields: readonly ResultField[], rowMode: RowMode, types: TypeParsers | undefined) {
    this.fields = fields;
    this.#names = fields.map((f) => f.name);
    const source = types ?? pg.types;
    this.#parsers = fields.map((f) => source.getTypeParser(f.dataTypeID, 'text') as (value: string) => unknown);
    this.#asArray = rowMode === 'array';
  }

  parse(raw: RawRow): unknown {
    const n = raw.length;
    if (this.#asArray) {
      const row = new Array<unknown>(n);
      for (let i = 0; i < n; i++) {
        const value = raw[i];
        row[i] = value == null ? null : this.#parsers[i]!(value);
      }
      return row;
    }
    // As in node-postgres: a later column with the same name wins; use rowMode 'array' to keep all.
    const row: Record<string, unknown> = {};
    for (let i = 0; i < n; i++) {
      const value = raw[i];
      const name = this.#names[i]!;
      const parsed = value == null ? null : this.#parsers[i]!(value);
      // A column named __proto__ is data, not the row's prototype.
      if (name === '__proto__') Object.defineProperty(row, name, { value: parsed, enumerable: true, writable: true, configurable: true });
      else row[name] = parsed;
    }
    return row;
  }
}
