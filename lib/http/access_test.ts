import assert from "node:assert/strict";
import {
  HttpAccess,
  HttpAccessParseError,
  isLoopbackHost,
  loadHttpAccess,
  parseHttpHba,
} from "./access.ts";

const TOKEN = "0123456789abcdef-token";

Deno.test("parseHttpHba: rules, comments and blank lines", () => {
  const rules = parseHttpHba(
    "# PATH ADDRESS METHOD\n\n/wal/\t10.0.0.0/8   token  # readers\nall ::1 trust\n" +
      "/metrics 192.168.1.7 reject\n",
  );
  assert.deepEqual(rules.map((r) => [r.path, r.method, r.line]), [
    ["/wal/", "token", 3],
    [undefined, "trust", 4],
    ["/metrics", "reject", 5],
  ]);
  assert.equal(rules[1]!.network!.address.length, 16);
  // A bare address is a single host.
  assert.deepEqual([...rules[2]!.network!.mask], [255, 255, 255, 255]);
});

Deno.test("parseHttpHba: errors name the line and the file", () => {
  const cases: [string, RegExp][] = [
    ["all all", /expected PATH ADDRESS METHOD, found 2 fields in line 1 of file "f"/],
    ["all all trust extra", /found 4 fields/],
    ["wal all trust", /invalid path "wal"/],
    ["all all md5", /invalid method "md5" in line 1 of file "f": expected trust, token or reject/],
    ["\nall 10.0.0.0/33 trust", /invalid address "10.0.0.0\/33" in line 2/],
    ["all 10.0.0 trust", /invalid address "10.0.0"/],
    ["all 10.0.0.0/x trust", /invalid address/],
    ["all samehost trust", /invalid address "samehost"/],
  ];
  for (const [text, re] of cases) {
    assert.throws(() => parseHttpHba(text, "f"), (e: Error) => {
      assert.ok(e instanceof HttpAccessParseError, text);
      assert.match(e.message, re, text);
      return true;
    });
  }
});

Deno.test("HttpAccess: first match wins; path prefixes; networks; no match is 403", async () => {
  const access = new HttpAccess({
    rules: parseHttpHba(
      "/healthz all trust\n/wal/ 10.1.0.0/16 token\n/wal/ 10.0.0.0/8 reject\n" +
        "/metrics 10.2.3.4 trust\nall 127.0.0.1 trust\nall fd00::/8 token\n",
    ),
    token: TOKEN,
  });
  const v = (path: string, addr: string, auth?: string) => access.check(path, addr, auth);
  assert.equal((await v("/healthz", "203.0.113.9")).allowed, true);
  assert.equal((await v("/healthz/live", "203.0.113.9")).allowed, true);
  // `/healthz` is a whole path segment, not a string prefix.
  assert.deepEqual(await v("/healthzz", "203.0.113.9"), {
    allowed: false,
    status: 403,
    reason: "no HTTP access rule admits 203.0.113.9",
  });
  assert.equal(
    (await v("/wal/000000010000000000000001", "10.1.2.3", `Bearer ${TOKEN}`)).allowed,
    true,
  );
  assert.deepEqual(await v("/wal/000000010000000000000001", "10.1.2.3"), {
    allowed: false,
    status: 401,
    reason: "a bearer token is required",
  });
  assert.deepEqual(await v("/wal/x", "10.9.9.9", `Bearer ${TOKEN}`), {
    allowed: false,
    status: 403,
    reason: "HTTP access rule in line 3 rejects 10.9.9.9",
  });
  assert.equal((await v("/metrics", "10.2.3.4")).allowed, true);
  assert.equal((await v("/metrics", "10.2.3.5")).allowed, false);
  // An IPv4 client of a dual-stack listener.
  assert.equal((await v("/metrics", "::ffff:10.2.3.4")).allowed, true);
  assert.equal((await v("/status", "127.0.0.1")).allowed, true);
  assert.equal((await v("/status", "fd12::5", `bearer   ${TOKEN}`)).allowed, true);
  assert.deepEqual(await v("/status", "fd12::5", `Bearer ${TOKEN}x`), {
    allowed: false,
    status: 401,
    reason: "the bearer token is wrong",
  });
  assert.equal((await v("/status", "fd12::5", `Basic ${TOKEN}`)).allowed, false);
  assert.equal((await v("/status", "fd12::5", "Bearer")).allowed, false);
});

Deno.test("HttpAccess: by default loopback clients only; a token alone covers everyone", async () => {
  const loopback = new HttpAccess();
  assert.equal(loopback.loopbackOnly, true);
  for (const a of ["127.0.0.1", "127.8.9.1", "::1", "::ffff:127.0.0.1"]) {
    assert.equal((await loopback.check("/wal/x", a, undefined)).allowed, true, a);
  }
  for (const a of ["10.0.0.1", "::2", "not an address"]) {
    const v = await loopback.check("/status", a, undefined);
    assert.equal(v.allowed, false, a);
    assert.equal(!v.allowed && v.status, 403);
  }
  const token = new HttpAccess({ token: TOKEN });
  assert.equal(token.loopbackOnly, false);
  const v = await token.check("/", "127.0.0.1", undefined);
  assert.equal(!v.allowed && v.status, 401);
  assert.equal((await token.check("/", "198.51.100.1", `Bearer ${TOKEN}`)).allowed, true);
});

Deno.test("HttpAccess: a token rule needs a token", () => {
  assert.throws(
    () => new HttpAccess({ rules: parseHttpHba("all all trust\n/wal/ all token\n") }),
    /HTTP access rule in line 2 says token, but no --http-token is given/,
  );
  assert.throws(() => new HttpAccess({ token: "" }), /empty/);
});

Deno.test("isLoopbackHost", () => {
  for (const h of ["127.0.0.1", "127.1.2.3", "localhost", "::1", "[::1]"]) {
    assert.equal(isLoopbackHost(h), true, h);
  }
  for (const h of ["0.0.0.0", "::", "10.0.0.1", "example.com", "::2", ""]) {
    assert.equal(isLoopbackHost(h), false, h);
  }
});

Deno.test("loadHttpAccess: token file and rules file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrelay_access_" });
  try {
    await Deno.writeTextFile(`${dir}/token`, `${TOKEN}\n`);
    await Deno.writeTextFile(`${dir}/short`, "abc\n");
    await Deno.writeTextFile(`${dir}/empty`, "\n");
    await Deno.writeTextFile(`${dir}/hba`, "all all token\n");
    await Deno.writeTextFile(`${dir}/bad`, "all all sometimes\n");
    const a = await loadHttpAccess({ hbaFile: `${dir}/hba`, tokenFile: `${dir}/token` });
    assert.equal((await a.check("/", "10.0.0.1", `Bearer ${TOKEN}`)).allowed, true);
    await assert.rejects(
      loadHttpAccess({ tokenFile: `${dir}/short` }),
      /HTTP token file ".*short" holds a token shorter than 16 characters/,
    );
    await assert.rejects(loadHttpAccess({ tokenFile: `${dir}/empty` }), /holds no token/);
    await assert.rejects(
      loadHttpAccess({ tokenFile: `${dir}/missing` }),
      /could not load HTTP token file ".*missing"/,
    );
    await assert.rejects(
      loadHttpAccess({ hbaFile: `${dir}/bad`, tokenFile: `${dir}/token` }),
      /invalid method "sometimes" in line 1 of file ".*bad": expected/,
    );
    await assert.rejects(loadHttpAccess({ hbaFile: `${dir}/hba` }), /says token/);
    assert.equal((await loadHttpAccess({})).loopbackOnly, true);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
