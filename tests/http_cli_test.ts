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
