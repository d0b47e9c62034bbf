import assert from "node:assert/strict";
import { PgError } from "../pgwire/error.ts";
import {
  buildScramVerifier,
  mockVerifier,
  parseScramVerifier,
  scramMechanisms,
  ScramServer,
  verifyScramPassword,
} from "./scram.ts";
import { clientFinal, mustParse } from "./_test_utils.ts";

// PROTOCOL.md §3.4: pg_receivewal 15 → PostgreSQL 15, user repl, password replpw.
const CAPTURE = {
  password: "replpw",
  salt: "I9V1fsCbIuCWg+nyskNw1w==",
  serverNonce: "r7Bei3v6nc3OZTfSegrivGxT",
  clientFirst: "n,,n=,r=6ogUOBGgk6QwfkzOZP+hkUdT",
  serverFirst:
    "r=6ogUOBGgk6QwfkzOZP+hkUdTr7Bei3v6nc3OZTfSegrivGxT,s=I9V1fsCbIuCWg+nyskNw1w==,i=4096",
  clientFinal:
    "c=biws,r=6ogUOBGgk6QwfkzOZP+hkUdTr7Bei3v6nc3OZTfSegrivGxT,p=WIGyUTjqe3qSvLcneu7A2aMqxMTruaV/YqXj1/7frWM=",
  serverFinal: "v=21Ygn0JCSGUe+p4jQGYygfqVwkNetuuQWPrvJmqcvq4=",
};

async function captureVerifier(password = CAPTURE.password): Promise<string> {
  return await buildScramVerifier(password, { salt: Uint8Array.fromBase64(CAPTURE.salt) });
}

/** Runs `fn` and returns the PgError it throws (failing if it throws anything else or nothing). */
async function pgError(fn: () => unknown): Promise<PgError> {
  try {
    await fn();
  } catch (e) {
    if (e instanceof PgError) return e;
    throw new Error(`expected PgError, got ${e}`, { cause: e });
  }
  throw new Error("expected PgError, nothing was thrown");
}

Deno.test("scram: the captured PostgreSQL 15 exchange is reproduced exactly", async () => {
  const verifier = await captureVerifier();
  const server = new ScramServer({
    verifier,
    user: "repl",
    mechanism: "SCRAM-SHA-256",
    serverNonce: CAPTURE.serverNonce,
  });
  assert.equal(server.handleClientFirst(CAPTURE.clientFirst), CAPTURE.serverFirst);
  assert.equal(await server.handleClientFinal(CAPTURE.clientFinal), CAPTURE.serverFinal);
});

Deno.test("scram: wrong password fails with FATAL 28P01 in PostgreSQL's words", async () => {
  const server = new ScramServer({
    verifier: await captureVerifier("not-replpw"),
    user: "repl",
    serverNonce: CAPTURE.serverNonce,
  });
  server.handleClientFirst(CAPTURE.clientFirst);
  const e = await pgError(() => server.handleClientFinal(CAPTURE.clientFinal));
  assert.equal(e.code, "28P01");
  assert.equal(e.severity, "FATAL");
  assert.equal(e.message, 'password authentication failed for user "repl"');
});

Deno.test("scram: a flipped proof bit, a wrong nonce and a replayed state are refused", async () => {
  const verifier = await captureVerifier();
  const fresh = () => {
    const s = new ScramServer({ verifier, user: "repl", serverNonce: CAPTURE.serverNonce });
    s.handleClientFirst(CAPTURE.clientFirst);
    return s;
  };
  const badProof = CAPTURE.clientFinal.replace("p=W", "p=X");
  assert.equal((await pgError(() => fresh().handleClientFinal(badProof))).code, "28P01");

  const badNonce = CAPTURE.clientFinal.replace("GxT,p=", "GxU,p=");
  const e = await pgError(() => fresh().handleClientFinal(badNonce));
  assert.equal(e.code, "08P01");
  assert.equal(e.message, "invalid SCRAM response");
  assert.equal(e.fields.detail, "Nonce does not match.");

  const done = fresh();
  await done.handleClientFinal(CAPTURE.clientFinal);
  const again = await pgError(() => done.handleClientFinal(CAPTURE.clientFinal));
  assert.equal(again.message, "invalid SCRAM exchange state");
  const early = new ScramServer({ verifier, user: "repl" });
  assert.equal(
    (await pgError(() => early.handleClientFinal(CAPTURE.clientFinal))).severity,
    "FATAL",
  );
});

