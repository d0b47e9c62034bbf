/**
 * The replication command scanner, PostgreSQL 15's `repl_scanner.l` rebuilt by hand.
 *
 * Tokens are produced on demand, one at a time, because that is what bison does: a lexical error
 * further along the command (say an unterminated string) is only reported if the grammar had not
 * already failed on an earlier token.
 *
 * @module
 */

import { parseLsn } from "../wal/lsn.ts";
import { PgError, SqlState } from "../pgwire/error.ts";

/** The keywords of PostgreSQL 15's scanner; matched literally, upper case only. */
export const KEYWORDS = [
  "BASE_BACKUP",
  "IDENTIFY_SYSTEM",
  "READ_REPLICATION_SLOT",
  "SHOW",
  "TIMELINE",
  "START_REPLICATION",
  "CREATE_REPLICATION_SLOT",
  "DROP_REPLICATION_SLOT",
  "TIMELINE_HISTORY",
  "PHYSICAL",
  "RESERVE_WAL",
  "LOGICAL",
  "SLOT",
  "TEMPORARY",
  "TWO_PHASE",
  "EXPORT_SNAPSHOT",
  "NOEXPORT_SNAPSHOT",
  "USE_SNAPSHOT",
  "WAIT",
] as const;

/** One of {@linkcode KEYWORDS}. */
export type Keyword = typeof KEYWORDS[number];

const KEYWORD_SET: ReadonlySet<string> = new Set(KEYWORDS);

/** A token of the replication grammar. */
export type Token =
  | { type: "keyword"; keyword: Keyword }
  /** An identifier, already down-cased (unless quoted) and truncated. */
  | { type: "ident"; value: string }
  | { type: "sconst"; value: string }
  /** An unsigned integer, wrapped to 32 bits as `strtoul` into a `uint32` does. */
  | { type: "uconst"; value: number }
  /** `%X/%X`; `lsn` is undefined when a half is wider than 32 bits. */
  | { type: "recptr"; lsn: bigint | undefined }
  /** Any other single character, returned as itself. */
  | { type: "char"; char: string }
  | { type: "eof" };

/** `NAMEDATALEN - 1`: the longest identifier, in bytes. */
export const MAX_IDENTIFIER_BYTES = 63;

const RECPTR = /[0-9A-Fa-f]+\/[0-9A-Fa-f]+/y;
const DIGITS = /[0-9]+/y;
const ULONG_MAX = 0xFFFF_FFFF_FFFF_FFFFn;

/** Raises the scanner's and grammar's only kind of error, as `replication_yyerror` does. */
export function syntaxError(message = "syntax error"): PgError {
  return new PgError(SqlState.SYNTAX_ERROR, message);
}

function isSpace(c: string): boolean {
  // repl_scanner.l's {space} in 15; \v only became whitespace in later releases.
  return c === " " || c === "\t" || c === "\n" || c === "\r" || c === "\f";
}

function isIdentStart(c: string): boolean {
  return (c >= "A" && c <= "Z") || (c >= "a" && c <= "z") || c === "_" || c.charCodeAt(0) >= 0x80;
}

function isIdentCont(c: string): boolean {
  return isIdentStart(c) || (c >= "0" && c <= "9") || c === "$";
}

/**
 * Clips an identifier to {@linkcode MAX_IDENTIFIER_BYTES} bytes of UTF-8 without splitting a
 * character, as `truncate_identifier` does with `pg_mbcliplen`.
 */
export function truncateIdentifier(ident: string): string {
  let bytes = 0;
  let end = 0;
  for (const ch of ident) {
    const cp = ch.codePointAt(0)!;
    const len = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    if (bytes + len > MAX_IDENTIFIER_BYTES) return ident.slice(0, end);
    bytes += len;
    end += ch.length;
  }
  return ident;
}

/** Only ASCII letters are down-cased: the server encoding is multi-byte (UTF-8). */
function downcase(ident: string): string {
  return ident.replace(/[A-Z]+/g, (s) => s.toLowerCase());
}

/** `strtoul` (saturating at `ULONG_MAX`) stored into a `uint32`, as the scanner's UCONST does. */
function toUint32(digits: string): number {
  let v = BigInt(digits);
  if (v > ULONG_MAX) v = ULONG_MAX;
  return Number(v & 0xFFFF_FFFFn);
}

/** A one-token-lookahead scanner over a command's text. */
export class Lexer {
  #text: string;
  #pos = 0;
  #peeked: Token | undefined;

  /** @param text The whole query string. */
  constructor(text: string) {
    this.#text = text;
  }

  /** The next token, without consuming it. */
  peek(): Token {
    this.#peeked ??= this.#scan();
    return this.#peeked;
  }

  /** The next token, consumed. */
  next(): Token {
    const t = this.peek();
    this.#peeked = undefined;
    return t;
  }

  #scan(): Token {
    const s = this.#text;
    while (this.#pos < s.length && isSpace(s[this.#pos]!)) this.#pos++;
    if (this.#pos >= s.length) return { type: "eof" };
    const start = this.#pos;
    const c = s[start]!;

    // A RECPTR, when it matches, is always the longest match here: it extends the hex digits
    // that a UCONST or identifier would stop at with a '/'.
    RECPTR.lastIndex = start;
    const rec = RECPTR.exec(s);
    if (rec) {
      this.#pos = RECPTR.lastIndex;
      return { type: "recptr", lsn: recptr(rec[0]) };
    }
    if (c >= "0" && c <= "9") {
      DIGITS.lastIndex = start;
      const d = DIGITS.exec(s)!;
      this.#pos = DIGITS.lastIndex;
      return { type: "uconst", value: toUint32(d[0]) };
    }
    if (c === "'") return { type: "sconst", value: this.#quoted("'") };
    if (c === '"') return { type: "ident", value: truncateIdentifier(this.#quoted('"')) };
    if (isIdentStart(c)) {
      let end = start + 1;
      while (end < s.length && isIdentCont(s[end]!)) end++;
      this.#pos = end;
      const word = s.slice(start, end);
      // Keywords and identifiers tie on length; flex prefers the keyword rules, listed first.
      if (KEYWORD_SET.has(word)) return { type: "keyword", keyword: word as Keyword };
      return { type: "ident", value: truncateIdentifier(downcase(word)) };
    }
    this.#pos = start + 1;
    return { type: "char", char: c };
  }

  /**
   * A quoted literal. Strings double the quote to embed it; PostgreSQL 15's scanner has no such
   * rule for identifiers, so `"a""b"` is two identifiers there, and here.
   */
  #quoted(q: "'" | '"'): string {
    const s = this.#text;
    let out = "";
    let pos = this.#pos + 1;
    for (;;) {
      const close = s.indexOf(q, pos);
      if (close < 0) {
        this.#pos = s.length;
        throw syntaxError("unterminated quoted string");
      }
      out += s.slice(pos, close);
      if (q === "'" && s[close + 1] === "'") {
        out += "'";
        pos = close + 2;
        continue;
      }
      this.#pos = close + 1;
      return out;
    }
  }
}

/**
 * `sscanf("%X/%X")`, except that halves wider than 32 bits give `undefined` rather than a
 * mangled value; the parser refuses those where it needs an LSN, so elsewhere (a first token, a
 * stray token) they fail just as PostgreSQL's would.
 */
function recptr(text: string): bigint | undefined {
  const [hi, lo] = text.split("/") as [string, string];
  return parseLsn(`${stripZeros(hi)}/${stripZeros(lo)}`);
}

function stripZeros(hex: string): string {
  return hex.replace(/^0+(?=.)/, "");
}
