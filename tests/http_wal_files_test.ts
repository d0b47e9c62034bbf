// /wal/ on `serve --http` as restore_command reaches it: curl fetching whole files, never a
// partial or damaged one; the access rules (loopback only, bearer token, rules file), the refusal
// of a non-loopback --http without them, and HTTPS.

import assert from "node:assert/strict";
import { copyTestdata, freePort, REPO_ROOT, run, startRelay, tempDir, waitFor } from "./_pg.ts";
import { makeCertificates } from "./_tls_util.ts";

const TOKEN = "c0ffee-walrelay-http-token-0123456789";

async function waitHttp(url: string, init?: RequestInit): Promise<void> {
  await waitFor(async () => {
    const r = await fetch(url, init);
    await r.body?.cancel();
    return r.status === 200;
  }, { timeoutMs: 20_000, message: `${url} never answered 200` });
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

async function flip(path: string, offset: number): Promise<void> {
  using f = await Deno.open(path, { read: true, write: true });
  const b = new Uint8Array(1);
  await f.seek(offset, Deno.SeekMode.Start);
  await f.read(b);
  b[0]! ^= 0x20;
  await f.seek(offset, Deno.SeekMode.Start);
  await f.write(b);
}

Deno.test("http /wal/: curl -fsS fetches whole files; missing, partial, damaged and bad names give no bytes; /metrics counts", async () => {
  const wal = await copyTestdata();
  await using _wal = { [Symbol.asyncDispose]: () => Deno.remove(wal, { recursive: true }) };
  await flip(`${wal}/000000010000000000000007`, 500_000);
  const httpPort = await freePort();
  await using _relay = await startRelay({ walDir: wal, args: ["--http", `127.0.0.1:${httpPort}`] });
  const base = `http://127.0.0.1:${httpPort}`;
  await waitHttp(`${base}/healthz`);
  await using out = await tempDir("walrelay_httpwal_");

  const curl = (name: string) =>
    run(["curl", "-fsS", `${base}/wal/${name}`, "-o", `${out.path}/${name.replaceAll("/", "_")}`]);
  for (const name of ["000000010000000000000006", "00000002000000000000000A", "00000002.history"]) {
    const r = await curl(name);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(
      await Deno.readFile(`${out.path}/${name}`),
      await Deno.readFile(`${wal}/${name}`),
      name,
    );
  }
  const cases: [string, number][] = [
    ["000000010000000000000005", 404], // not there
    ["000000010000000000000009", 404], // only its .partial is
    ["000000010000000000000007", 500], // damaged
    ["000000010000000000000009.partial", 400],
    ["0000000100000000000000..", 400],
  ];
  for (const [name, status] of cases) {
    const r = await curl(name);
    assert.equal(r.code, 22, `${name}: curl -f fails`);
    assert.match(r.stderr, new RegExp(`error: ${status}`), name);
    assert.equal(await exists(`${out.path}/${name}`), false, `${name}: no file written`);
  }
  // Paths that try to leave /wal/ never reach a file.
  for (const path of ["/wal/..%2F..%2Fetc%2Fpasswd", "/wal/%2E%2E/00000002.history"]) {
    const r = await fetch(`${base}${path}`);
    assert.ok(r.status === 400 || r.status === 404, `${path}: ${r.status}`);
    assert.doesNotMatch(await r.text(), /root:/);
  }

  const head = await run(["curl", "-fsSI", `${base}/wal/00000002000000000000000B`]);
  assert.equal(head.code, 0, head.stderr);
  assert.match(head.stdout, /^content-length: 1048576\r?$/im);
  assert.match(head.stdout, /^content-type: application\/octet-stream\r?$/im);

  const metrics = await (await fetch(`${base}/metrics`)).text();
  assert.match(metrics, /^walrelay_http_wal_requests_total\{outcome="served"\} 4$/m);
  assert.match(metrics, /^walrelay_http_wal_requests_total\{outcome="not_found"\} 1$/m);
  assert.match(metrics, /^walrelay_http_wal_requests_total\{outcome="not_complete"\} 1$/m);
  assert.match(metrics, /^walrelay_http_wal_requests_total\{outcome="damaged"\} 1$/m);
  assert.match(metrics, /^walrelay_http_wal_requests_total\{outcome="bad_name"\} [34]$/m);
});

Deno.test("http access: --http-token asks every client for the bearer token; --http-hba rules by path and address", async () => {
  await using dir = await tempDir("walrelay_httpwal_access_");
  await Deno.writeTextFile(`${dir.path}/token`, `${TOKEN}\n`);
  const seg = "000000010000000000000006";
  {
    const httpPort = await freePort();
    await using _relay = await startRelay({
      walDir: `${REPO_ROOT}/testdata/wal`,
      args: ["--http", `127.0.0.1:${httpPort}`, "--http-token", `${dir.path}/token`],
    });
    const base = `http://127.0.0.1:${httpPort}`;
    const auth = { headers: { authorization: `Bearer ${TOKEN}` } };
    await waitHttp(`${base}/healthz`, auth);
    const none = await fetch(`${base}/wal/${seg}`);
    assert.equal(none.status, 401);
    assert.equal(none.headers.get("www-authenticate"), 'Bearer realm="walrelay"');
    assert.equal(await none.text(), "a bearer token is required\n");
    const wrong = await fetch(`${base}/wal/${seg}`, {
      headers: { authorization: `Bearer ${TOKEN.slice(0, -1)}` },
    });
    assert.equal(wrong.status, 401);
    assert.equal(await wrong.text(), "the bearer token is wrong\n");
    const status = await fetch(`${base}/status`);
    assert.equal(status.status, 401);
    await status.body?.cancel();
    const ok = await fetch(`${base}/wal/${seg}`, auth);
    assert.equal(ok.status, 200);
    assert.equal((await ok.bytes()).length, 1 << 20);
    // restore_command with the token in a header file, as the README shows.
    await Deno.writeTextFile(`${dir.path}/header`, `Authorization: Bearer ${TOKEN}\n`);
    const r = await run([
      "curl",
      "-fsS",
      "-H",
      `@${dir.path}/header`,
      `${base}/wal/${seg}`,
      "-o",
      `${dir.path}/${seg}`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    const metrics = await (await fetch(`${base}/metrics`, auth)).text();
    assert.match(metrics, /^walrelay_http_wal_requests_total\{outcome="denied"\} 2$/m);
  }
  {
    await Deno.writeTextFile(
      `${dir.path}/http_hba.conf`,
      "# PATH ADDRESS METHOD\n/healthz all trust\n/wal/ 127.0.0.1/32 reject\nall all token\n",
    );
    const httpPort = await freePort();
    await using _relay = await startRelay({
      walDir: `${REPO_ROOT}/testdata/wal`,
      args: [
        "--http",
        `127.0.0.1:${httpPort}`,
        "--http-hba",
        `${dir.path}/http_hba.conf`,
        "--http-token",
        `${dir.path}/token`,
      ],
    });
    const base = `http://127.0.0.1:${httpPort}`;
    await waitHttp(`${base}/healthz`);
    const wal = await fetch(`${base}/wal/${seg}`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    assert.equal(wal.status, 403);
    assert.match(await wal.text(), /HTTP access rule in line 3 rejects 127\.0\.0\.1/);
    const status = await fetch(`${base}/status`);
    assert.equal(status.status, 401);
    await status.body?.cancel();
  }
});

Deno.test("http access: a non-loopback --http without --http-hba or --http-token is refused at startup", async () => {
  await using dir = await tempDir("walrelay_httpwal_refuse_");
  const cli = (args: string[]) =>
    run([
      Deno.execPath(),
      "run",
      "-A",
      `${REPO_ROOT}/cli.ts`,
      "serve",
      "--wal-dir",
      `${REPO_ROOT}/testdata/wal`,
      ...args,
    ]);
  const port = await freePort();
  const refused = await cli(["--listen", `127.0.0.1:${port}`, "--http", `0.0.0.0:${port}`]);
  assert.equal(refused.code, 1);
  assert.match(
    refused.stderr,
    /refusing to serve HTTP on non-loopback address "0\.0\.0\.0" without access rules: give --http-hba or --http-token/,
  );
  const lone = await cli(["--http-token", `${dir.path}/token`]);
  assert.equal(lone.code, 2);
  assert.match(lone.stderr, /--http-hba, --http-token.* go with --http/);
  await Deno.writeTextFile(`${dir.path}/token`, "short\n");
  const short = await cli([
    "--listen",
    `127.0.0.1:${port}`,
    "--http",
    `0.0.0.0:${port}`,
    "--http-token",
    `${dir.path}/token`,
  ]);
  assert.equal(short.code, 1);
  assert.match(short.stderr, /holds a token shorter than 16 characters/);

  // With a token it listens on every address, and loopback clients need the token too.
  await Deno.writeTextFile(`${dir.path}/token`, `${TOKEN}\n`);
  const httpPort = await freePort();
  await using _relay = await startRelay({
    walDir: `${REPO_ROOT}/testdata/wal`,
    args: ["--http", `0.0.0.0:${httpPort}`, "--http-token", `${dir.path}/token`],
  });
  const url = `http://127.0.0.1:${httpPort}/wal/00000002.history`;
  await waitHttp(url, { headers: { authorization: `Bearer ${TOKEN}` } });
  const none = await fetch(url);
  assert.equal(none.status, 401);
  await none.body?.cancel();
});

Deno.test("http /wal/ over HTTPS: --http-tls-cert/--http-tls-key, curl --cacert", async () => {
  await using dir = await tempDir("walrelay_httpwal_tls_");
  await makeCertificates(dir.path);
  const httpPort = await freePort();
  await using _relay = await startRelay({
    walDir: `${REPO_ROOT}/testdata/wal`,
    args: [
      "--http",
      `127.0.0.1:${httpPort}`,
      "--http-tls-cert",
      `${dir.path}/server.crt`,
      "--http-tls-key",
      `${dir.path}/server.key`,
    ],
  });
  const seg = "00000002000000000000000A";
  const r = await waitFor(async () => {
    const r = await run([
      "curl",
      "-fsS",
      "--cacert",
      `${dir.path}/ca.crt`,
      `https://localhost:${httpPort}/wal/${seg}`,
      "-o",
      `${dir.path}/${seg}`,
    ]);
    return r.code === 0 ? r : undefined;
  }, { timeoutMs: 20_000, message: "curl over HTTPS never succeeded" });
  assert.equal(r.code, 0);
  assert.deepEqual(
    await Deno.readFile(`${dir.path}/${seg}`),
    await Deno.readFile(`${REPO_ROOT}/testdata/wal/${seg}`),
  );
  // Plain HTTP on the HTTPS port gets nothing.
  const plain = await run(["curl", "-fsS", `http://127.0.0.1:${httpPort}/wal/${seg}`]);
  assert.notEqual(plain.code, 0);
  assert.equal(plain.stdout, "");
});
