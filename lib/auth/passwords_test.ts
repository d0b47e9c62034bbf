import assert from "node:assert/strict";
import { parsePasswords, PasswordsParseError } from "./passwords.ts";
import { buildScramVerifier } from "./scram.ts";
import { md5PasswordHash } from "./md5.ts";

function parseError(text: string): PasswordsParseError {
  try {
    parsePasswords(text);
  } catch (e) {
    if (e instanceof PasswordsParseError) return e;
    throw e;
  }
  throw new Error(`parsed without error: ${text}`);
}

Deno.test("passwords: SCRAM and md5 verifiers, comments, blank lines, CRLF", async () => {
  const scram = await buildScramVerifier("replpw", { iterations: 16 });
  const md5 = md5PasswordHash("md5pw", "md5user");
  const text =
    `# walrelay passwords\n\nrepl:${scram}\r\n  md5user : ${md5}  \n   # indented comment\n`;
  const map = parsePasswords(text);
  assert.deepEqual([...map], [["repl", scram], ["md5user", md5]]);
  assert.equal(parsePasswords("").size, 0);
});

Deno.test("passwords: bad lines name the line and never echo a plain password", async () => {
  const scram = await buildScramVerifier("x", { iterations: 16 });
  const cases: [string, RegExp][] = [
    ["repl hunter2", /expected "user:verifier"/],
    [":" + scram, /empty user name/],
    ["repl:hunter2", /not a SCRAM-SHA-256 or md5 verifier; plain-text passwords are never stored/],
    ["repl:", /not a SCRAM-SHA-256 or md5 verifier/],
    ["repl:SCRAM-SHA-256$4096:abc", /invalid SCRAM-SHA-256 verifier for user "repl"/],
    ["repl:" + scram.replace("$16:", "$0:"), /invalid SCRAM-SHA-256 verifier/],
    ["repl:md5" + "A".repeat(32), /32 lower-case hex digits/],
    ["repl:md5" + "g".repeat(32), /32 lower-case hex digits/],
    ["repl:md5" + "0".repeat(31), /not a SCRAM-SHA-256 or md5 verifier/],
    [`repl:${scram}\nrepl:${scram}`, /duplicate entry for user "repl" \(first on line 3\)/],
  ];
  for (const [line, pattern] of cases) {
    const e = parseError(`# header\n\n${line}\n`);
    assert.equal(e.line, line.includes("\n") ? 4 : 3, line);
    assert.match(e.message, pattern, line);
    assert.match(e.message, /^line \d+ of the passwords file: /);
    assert.doesNotMatch(e.message, /hunter2/);
  }
});
