/**
 * The `--passwords` file: one `user:verifier` line per role, verifiers exactly as PostgreSQL's
 * `pg_authid.rolpassword` stores them (`SCRAM-SHA-256$…` or `md5` + 32 hex digits), `#` comments
 * and blank lines. Plain-text passwords are refused: walrelay never stores them.
 *
 * The user name is everything before the first `:` (surrounding blanks trimmed), so a user name
 * cannot contain `:`; the verifier is the rest of the line, trimmed.
 *
 * @module
 */

import { parseScramVerifier } from "./scram.ts";

/** A bad line in a passwords file. */
export class PasswordsParseError extends Error {
  /** The line number, counting from 1. */
  readonly line: number;

  /**
   * Builds the error; the message starts with the line number.
   *
   * @param reason What is wrong.
   * @param line The line number.
   */
  constructor(reason: string, line: number) {
    super(`line ${line} of the passwords file: ${reason}`);
    this.name = "PasswordsParseError";
    this.line = line;
  }
}

const MD5_VERIFIER = /^md5[0-9a-f]{32}$/;

/**
 * Parses a passwords file into a map from user name to verifier.
 *
 * @param text The file's contents.
 * @returns User name → verifier, in file order.
 * @throws {PasswordsParseError} On the first bad line: no `:`, an empty user, a duplicate user,
 *   or a value that is not a valid SCRAM-SHA-256 or md5 verifier (such as a plain password).
 *
 * @example
 * ```ts
 * import { parsePasswords } from "./passwords.ts";
 * import assert from "node:assert/strict";
 * const map = parsePasswords("# md5 for an old client\nold:md5" + "0".repeat(32) + "\n");
 * assert.equal(map.get("old"), "md5" + "0".repeat(32));
 * assert.throws(() => parsePasswords("repl:hunter2"), /line 1 .*plain-text/);
 * ```
 */
export function parsePasswords(text: string): Map<string, string> {
  const out = new Map<string, string>();
  const firstSeen = new Map<string, number>();
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const line = lines[i]!.trim();
    if (line === "" || line.startsWith("#")) continue;
    const colon = line.indexOf(":");
    if (colon < 0) {
      throw new PasswordsParseError('expected "user:verifier"', lineNo);
    }
    const user = line.slice(0, colon).trim();
    const verifier = line.slice(colon + 1).trim();
    if (user === "") throw new PasswordsParseError("empty user name", lineNo);
    const seen = firstSeen.get(user);
    if (seen !== undefined) {
      throw new PasswordsParseError(
        `duplicate entry for user "${user}" (first on line ${seen})`,
        lineNo,
      );
    }
    if (verifier.startsWith("SCRAM-SHA-256$")) {
      if (!parseScramVerifier(verifier)) {
        throw new PasswordsParseError(
          `invalid SCRAM-SHA-256 verifier for user "${user}": expected ` +
            "SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey> as in pg_authid.rolpassword",
          lineNo,
        );
      }
    } else if (/^md5/i.test(verifier) && verifier.length === 35) {
      if (!MD5_VERIFIER.test(verifier)) {
        // PostgreSQL hashes the stored hex as text, so upper-case digits could never match.
        throw new PasswordsParseError(
          `invalid md5 verifier for user "${user}": expected "md5" and 32 lower-case hex digits`,
          lineNo,
        );
      }
    } else {
      throw new PasswordsParseError(
        `the value for user "${user}" is not a SCRAM-SHA-256 or md5 verifier; ` +
          "plain-text passwords are never stored — create a verifier with " +
          `"walrelay passwd ${user}" or copy pg_authid.rolpassword`,
        lineNo,
      );
    }
    out.set(user, verifier);
    firstSeen.set(user, lineNo);
  }
  return out;
}