Deno.test("scram: a real client round trip with random nonces, and the server signature", async () => {
  const verifier = await buildScramVerifier("s3cr3t", { iterations: 64 });
  const server = new ScramServer({ verifier, user: "u" });
  const first = server.handleClientFirst("n,,n=,r=abcdefgh");
  assert.match(first, /^r=abcdefgh[A-Za-z0-9+/]{24},s=[A-Za-z0-9+/]{22}==,i=64$/);
  const { message, serverSignature } = await clientFinal("s3cr3t", "n=,r=abcdefgh", first, "biws");
  assert.equal(await server.handleClientFinal(message), serverSignature);
});

Deno.test("scram: gs2 headers — y,, without -PLUS, p= with channel binding, downgrades", async () => {
  const verifier = await buildScramVerifier("pw", { iterations: 16 });
  const certHash = crypto.getRandomValues(new Uint8Array(32));
  const binding = { type: "tls-server-end-point" as const, data: certHash };
  const cbind = (data: Uint8Array) => {
    const header = new TextEncoder().encode("p=tls-server-end-point,,");
    const all = new Uint8Array(header.length + data.length);
    all.set(header);
    all.set(data, header.length);
    return all.toBase64();
  };

  // TLS without binding support: y,, is accepted with c=eSws.
  let s = new ScramServer({ verifier, user: "u", mechanism: "SCRAM-SHA-256" });
  let first = s.handleClientFirst("y,,n=,r=nonce1");
  let fin = await clientFinal("pw", "n=,r=nonce1", first, "eSws");
  assert.equal(await s.handleClientFinal(fin.message), fin.serverSignature);

  // y,, but c=biws: the flag changed between messages.
  s = new ScramServer({ verifier, user: "u" });
  first = s.handleClientFirst("y,,n=,r=nonce1");
  fin = await clientFinal("pw", "n=,r=nonce1", first, "biws");
  let e = await pgError(() => s.handleClientFinal(fin.message));
  assert.equal(e.message, "unexpected SCRAM channel-binding attribute in client-final-message");

  // -PLUS with the right certificate hash.
  s = new ScramServer({
    verifier,
    user: "u",
    channelBinding: binding,
    mechanism: "SCRAM-SHA-256-PLUS",
  });
  first = s.handleClientFirst("p=tls-server-end-point,,n=,r=nonce2");
  fin = await clientFinal("pw", "n=,r=nonce2", first, cbind(certHash));
  assert.equal(await s.handleClientFinal(fin.message), fin.serverSignature);

  // Mechanism inferred from the flag works the same.
  s = new ScramServer({ verifier, user: "u", channelBinding: binding });
  first = s.handleClientFirst("p=tls-server-end-point,,n=,r=nonce2");
  fin = await clientFinal("pw", "n=,r=nonce2", first, cbind(certHash));
  assert.equal(await s.handleClientFinal(fin.message), fin.serverSignature);

  // -PLUS with another certificate's hash (a man in the middle).
  s = new ScramServer({ verifier, user: "u", channelBinding: binding });
  first = s.handleClientFirst("p=tls-server-end-point,,n=,r=nonce3");
  fin = await clientFinal("pw", "n=,r=nonce3", first, cbind(new Uint8Array(32)));
  e = await pgError(() => s.handleClientFinal(fin.message));
  assert.equal(e.code, "28000");
  assert.equal(e.message, "SCRAM channel binding check failed");

  // Server can bind but client says y: downgrade detected.
  e = await pgError(() =>
    new ScramServer({ verifier, user: "u", channelBinding: binding }).handleClientFirst(
      "y,,n=,r=x",
    )
  );
  assert.equal(e.code, "28000");
  assert.equal(e.message, "SCRAM channel binding negotiation error");

  // Server can bind, client chose plain SCRAM-SHA-256 with n,,: allowed (channel_binding=disable).
  s = new ScramServer({ verifier, user: "u", channelBinding: binding, mechanism: "SCRAM-SHA-256" });
  first = s.handleClientFirst("n,,n=,r=nonce4");
  fin = await clientFinal("pw", "n=,r=nonce4", first, "biws");
  assert.equal(await s.handleClientFinal(fin.message), fin.serverSignature);

  // -PLUS selected but n,, sent.
  e = await pgError(() =>
    new ScramServer({
      verifier,
      user: "u",
      channelBinding: binding,
      mechanism: "SCRAM-SHA-256-PLUS",
    })
      .handleClientFirst("n,,n=,r=x")
  );
  assert.equal(e.code, "08P01");
  assert.match(e.fields.detail ?? "", /selected SCRAM-SHA-256-PLUS/);

  // p= without the server offering -PLUS (plain connection).
  e = await pgError(() =>
    new ScramServer({ verifier, user: "u" }).handleClientFirst("p=tls-server-end-point,,n=,r=x")
  );
  assert.equal(e.code, "08P01");
  assert.match(e.fields.detail ?? "", /without channel binding/);

  // -PLUS named on a connection that cannot bind, or an unknown mechanism.
  for (const mechanism of ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1"]) {
    e = await pgError(() => new ScramServer({ verifier, user: "u", mechanism }));
    assert.equal(e.message, "client selected an invalid SASL authentication mechanism");
  }

  // Unsupported binding type.
  e = await pgError(() =>
    new ScramServer({ verifier, user: "u", channelBinding: binding }).handleClientFirst(
      "p=tls-unique,,n=,r=x",
    )
  );
  assert.equal(e.message, 'unsupported SCRAM channel-binding type "tls-unique"');
});

