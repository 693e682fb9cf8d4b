// SQL LIKE matching for cancelByLabel(pattern): `%` matches any run of characters (none
// included), `_` exactly one character (a code point, as in a UTF-8 database), `\` makes the
// next character literal, everything else matches itself, case-sensitively, over the whole
// label. A pattern that ends in a lone `\` is refused whatever the label: PostgreSQL raises
// 22025 for it only when its matching gets that far, so it fails for some labels only.
import { invalidArgument } from '../errors.js';
import { checkUtf8, describe } from './validate.js';

/** One pattern element: any run (`%`), any one character (`_`), or a literal code point. */
type Token = { readonly kind: 'any' } | { readonly kind: 'one' } | { readonly kind: 'literal'; readonly char: string };

const ANY: Token = Object.freeze({ kind: 'any' });
const ONE: Token = Object.freeze({ kind: 'one' });

/** Checks `pattern` (named `name` in errors) and returns a matcher for whole strings. */
export function likeMatcher(pattern: unknown, name = 'pattern'): (text: string) => boolean {
  if (typeof pattern !== 'string') throw invalidArgument(`Expected \`${name}\` to be a string (a LIKE pattern), got ${describe(pattern)}`);
  checkUtf8(name, pattern, Infinity);
  const tokens = tokenize(pattern, name);
  return (text) => matches(tokens, Array.from(text));
}

function tokenize(pattern: string, name: string): Token[] {
  const tokens: Token[] = [];
  const chars = Array.from(pattern);
  for (let i = 0; i < chars.length; i++) {
    const char = chars[i]!;
    if (char === '\\') {
      if (++i === chars.length)
        throw invalidArgument(`Expected \`${name}\` not to end with the escape character \\ (LIKE refuses it), got ${describe(pattern)}`);
      tokens.push({ kind: 'literal', char: chars[i]! });
    } else if (char === '%') {
      // %% is %: collapsing runs keeps the backtracking below linear in the pattern.
      if (tokens.at(-1) !== ANY) tokens.push(ANY);
    } else {
      tokens.push(char === '_' ? ONE : { kind: 'literal', char });
    }
  }
  return tokens;
}

/**
 * Greedy matching that backtracks only to the last `%` seen: enough for patterns made of runs
 * and single-character wildcards, and O(pattern × text) at worst.
 */
function matches(tokens: readonly Token[], text: readonly string[]): boolean {
  let t = 0; // next token
  let c = 0; // next character
  let star = -1; // index of the last % token
  let resume = 0; // where the text resumes if that % takes one more character
  while (c < text.length) {
    const token = tokens[t];
    if (token !== undefined && (token.kind === 'one' || (token.kind === 'literal' && token.char === text[c]))) {
      t++;
      c++;
    } else if (token !== undefined && token.kind === 'any') {
      star = t++;
      resume = c;
    } else if (star !== -1) {
      t = star + 1;
      c = ++resume;
    } else {
      return false;
    }
  }
  while (tokens[t]?.kind === 'any') t++;
  return t === tokens.length;
}
