// The status server as an operator starts it: `serve --http`, then `walrelay status` and
// /metrics while a real pg_receivewal streams.

import assert from "node:assert/strict";
import { freePort, REPO_ROOT, run, startRelay, tempDir, waitFor } from "./_pg.ts";
import { spawnReceivewal } from "./_relay_util.ts";

Deno.test("cli: serve --http, walrelay status and /metrics show a streaming client", async () => {
  await using dir = await tempDir("walrelay_httpcli_");
  const src = new URL("../testdata/wal/", import.meta.url).pathname;
  for await (const e of Deno.readDir(src)) {
    await Deno.copyFile(src + e.name, `${dir.path}/${e.name}`);
  }
  const httpPort = await freePort();
  await using relay = await startRelay({
    walDir: dir.path,
    args: ["--http", `127.0.0.1:${httpPort}`],
  });
  await using out = await tempDir("walrelay_httpcli_out_");
  await Deno.writeFile(`${out.path}/000000010000000000000006.partial`, new Uint8Array());
  await using rw = await spawnReceivewal(relay.port, ["-D", out.path, "-n"]);
  const url = `http://127.0.0.1:${httpPort}`;
  const status = await waitFor(async () => {
    const r = await run([Deno.execPath(), "run", "-A", `${REPO_ROOT}/cli.ts`, "status", url]);
    return r.code === 0 && /streaming/.test(r.stdout) ? r.stdout : undefined;
  }, { timeoutMs: 20_000, message: "walrelay status never showed the client streaming" });
  assert.match(status, /pg_receivewal/);
  assert.match(status, /\(1 row\)/);
  const metrics = await (await fetch(`${url}/metrics`)).text();
  assert.match(metrics, /walrelay_sender_sent_lsn_bytes\{[^}]*application_name="pg_receivewal"/);
  const health = await fetch(`${url}/healthz`);
  assert.equal(health.status, 200);
  await health.body?.cancel();
  await rw.stop("SIGINT");
});

Deno.test("cli: walrelay status sends the bearer token of --token FILE or WALRELAY_HTTP_TOKEN to serve --http-token", async () => {
  await using dir = await tempDir("walrelay_httpcli_token_");
  const token = "c0ffee-walrelay-status-token-0123";
  const tokenFile = `${dir.path}/http_token`;
  await Deno.writeTextFile(tokenFile, `${token}\n`);
  const httpPort = await freePort();
  await using _relay = await startRelay({
    walDir: `${REPO_ROOT}/testdata/wal`,
    args: ["--http", `127.0.0.1:${httpPort}`, "--http-token", tokenFile],
  });
  const url = `http://127.0.0.1:${httpPort}`;
  const status = (args: string[], env: Record<string, string> = {}) =>
    run([Deno.execPath(), "run", "-A", `${REPO_ROOT}/cli.ts`, "status", url, ...args], { env });
  const withFile = await waitFor(async () => {
    const r = await status(["--token", tokenFile]);
    return r.code === 0 ? r : undefined;
  }, { timeoutMs: 20_000, message: "walrelay status --token never succeeded" });
  assert.match(withFile.stdout, /^ pid \|/);
  assert.match(withFile.stdout, /\(0 rows\)/);
  const json = await status(["--json"], { WALRELAY_HTTP_TOKEN: token });
  assert.equal(json.code, 0, json.stderr);
  assert.deepEqual(JSON.parse(json.stdout).senders, []);

  const none = await status([]);
  assert.equal(none.code, 1);
  assert.match(none.stderr, /answered 401 Unauthorized: a bearer token is required/);
  assert.match(none.stderr, /--token FILE, or the token in WALRELAY_HTTP_TOKEN/);
  const wrong = await status([], { WALRELAY_HTTP_TOKEN: `${token}x` });
  assert.equal(wrong.code, 1);
  assert.match(wrong.stderr, /answered 401 Unauthorized: the bearer token is wrong/);
  // --token wins over the environment.
  const both = await status(["--token", tokenFile], {
    WALRELAY_HTTP_TOKEN: "wrong-wrong-wrong-wrong",
  });
  assert.equal(both.code, 0, both.stderr);
  await Deno.writeTextFile(`${dir.path}/short`, "short\n");
  const short = await status(["--token", `${dir.path}/short`]);
  assert.equal(short.code, 2);
  assert.match(
    short.stderr,
    /HTTP token file ".*\/short" holds a token shorter than 16 characters/,
  );
});