Deno.test("scram: PostgreSQL's messages for malformed client-first-message", async () => {
  const verifier = await captureVerifier();
  const cases: [string, string, string, string | undefined][] = [
    ["", "08P01", "malformed SCRAM message", "The message is empty."],
    [
      "n,,n=,r=a\0b",
      "08P01",
      "malformed SCRAM message",
      "Message length does not match input length.",
    ],
    ["x,,n=,r=a", "08P01", "malformed SCRAM message", "Unexpected channel-binding flag \"'x'\"."],
    [
      "n;,n=,r=a",
      "08P01",
      "malformed SCRAM message",
      "Comma expected, but found character \"';'\".",
    ],
    [
      "n,a=bob,n=,r=a",
      "0A000",
      "client uses authorization identity, but it is not supported",
      undefined,
    ],
    [
      "n,x,n=,r=a",
      "08P01",
      "malformed SCRAM message",
      "Unexpected attribute \"'x'\" in client-first-message.",
    ],
    ["n,,m=ext,n=,r=a", "0A000", "client requires an unsupported SCRAM extension", undefined],
    ["n,,r=a", "08P01", "malformed SCRAM message", 'Expected attribute "n" but found "\'r\'".'],
    ["n,,n=", "08P01", "malformed SCRAM message", 'Expected attribute "r" but found "0x00".'],
    ["n,,n", "08P01", "malformed SCRAM message", 'Expected character "=" for attribute "n".'],
    ["n,,n=,r=a b", "08P01", "non-printable characters in SCRAM nonce", undefined],
    ["n,,n=,r=é", "08P01", "non-printable characters in SCRAM nonce", undefined],
    [
      "n,,n=,r=a,1=x",
      "08P01",
      "malformed SCRAM message",
      "Attribute expected, but found invalid character \"'1'\".",
    ],
  ];
  for (const [input, code, message, detail] of cases) {
    const e = await pgError(() =>
      new ScramServer({ verifier, user: "repl" }).handleClientFirst(input)
    );
    assert.equal(e.code, code, input);
    assert.equal(e.severity, "FATAL", input);
    assert.equal(e.message, message, input);
    assert.equal(e.fields.detail, detail, input);
  }
  // Extensions after the nonce are ignored; a user name in n= is ignored too.
  const s = new ScramServer({ verifier, user: "repl", serverNonce: "S" });
  assert.equal(s.handleClientFirst("n,,n=someone,r=abc,x=ext"), `r=abcS,s=${CAPTURE.salt},i=4096`);
});

