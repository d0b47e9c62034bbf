/**
 * The password file (`~/.pgpass`, `passfile`, `PGPASSFILE`): its line format and lookup, and the
 * permission check libpq makes before it trusts the file.
 *
 * @module
 */

import type { ConninfoEnvironment } from "./conninfo_environment.ts";

/** What a password-file line is matched against. */
export interface PassfileKey {
  /** Host name as given (`localhost` when none). */
  host: string;
  /** Port as text. */
  port: string;
  /** Database (`replication` for replication connections). */
  dbname: string;
  /** Role name. */
  user: string;
}

/** Splits a password-file line on unescaped colons, undoing `\:` and `\\`. */
function splitPassfileLine(line: string): string[] {
  const fields: string[] = [];
  let cur = "";
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (c === "\\" && i + 1 < line.length) {
      cur += line[++i];
    } else if (c === ":") {
      fields.push(cur);
      cur = "";
    } else {
      cur += c;
    }
  }
  fields.push(cur);
  return fields;
}

/**
 * Looks a password up in password-file text: the first line whose first four fields match (`*`
 * matches anything) wins; `#` lines are comments.
 *
 * @example
 * ```ts
 * import { findPassfilePassword } from "./passfile.ts";
 * import assert from "node:assert/strict";
 * const text = "# comment\nother:*:*:*:no\ndb\\:1:5432:*:repl:pa\\:ss\n*:*:*:*:fallback\n";
 * assert.equal(
 *   findPassfilePassword(text, { host: "db:1", port: "5432", dbname: "x", user: "repl" }),
 *   "pa:ss",
 * );
 * assert.equal(
 *   findPassfilePassword(text, { host: "h", port: "1", dbname: "x", user: "u" }),
 *   "fallback",
 * );
 * ```
 */
export function findPassfilePassword(text: string, key: PassfileKey): string | undefined {
  const want = [key.host, key.port, key.dbname, key.user];
  for (const raw of text.split("\n")) {
    const line = raw.replace(/\r$/, "");
    if (line === "" || line.startsWith("#")) continue;
    const fields = splitPassfileLine(line);
    if (fields.length < 5) continue;
    // A password may itself contain colons only escaped; extra fields are ignored like libpq.
    if (want.every((w, i) => fields[i] === "*" || fields[i] === w)) {
      return fields[4];
    }
  }
  return undefined;
}

/**
 * The password file's text, or `null` when it is missing or too open (with a warning): libpq
 * ignores a file others can read rather than use a password they may have seen.
 *
 * @example
 * ```ts
 * import { readPassfile } from "./passfile.ts";
 * import assert from "node:assert/strict";
 * const warnings: string[] = [];
 * const environment = {
 *   env: () => undefined,
 *   home: () => undefined,
 *   readFile: () => ({ text: "*:*:*:*:pw\n", mode: 0o100644 }),
 *   warn: (m: string) => warnings.push(m),
 * };
 * assert.equal(readPassfile("/p", environment), null);
 * assert.match(warnings[0]!, /has group or world access/);
 * ```
 */
export function readPassfile(path: string, e: ConninfoEnvironment): string | null {
  const file = e.readFile(path);
  if (!file) return null;
  if (file.mode !== null && (file.mode & 0o077) !== 0) {
    e.warn(
      `password file "${path}" has group or world access; permissions should be u=rw (0600) or less`,
    );
    return null;
  }
  return file.text;
}
