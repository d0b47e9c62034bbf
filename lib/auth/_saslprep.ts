/**
 * SASLprep (RFC 4013) of a password, following PostgreSQL's `pg_saslprep` and its fallback: when
 * the password would be rejected, PostgreSQL hashes the raw password instead, so this returns the
 * input unchanged in that case. Not part of the public API.
 *
 * What is exact and what is approximated (documented so an operator knows when a verifier built
 * here could differ from PostgreSQL's):
 * - exact: the pure-ASCII shortcut (returned as is, control characters included, as PostgreSQL
 *   does); mapping of non-ASCII spaces (C.1.2) to U+0020 and of B.1 characters to nothing; an
 *   empty result refused; the prohibited tables C.1.2–C.9; checking them on the mapped but not yet
 *   normalised code points, as `pg_saslprep` does.
 * - approximated: NFKC uses the JavaScript engine's Unicode version, not PostgreSQL's tables;
 *   "unassigned" (A.1, Unicode 3.2) is approximated by the engine's `\p{Cn}`, so a character added
 *   to Unicode after 3.2 is accepted here but refused by PostgreSQL — this changes the verifier
 *   only when normalisation also changes another character of the same password; the bidi rule
 *   (D.1/D.2) classifies right-to-left characters by script (Hebrew, Arabic, Syriac, Thaana)
 *   rather than by the RFC's tables.
 *
 * @module
 */

type Range = readonly [number, number];

// RFC 3454 C.1.2: non-ASCII spaces, mapped to U+0020 (and prohibited in the output).
const NON_ASCII_SPACES: readonly Range[] = [
  [0x00a0, 0x00a0],
  [0x1680, 0x1680],
  [0x2000, 0x200b],
  [0x202f, 0x202f],
  [0x205f, 0x205f],
  [0x3000, 0x3000],
];

// RFC 3454 B.1: "commonly mapped to nothing" (soft hyphen, joiners, variation selectors, BOM).
const MAPPED_TO_NOTHING: readonly Range[] = [
  [0x00ad, 0x00ad],
  [0x034f, 0x034f],
  [0x1806, 0x1806],
  [0x180b, 0x180d],
  [0x200b, 0x200d],
  [0x2060, 0x2060],
  [0xfe00, 0xfe0f],
  [0xfeff, 0xfeff],
];

// RFC 3454 C.2.1–C.9, the tables RFC 4013 §2.3 prohibits (C.1.2 is checked separately).
const PROHIBITED: readonly Range[] = [
  [0x0000, 0x001f], // C.2.1
  [0x007f, 0x009f], // C.2.1, C.2.2
  [0x0340, 0x0341], // C.8
  [0x06dd, 0x06dd], // C.2.2
  [0x070f, 0x070f], // C.2.2
  [0x180e, 0x180e], // C.2.2
  [0x200c, 0x200f], // C.2.2, C.8
  [0x2028, 0x202e], // C.2.2, C.8
  [0x2060, 0x2063], // C.2.2
  [0x206a, 0x206f], // C.2.2, C.8
  [0x2ff0, 0x2ffb], // C.7
  [0xd800, 0xdfff], // C.5
  [0xe000, 0xf8ff], // C.3
  [0xfdd0, 0xfdef], // C.4
  [0xfeff, 0xfeff], // C.2.2
  [0xfff9, 0xfffd], // C.2.2, C.6
  [0x1d173, 0x1d17a], // C.2.2
  [0xe0001, 0xe0001], // C.9
  [0xe0020, 0xe007f], // C.9
  [0xf0000, 0xffffd], // C.3
  [0x100000, 0x10fffd], // C.3
];

const UNASSIGNED = /^\p{Cn}$/u;
const RIGHT_TO_LEFT_SCRIPT =
  /^[\p{Script=Hebrew}\p{Script=Arabic}\p{Script=Syriac}\p{Script=Thaana}]$/u;
const RIGHT_TO_LEFT_CLASS = /^[\p{L}\p{P}\p{So}]$/u;
const LEFT_TO_RIGHT_CLASS = /^[\p{L}\p{Mc}]$/u;

function inRanges(code: number, ranges: readonly Range[]): boolean {
  for (const [lo, hi] of ranges) if (code >= lo && code <= hi) return true;
  return false;
}

function isProhibited(code: number): boolean {
  // C.4: the last two code points of every plane are non-characters.
  if ((code & 0xfffe) === 0xfffe) return true;
  return inRanges(code, NON_ASCII_SPACES) || inRanges(code, PROHIBITED) ||
    UNASSIGNED.test(String.fromCodePoint(code));
}

function isRandAL(code: number): boolean {
  if (code === 0x200f) return true;
  const ch = String.fromCodePoint(code);
  return RIGHT_TO_LEFT_SCRIPT.test(ch) && RIGHT_TO_LEFT_CLASS.test(ch);
}

function isL(code: number): boolean {
  return !isRandAL(code) && LEFT_TO_RIGHT_CLASS.test(String.fromCodePoint(code));
}

/**
 * The password as PostgreSQL hashes it: SASLprep'd when that succeeds, else unchanged.
 */
export function saslprep(password: string): string {
  // PostgreSQL's shortcut: pure ASCII needs no processing (and is never refused).
  if (/^\p{ASCII}*$/u.test(password)) return password;

  const mapped: number[] = [];
  for (const ch of password) {
    const code = ch.codePointAt(0)!;
    if (inRanges(code, NON_ASCII_SPACES)) mapped.push(0x20);
    else if (!inRanges(code, MAPPED_TO_NOTHING)) mapped.push(code);
  }
  if (mapped.length === 0) return password;

  // pg_saslprep checks the prohibited tables on the mapped code points, before normalisation;
  // doing the same keeps the two sides agreeing on which passwords fall back to raw bytes.
  if (mapped.some(isProhibited)) return password;
  if (mapped.some(isRandAL)) {
    if (mapped.some(isL)) return password;
    if (!isRandAL(mapped[0]!) || !isRandAL(mapped[mapped.length - 1]!)) return password;
  }
  return String.fromCodePoint(...mapped).normalize("NFKC");
}
