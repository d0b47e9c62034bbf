import assert from "node:assert/strict";
import { saslprep } from "./_saslprep.ts";

Deno.test("saslprep: RFC 4013 §3 examples (refusals fall back to the raw password)", () => {
  assert.equal(saslprep("I\u00adX"), "IX"); // soft hyphen mapped to nothing
  assert.equal(saslprep("user"), "user");
  assert.equal(saslprep("USER"), "USER"); // case preserved
  assert.equal(saslprep("\u00aa"), "a"); // NFKC
  assert.equal(saslprep("\u2168"), "IX"); // NFKC
  // U+0007 is prohibited, but PostgreSQL passes pure ASCII through untouched.
  assert.equal(saslprep("\u0007"), "\u0007");
  // Bidi violation (RandALCat followed by a non-RandALCat last character): raw password.
  assert.equal(saslprep("\u0627\u0031"), "\u0627\u0031");
});

Deno.test("saslprep: PostgreSQL's mapping and fallback rules", () => {
  assert.equal(saslprep("pass\u00a0word"), "pass word"); // non-ASCII space → space
  assert.equal(saslprep("pass\u3000word"), "pass word");
  assert.equal(saslprep("p\u200dw\ufeff"), "pw"); // joiners and BOM vanish
  assert.equal(saslprep("\u00ad"), "\u00ad"); // empty after mapping: refused, raw
  assert.equal(saslprep("pw\u0080é"), "pw\u0080é"); // C.2.2 control: raw
  assert.equal(saslprep("pw\ue000é"), "pw\ue000é"); // private use: raw
  assert.equal(saslprep("pw\u{10fffe}"), "pw\u{10fffe}"); // non-character: raw
  assert.equal(saslprep("ﬁé"), "fié"); // ligature decomposed, é composed
  assert.equal(saslprep("e\u0301"), "é"); // composed by NFKC
  assert.equal(saslprep("\u05d0\u05d1"), "\u05d0\u05d1"); // pure right-to-left is fine
  assert.equal(saslprep("\u05d0a\u05d1"), "\u05d0a\u05d1"); // mixed directions: raw (same text)
  assert.equal(saslprep("ﬁ\u05d0"), "ﬁ\u05d0"); // mixed: raw, so not normalised either
});
