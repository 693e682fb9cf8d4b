// node-postgres' own parameter serialisation (Date, Buffer, arrays, JSON), which pg-cursor uses
// too; @types/pg does not declare this module.
declare module 'pg/lib/utils.js' {
  const utils: { prepareValue(value: unknown): string | Buffer | null };
  export default utils;
}