Deno.test("scram: PostgreSQL's messages for malformed client-final-message", async () => {
  const verifier = await captureVerifier();
  const nonce = "6ogUOBGgk6QwfkzOZP+hkUdTr7Bei3v6nc3OZTfSegrivGxT";
  const proof = "p=WIGyUTjqe3qSvLcneu7A2aMqxMTruaV/YqXj1/7frWM=";
  const cases: [string, string, string | undefined][] = [
    ["", "malformed SCRAM message", "The message is empty."],
    [`r=${nonce},${proof}`, "malformed SCRAM message", 'Expected attribute "c" but found "\'r\'".'],
    [`c=biws,${proof}`, "malformed SCRAM message", 'Expected attribute "r" but found "\'p\'".'],
    [
      `c=biws,r=${nonce}`,
      "malformed SCRAM message",
      "Attribute expected, but found end of string.",
    ],
    [
      `c=biws,r=${nonce},p=AAAA`,
      "malformed SCRAM message",
      "Malformed proof in client-final-message.",
    ],
    [
      `c=biws,r=${nonce},p=!!`,
      "malformed SCRAM message",
      "Malformed proof in client-final-message.",
    ],
    [
      `c=biws,r=${nonce},${proof},x=1`,
      "malformed SCRAM message",
      "Garbage found at the end of client-final-message.",
    ],
    [
      `c=eSws,r=${nonce},${proof}`,
      "unexpected SCRAM channel-binding attribute in client-final-message",
      undefined,
    ],
  ];
  for (const [input, message, detail] of cases) {
    const s = new ScramServer({ verifier, user: "repl", serverNonce: CAPTURE.serverNonce });
    s.handleClientFirst(CAPTURE.clientFirst);
    const e = await pgError(() => s.handleClientFinal(input));
    assert.equal(e.code, "08P01", input);
    assert.equal(e.message, message, input);
    assert.equal(e.fields.detail, detail, input);
  }
  // Extensions before p= are part of client-final-message-without-proof (and so of the proof).
  const s = new ScramServer({ verifier, user: "repl", serverNonce: CAPTURE.serverNonce });
  s.handleClientFirst(CAPTURE.clientFirst);
  const e = await pgError(() => s.handleClientFinal(`c=biws,r=${nonce},x=ext,${proof}`));
  assert.equal(e.code, "28P01");
});

Deno.test("scram: unknown users get a stable mock salt and always fail at the end", async () => {
  const secret = crypto.getRandomValues(new Uint8Array(32));
  const mock = await mockVerifier("ghost", secret);
  assert.equal(mock, await mockVerifier("ghost", secret));
  assert.notEqual(mock, await mockVerifier("ghost2", secret));
  assert.notEqual(mock, await mockVerifier("ghost", new Uint8Array(32)));
  assert.equal(mustParse(mock).iterations, 4096);

  const server = new ScramServer({ verifier: mock, user: "ghost" });
  const first = server.handleClientFirst("n,,n=,r=abc");
  assert.match(
    first,
    new RegExp(`,s=${mustParse(mock).saltBase64.replaceAll("+", "\\+")},i=4096$`),
  );
  // Whatever the password, the exchange fails exactly like a wrong password.
  const fin = await clientFinal("anything", "n=,r=abc", first, "biws");
  const e = await pgError(() => server.handleClientFinal(fin.message));
  assert.equal(e.code, "28P01");
  assert.equal(e.message, 'password authentication failed for user "ghost"');

  // No verifier at all (or an md5 one) also fails at the end, never earlier.
  for (const verifier of [undefined, "md5" + "0".repeat(32), "garbage"]) {
    const s = new ScramServer({ verifier, user: "ghost" });
    const f = s.handleClientFirst("n,,n=,r=abc");
    assert.match(f, /^r=abc.{24},s=[A-Za-z0-9+/]{22}==,i=4096$/);
    const c = await clientFinal("x", "n=,r=abc", f, "biws");
    assert.equal((await pgError(() => s.handleClientFinal(c.message))).code, "28P01");
  }
});

Deno.test("scram: verifier parsing accepts PostgreSQL's form only", async () => {
  const v = await captureVerifier();
  const parsed = mustParse(v);
  assert.equal(parsed.iterations, 4096);
  assert.equal(parsed.saltBase64, CAPTURE.salt);
  assert.equal(parsed.storedKey.length, 32);
  assert.equal(parsed.serverKey.length, 32);
  const [head, keys] = [v.slice(0, v.lastIndexOf("$")), v.slice(v.lastIndexOf("$") + 1)];
  const [stored, server] = keys.split(":");
  for (
    const bad of [
      "",
      "SCRAM-SHA-256",
      v.replace("SCRAM-SHA-256", "SCRAM-SHA-1"),
      v.replace("$4096:", "$0:"),
      v.replace("$4096:", "$-1:"),
      v.replace("$4096:", "$x:"),
      v.replace("$4096:", "$99999999999:"),
      v.replace(CAPTURE.salt, "!!!"),
      `${head}$${stored}`,
      `${head}$${stored}:${server}:extra`,
      `${head}$${stored!.slice(4)}:${server}`,
      `${head}$${stored}:${server}x`,
      v + "\n",
      "md5" + "0".repeat(32),
    ]
  ) {
    assert.equal(parseScramVerifier(bad), undefined, bad);
  }
});

