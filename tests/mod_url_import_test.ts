// mod.ts must stay importable by URL: relative imports and full specifiers only, no bare names
// that only our deno.json maps. Serve the repository over HTTP on loopback and import it.

import assert from "node:assert/strict";

const ROOT = new URL("../", import.meta.url).pathname;

Deno.test("mod.ts imports by URL from a plain HTTP server", async () => {
  const ac = new AbortController();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: ac.signal, onListen() {} },
    async (req) => {
      const path = decodeURIComponent(new URL(req.url).pathname);
      if (path.includes("..")) return new Response("no", { status: 400 });
      try {
        const body = await Deno.readFile(ROOT + path.slice(1));
        return new Response(body, { headers: { "content-type": "application/typescript" } });
      } catch {
        return new Response("not found", { status: 404 });
      }
    },
  );
  const denoDir = await Deno.makeTempDir({ prefix: "walrelay_denodir_" });
  try {
    const host = `127.0.0.1:${server.addr.port}`;
    const script = `
      import * as walrelay from "http://${host}/mod.ts";
      const lsn = walrelay.parseLsn("0/15020D0");
      console.log(JSON.stringify({
        lsn: walrelay.formatLsn(lsn),
        relay: typeof walrelay.WalRelay.start,
        stream: typeof walrelay.openWalStream,
        segment: walrelay.segmentFileName(1, 1n, 16 * 1024 * 1024),
      }));
    `;
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["eval", "--no-config", `--allow-import=${host}`, script],
      env: { DENO_DIR: denoDir, NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, stderr);
    assert.deepEqual(JSON.parse(new TextDecoder().decode(out.stdout)), {
      lsn: "0/15020D0",
      relay: "function",
      stream: "function",
      segment: "000000010000000000000001",
    });
  } finally {
    ac.abort();
    await server.finished;
    await Deno.remove(denoDir, { recursive: true });
  }
});
