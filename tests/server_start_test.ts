// WalRelay.start checks every option and reads every file before it binds a port or contacts the
// upstream, and a failure after that releases what was acquired. Run under --sanitize-resources,
// a listener, TLS bridge, watcher or timer left behind fails the test.

import assert from "node:assert/strict";
import { freePort, tempDir, TESTDATA } from "./_pg.ts";
import { makeCertificates } from "./_tls_util.ts";
import { silentLogger } from "../lib/log.ts";
import { WalRelay, type WalRelayOptions } from "../lib/server.ts";

/** Whether nothing listens on the port: binding it succeeds. */
function portIsFree(port: number): boolean {
  try {
    Deno.listen({ hostname: "127.0.0.1", port }).close();
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.AddrInUse) return false;
    throw e;
  }
}

/** A listener standing in for a primary: reports whether anyone connected to it. */
function fakeUpstream(): Deno.Listener & { connected(): Promise<boolean> } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  return Object.assign(listener, {
    // Our own probe must be the first connection accepted, or the relay came first.
    async connected(): Promise<boolean> {
      const probe = await Deno.connect({ hostname: "127.0.0.1", port });
      const first = await listener.accept();
      const ours = (first.remoteAddr as Deno.NetAddr).port ===
        (probe.localAddr as Deno.NetAddr).port;
      first.close();
      probe.close();
      return !ours;
    },
  });
}

Deno.test("start: a missing certificate fails before the port is bound or the upstream contacted", async () => {
  await using empty = await tempDir("walrelay-start-cert-");
  using upstream = fakeUpstream();
  // The port is taken: had start bound it first, the error would be AddrInUse.
  using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (taken.addr as Deno.NetAddr).port;
  await assert.rejects(
    WalRelay.start({
      walDir: empty.path,
      port,
      logger: silentLogger,
      tlsCertFile: `${empty.path}/missing.crt`,
      tlsKeyFile: `${empty.path}/missing.key`,
      upstream: { conninfo: `host=127.0.0.1 port=${(upstream.addr as Deno.NetAddr).port}` },
    }),
    /could not load server certificate file ".*missing\.crt": No such file or directory/,
  );
  assert.equal(await upstream.connected(), false, "the upstream was contacted");
});

Deno.test("start: bad options are refused before anything is bound", async (t) => {
  await using dir = await tempDir("walrelay-start-options-");
  const port = await freePort();
  const cases: [string, Partial<WalRelayOptions>, RegExp][] = [
    ["port out of range", { port: 65536 }, /invalid port 65536/],
    ["no senders", { port, maxSenders: 0 }, /invalid maxSenders 0/],
    ["fractional connections", { port, maxConnections: 1.5 }, /invalid maxConnections 1.5/],
    ["negative sender timeout", { port, timeouts: { sender: -1 } }, /invalid sender timeout -1/],
    ["zero rescan", { port, rescanMs: 0 }, /invalid rescan interval 0/],
    ["http port out of range", { port, http: { port: -1 } }, /invalid http port -1/],
    ["certificate without key", { port, tlsCertFile: "x.crt" }, /certificate and key go together/],
    ["missing hba file", { port, hbaFile: `${dir.path}/nope.conf` }, /nope\.conf/],
    [
      "missing WAL directory",
      { port, walDir: `${dir.path}/nope` },
      /WAL directory ".*nope" does not exist/,
    ],
  ];
  for (const [name, options, message] of cases) {
    await t.step(name, async () => {
      await assert.rejects(
        WalRelay.start({ walDir: TESTDATA, logger: silentLogger, ...options }),
        message,
      );
      assert.ok(portIsFree(port), `port ${port} is still bound`);
    });
  }
});

Deno.test("start: an HTTP port in use releases the replication listener and the TLS bridge", async () => {
  await using certs = await tempDir("walrelay-start-http-");
  await makeCertificates(certs.path);
  using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const httpPort = (taken.addr as Deno.NetAddr).port;
  const port = await freePort();
  await assert.rejects(
    WalRelay.start({
      walDir: TESTDATA,
      port,
      logger: silentLogger,
      tlsCertFile: `${certs.path}/server.crt`,
      tlsKeyFile: `${certs.path}/server.key`,
      http: { port: httpPort },
    }),
    new RegExp(`could not start the status server on 127\\.0\\.0\\.1:${httpPort}`),
  );
  assert.ok(portIsFree(port), "the replication port is still bound");
  // The same options start once the HTTP port is free again.
  taken.close();
  await using relay = await WalRelay.start({
    walDir: TESTDATA,
    port,
    logger: silentLogger,
    tlsCertFile: `${certs.path}/server.crt`,
    tlsKeyFile: `${certs.path}/server.key`,
    http: { port: httpPort },
  });
  assert.equal(relay.port, port);
  assert.equal(relay.http?.url, `http://127.0.0.1:${httpPort}/`);
});

Deno.test("start: the status server serves the relay and stops with it", async () => {
  const relay = await WalRelay.start({
    walDir: TESTDATA,
    port: 0,
    logger: silentLogger,
    http: { port: 0 },
  });
  const url = relay.http?.url;
  assert.ok(url);
  const status = await (await fetch(new URL("status", url))).json();
  assert.equal(status.store.timeline, 2);
  await relay.shutdown();
  await assert.rejects(fetch(new URL("status", url)), TypeError);
});