Deno.test("scram: verifiers are deterministic for a salt, random otherwise, SASLprep'd", async () => {
  const salt = Uint8Array.fromBase64(CAPTURE.salt);
  assert.equal(await buildScramVerifier("replpw", { salt }), await captureVerifier());
  const a = await buildScramVerifier("replpw");
  const b = await buildScramVerifier("replpw");
  assert.notEqual(a, b);
  assert.equal(mustParse(a).salt.length, 16);
  // SASLprep: a non-ASCII space maps to a space; the soft hyphen vanishes.
  assert.equal(
    await buildScramVerifier("pass\u00a0wo\u00adrd", { salt, iterations: 8 }),
    await buildScramVerifier("pass word", { salt, iterations: 8 }),
  );
  assert.equal(await verifyScramPassword(a, "replpw"), true);
  assert.equal(await verifyScramPassword(a, "replpw "), false);
  assert.equal(await verifyScramPassword("md5" + "0".repeat(32), "replpw"), false);
  await assert.rejects(() => buildScramVerifier("x", { iterations: 0 }), RangeError);
});

Deno.test("scram: mechanism list", () => {
  assert.deepEqual(scramMechanisms(false, false), ["SCRAM-SHA-256"]);
  assert.deepEqual(scramMechanisms(false, true), ["SCRAM-SHA-256"]);
  assert.deepEqual(scramMechanisms(true, false), ["SCRAM-SHA-256"]);
  assert.deepEqual(scramMechanisms(true, true), ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]);
});

// A small deterministic PRNG, so a failure is reproducible from the printed seed.
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

function randomMessage(rand: () => number, seedText: string): string {
  const alphabet = "nypcrmaxs=,,,==-+/AZaz09 \0é\u00ff\u{1f600}";
  const chars = [...alphabet];
  if (rand() < 0.5) {
    // Mutate a valid message: replace, insert or delete a few characters.
    const out = [...seedText];
    const edits = 1 + Math.floor(rand() * 4);
    for (let i = 0; i < edits; i++) {
      const at = Math.floor(rand() * (out.length + 1));
      const ch = chars[Math.floor(rand() * chars.length)]!;
      const op = rand();
      if (op < 0.34) out.splice(at, 1);
      else if (op < 0.67) out.splice(at, 0, ch);
      else out[at] = ch;
    }
    return out.join("");
  }
  let s = "";
  const len = Math.floor(rand() * 40);
  for (let i = 0; i < len; i++) s += chars[Math.floor(rand() * chars.length)]!;
  return s;
}

Deno.test("scram: property — any input fails with a FATAL PgError, never anything else", async () => {
  const verifier = await buildScramVerifier("pw", { iterations: 4 });
  const binding = { type: "tls-server-end-point" as const, data: new Uint8Array(32) };
  const seed = Date.now() & 0xffff;
  const rand = prng(seed);
  for (let i = 0; i < 400; i++) {
    const withBinding = rand() < 0.3;
    const opts = {
      verifier,
      user: "u",
      serverNonce: "SN",
      ...(withBinding ? { channelBinding: binding } : {}),
    };
    const first = randomMessage(rand, "n,,n=,r=abc");
    let server = new ScramServer(opts);
    try {
      server.handleClientFirst(first);
    } catch (e) {
      assert.ok(e instanceof PgError && e.severity === "FATAL", `seed ${seed}: ${first}: ${e}`);
      server = new ScramServer(opts);
      server.handleClientFirst("n,,n=,r=abc");
    }
    const final = randomMessage(rand, "c=biws,r=abcSN,p=" + "A".repeat(43) + "=");
    try {
      await server.handleClientFinal(final);
      assert.fail(`seed ${seed}: accepted ${JSON.stringify(final)}`);
    } catch (e) {
      assert.ok(e instanceof PgError && e.severity === "FATAL", `seed ${seed}: ${final}: ${e}`);
    }
  }
});
