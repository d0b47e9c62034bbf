import assert from "node:assert/strict";
import { buildScramVerifier, parseScramVerifier } from "./scram.ts";
import { clusterPermitted, startPrimary } from "../../tests/_pg.ts";

// Passwords whose verifiers must match PostgreSQL 15's byte for byte: plain ASCII, then ones
// SASLprep changes (non-ASCII space, soft hyphen, NFKC), then ones it refuses (PostgreSQL then
// hashes the raw password).
const PASSWORDS: [string, string][] = [
  ["r", "secret"],
  ["r_ascii_ctl", "tab\there"],
  ["r_space", "pass\u00a0word"],
  ["r_hyphen", "I\u00adX"],
  ["r_nfkc", "\u2168 ﬁ e\u0301"],
  ["r_control", "pw\u0080é"],
  ["r_bidi", "\u05d0a\u05d1"],
  ["r_rtl", "\u05d0\u05d1"],
];

Deno.test({
  name: "scram: verifiers equal PostgreSQL 15's rolpassword byte for byte",
  ignore: !clusterPermitted(),
}, async () => {
  await using cluster = await startPrimary({ conf: { password_encryption: "scram-sha-256" } });
  try {
    for (const [role, password] of PASSWORDS) {
      await cluster.sql(`CREATE ROLE ${role} LOGIN PASSWORD '${password.replaceAll("'", "''")}'`);
      const stored = (await cluster.sql(
        `SELECT rolpassword FROM pg_authid WHERE rolname = '${role}'`,
      )).trim();
      const parsed = parseScramVerifier(stored);
      assert.ok(parsed, `PostgreSQL's verifier for ${role} parses: ${stored}`);
      const ours = await buildScramVerifier(password, {
        salt: parsed.salt,
        iterations: parsed.iterations,
      });
      assert.equal(ours, stored, `verifier for ${role} (${JSON.stringify(password)})`);
    }
  } finally {
    await cluster.stop();
  }
});
