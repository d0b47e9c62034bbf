import assert from "node:assert/strict";
import { md5, md5Hex, md5PasswordHash, md5SaltedResponse, verifyMd5Response } from "./md5.ts";

Deno.test("md5: RFC 1321 appendix A.5 test suite", () => {
  const vectors: [string, string][] = [
    ["", "d41d8cd98f00b204e9800998ecf8427e"],
    ["a", "0cc175b9c0f1b6a831c399e269772661"],
    ["abc", "900150983cd24fb0d6963f7d28e17f72"],
    ["message digest", "f96b697d7cb7938d525a2f31aaf161d0"],
    ["abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b"],
    [
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
      "d174ab98d277d9f5a5611c2c9f419d9f",
    ],
    [
      "12345678901234567890123456789012345678901234567890123456789012345678901234567890",
      "57edf4a22be3c955ac49da2e2107b67a",
    ],
  ];
  for (const [input, hex] of vectors) assert.equal(md5Hex(input), hex, JSON.stringify(input));
});

Deno.test("md5: padding boundaries (55, 56, 63, 64, 65 bytes) and bytes input", () => {
  // Values from a reference implementation (Python hashlib) for "a" * n.
  const expected: Record<number, string> = {
    55: "ef1772b6dff9a122358552954ad0df65",
    56: "3b0c8ac703f828b04c6c197006d17218",
    63: "b06521f39153d618550606be297466d5",
    64: "014842d480b571495a4a0363793f7367",
    65: "c743a45e0d2e6a95cb859adae0248435",
  };
  for (const [n, hex] of Object.entries(expected)) {
    assert.equal(md5Hex("a".repeat(Number(n))), hex, `n=${n}`);
  }
  assert.equal(md5(new Uint8Array([0x61, 0x62, 0x63])).toHex(), "900150983cd24fb0d6963f7d28e17f72");
});

Deno.test("md5: PostgreSQL md5 scheme matches the PROTOCOL.md §3.3 capture", () => {
  const stored = md5PasswordHash("md5pw", "md5user");
  assert.match(stored, /^md5[0-9a-f]{32}$/);
  assert.equal(stored, "md5" + md5Hex("md5pwmd5user"));
  const salt = Uint8Array.fromHex("5c3fbc8a");
  const captured = "md5cc3c1e8d1734d15bfa493c7c82c977f5";
  assert.equal(md5SaltedResponse(stored, salt), captured);
  assert.equal(verifyMd5Response(stored, salt, captured), true);
});

Deno.test("md5: wrong password, wrong salt, malformed inputs are refused", () => {
  const stored = md5PasswordHash("md5pw", "md5user");
  const salt = Uint8Array.fromHex("5c3fbc8a");
  const captured = "md5cc3c1e8d1734d15bfa493c7c82c977f5";
  assert.equal(verifyMd5Response(md5PasswordHash("other", "md5user"), salt, captured), false);
  assert.equal(verifyMd5Response(stored, Uint8Array.fromHex("5c3fbc8b"), captured), false);
  assert.equal(verifyMd5Response(stored, salt, captured.slice(0, -1)), false);
  assert.equal(verifyMd5Response(stored, salt, ""), false);
  assert.equal(verifyMd5Response(stored, salt, captured.toUpperCase()), false);
  // A SCRAM verifier (or garbage) is not an md5 verifier: md5 authentication fails.
  assert.equal(verifyMd5Response("SCRAM-SHA-256$4096:abc$def:ghi", salt, captured), false);
  assert.equal(verifyMd5Response("md5", salt, "md5"), false);
});
