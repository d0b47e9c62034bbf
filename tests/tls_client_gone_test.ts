// A TLS client killed mid-session (no close_notify, its socket closed by the kernel) is a client
// that left, as for a plain connection: `client closed connection`, not an internal error.

import assert from "node:assert/strict";
import { createLogger } from "../lib/log.ts";
import { WalRelay } from "../lib/server.ts";
import { tempDir, TESTDATA, waitFor } from "./_pg.ts";
import { makeCertificates } from "./_tls_util.ts";

/** A client that connects with TLS, authenticates, says `ready` and waits to be killed. */
const CLIENT = `
const [port, caPath] = Deno.args;
const raw = await Deno.connect({ hostname: "127.0.0.1", port: Number(port) });
await raw.write(new Uint8Array([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]));
await raw.read(new Uint8Array(1));
const tls = await Deno.startTls(raw, { hostname: "localhost", caCerts: [Deno.readTextFileSync(caPath)] });
const params = new TextEncoder().encode("user\\0postgres\\0replication\\0true\\0\\0");
const m = new Uint8Array(8 + params.length);
new DataView(m.buffer).setInt32(0, m.length);
new DataView(m.buffer).setInt32(4, 196608);
m.set(params, 8);
await tls.write(m);
await tls.read(new Uint8Array(4096));
console.log("ready");
await new Promise(() => {});
`;

Deno.test("a TLS client killed mid-session is a client that closed its connection", async () => {
  await using dir = await tempDir("walrelay-tls-gone-");
  await makeCertificates(dir.path);
  await Deno.writeTextFile(`${dir.path}/client.ts`, CLIENT);
  const lines: string[] = [];
  const relay = await WalRelay.start({
    walDir: TESTDATA,
    port: 0,
    workers: 1,
    watch: false,
    logger: createLogger({ write: (l) => lines.push(l), level: "info" }),
    tlsCertFile: `${dir.path}/server.crt`,
    tlsKeyFile: `${dir.path}/server.key`,
  });
  try {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", `${dir.path}/client.ts`, String(relay.port), `${dir.path}/ca.crt`],
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const out = child.stdout.getReader();
    const { value } = await out.read();
    assert.match(new TextDecoder().decode(value), /ready/);
    child.kill("SIGKILL");
    await child.status;
    out.releaseLock();
    await child.stdout.cancel();
    const line = await waitFor(() => lines.find((l) => /disconnection/.test(l)), {
      message: "no disconnection logged",
    });
    assert.match(line, /reason="client closed connection"/);
    assert.ok(!lines.some((l) => /unexpected failure/.test(l)), lines.join("\n"));
  } finally {
    relay.close();
    await relay.finished;
  }
});
