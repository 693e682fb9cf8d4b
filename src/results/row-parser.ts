// Turns raw text fields into rows, with node-postgres' type parsers or the caller's `types`,
// never touching pg's global parsers.
import pg from 'pg';
import type { ResultField, RowMode, TypeParsers } from '../api/types.js';
import type { RawRow } from './row-queue.js';

export type { ResultField, RowMode, TypeParsers };

/** A type parser (or getTypeParser) threw for a column: the caller's code, not the server's. */
export class TypeParserFailure extends Error {
  constructor(field: ResultField, cause: unknown) {
    const why = cause instanceof Error ? cause.message : String(cause);
    super(`the \`types\` parser of column "${field.name}" (type oid ${field.dataTypeID}) failed: ${why}`, { cause });
  }
}

export class RowParser {
  readonly fields: readonly ResultField[];
  readonly #names: string[];
  readonly #types: TypeParsers;
  /** Looked up at the first row, by the reader: caller code never runs inside pg's message handling. */
  #parsers: ((value: string) => unknown)[] | null = null;
  readonly #asArray: boolean;

  constructor(fields: readonly ResultField[], rowMode: RowMode, types: TypeParsers | undefined) {
    this.fields = fields;
    this.#names = fields.map((f) => f.name);
    this.#types = types ?? pg.types;
    this.#asArray = rowMode === 'array';
  }

  /** The row as the caller sees it; a parser that throws gives a TypeParserFailure. */
  parse(raw: RawRow): unknown {
    const parsers = this.#parsers ?? this.#lookUpParsers();
    const n = raw.length;
    let i = 0;
    try {
      if (this.#asArray) {
        const row = new Array<unknown>(n);
        for (; i < n; i++) {
          const value = raw[i];
          row[i] = value == null ? null : parsers[i]!(value);
        }
        return row;
      }
      // As in node-postgres: a later column with the same name wins; use rowMode 'array' to keep all.
      const row: Record<string, unknown> = {};
      for (; i < n; i++) {
        const value = raw[i];
        const name = this.#names[i]!;
        const parsed = value == null ? null : parsers[i]!(value);
        // A column named __proto__ is data, not the row's prototype.
        if (name === '__proto__') Object.defineProperty(row, name, { value: parsed, enumerable: true, writable: true, configurable: true });
        else row[name] = parsed;
      }
      return row;
    } catch (error) {
      throw new TypeParserFailure(this.fields[i]!, error);
    }
  }

  #lookUpParsers(): ((value: string) => unknown)[] {
    const parsers = this.fields.map((field) => {
      let parser: unknown;
      try {
        parser = this.#types.getTypeParser(field.dataTypeID, 'text');
      } catch (error) {
        throw new TypeParserFailure(field, error);
      }
      if (typeof parser !== 'function') {
        const got = parser === null ? 'null' : typeof parser;
        throw new TypeParserFailure(field, new TypeError(`getTypeParser(${field.dataTypeID}, 'text') returned ${got}, not a function`));
      }
      return parser as (value: string) => unknown;
    });
    this.#parsers = parsers;
    return parsers;
  }
}
