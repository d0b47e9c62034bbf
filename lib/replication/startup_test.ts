import assert from "node:assert/strict";
import { MessageBuilder } from "../pgwire/messages.ts";
import type { WalStore } from "../wal/store.ts";
import { connectionPair } from "./_test_utils.ts";
import { SenderRegistry } from "./registry.ts";
import { authenticate, readStartupPacket } from "./startup.ts";

function startupMessage(version: number, params: Record<string, string>): Uint8Array {
  const b = new MessageBuilder(null).int32(version);
  for (const [k, v] of Object.entries(params)) b.cstring(k).cstring(v);
  return b.byte(0).finish();
}

/** Reads typed messages until ReadyForQuery; returns each as its type and body. */
async function readUntilReady(conn: Deno.Conn): Promise<{ type: string; body: Uint8Array }[]> {
  let buf = new Uint8Array(0);
  const out: { type: string; body: Uint8Array }[] = [];
  while (out.at(-1)?.type !== "Z") {
    while (buf.length < 5 || buf.length < 1 + new DataView(buf.buffer).getInt32(1)) {
      const chunk = new Uint8Array(4096);
      const n = await conn.read(chunk);
      if (n === null) throw new Error("EOF");
      const next = new Uint8Array(buf.length + n);
      next.set(buf);
      next.set(chunk.subarray(0, n), buf.length);
      buf = next;
    }
    const len = new DataView(buf.buffer).getInt32(1);
    out.push({ type: String.fromCharCode(buf[0]!), body: buf.slice(5, 1 + len) });
    buf = buf.slice(1 + len);
  }
  return out;
}

function walOf(major: number): Pick<WalStore, "identity"> {
  return {
    identity: {
      systemId: 1n,
      segmentSize: 16 << 20,
      blockSize: 8192,
      magic: 0,
      serverMajor: major,
    },
  };
}

/** Runs startup and authentication for one StartupMessage against WAL of `major`. */
async function connectAs(major: number, version: number, extra: Record<string, string> = {}) {
  using pair = await connectionPair();
  await pair.client.write(
    startupMessage(version, { user: "repl", replication: "true", ...extra }),
  );
  const startup = await readStartupPacket(pair.server, undefined, major);
  assert.ok(startup);
  const registry = new SenderRegistry(1);
  const sender = registry.acquire({ clientAddr: "127.0.0.1", clientPort: 1 })!;
  sender.user = "repl";
  await authenticate(
    pair.server,
    {
      authenticate: () => Promise.resolve(),
      store: walOf(major),
      log: { log: () => {} },
    },
    sender,
    startup.protocolMinor,
  );
  const messages = await readUntilReady(pair.client);
  registry.release(sender);
  return { startup, messages };
}

const V3_0 = 0x30000;
const V3_1 = 0x30001;
const V3_2 = 0x30002;
const V3_3 = 0x30003;

Deno.test("startup: protocol 3.2 on 18 WAL is taken as is, with a 32-byte cancel key", async () => {
  const { startup, messages } = await connectAs(18, V3_2);
  assert.equal(startup.protocolMinor, 2);
  assert.deepEqual(messages.map((m) => m.type).filter((t) => t !== "S"), ["R", "K", "Z"]);
  const key = messages.find((m) => m.type === "K")!;
  assert.equal(key.body.length + 4, 40, "K len 40: pid and 32 bytes of key");
});

Deno.test("startup: protocol 3.2 on 15, 16 and 17 WAL is negotiated down to 3.0", async () => {
  for (const major of [15, 16, 17]) {
    const { startup, messages } = await connectAs(major, V3_2);
    assert.equal(startup.protocolMinor, 0);
    assert.deepEqual(messages.map((m) => m.type).filter((t) => t !== "S"), ["v", "R", "K", "Z"]);
    assert.deepEqual([...messages[0]!.body], [0, 3, 0, 0, 0, 0, 0, 0], "0x00030000, no options");
    assert.equal(messages.find((m) => m.type === "K")!.body.length + 4, 12);
  }
});

Deno.test("startup: NegotiateProtocolVersion carries the version word used, as each major sends it", async () => {
  const cases: [number, number, number | undefined, number][] = [
    // [major, requested, NegotiateProtocolVersion's version (none: not sent), K length]
    [15, V3_0, undefined, 12],
    [15, V3_2, V3_0, 12],
    [17, V3_1, V3_0, 12],
    [18, V3_0, undefined, 12],
    [18, V3_1, undefined, 12],
    [18, V3_2, undefined, 40],
    [18, V3_3, V3_2, 40],
  ];
  for (const [major, requested, negotiated, keyLength] of cases) {
    using pair = await connectionPair();
    await pair.client.write(startupMessage(requested, { user: "repl", replication: "true" }));
    const startup = await readStartupPacket(pair.server, undefined, major);
    const registry = new SenderRegistry(1);
    const sender = registry.acquire({ clientAddr: "127.0.0.1", clientPort: 1 })!;
    await authenticate(
      pair.server,
      {
        authenticate: () => Promise.resolve(),
        store: walOf(major),
        log: { log: () => {} },
      },
      sender,
      startup!.protocolMinor,
    );
    const messages = await readUntilReady(pair.client);
    const what = `${major} asked ${requested.toString(16)}`;
    const v = messages.find((m) => m.type === "v");
    if (negotiated === undefined) {
      assert.equal(v, undefined, what);
    } else {
      assert.equal(messages[0]!.type, "v", `${what}: before AuthenticationOk`);
      assert.deepEqual([...v!.body], [0, 3, 0, negotiated & 0xff, 0, 0, 0, 0], what);
    }
    assert.equal(messages.find((m) => m.type === "K")!.body.length + 4, keyLength, what);
  }
});

Deno.test("startup: _pq_ options are named back, under the version in use", async () => {
  using pair = await connectionPair();
  await pair.client.write(
    startupMessage(V3_0, { user: "repl", replication: "true", "_pq_.x": "1" }),
  );
  const startup = await readStartupPacket(pair.server, undefined, 17);
  assert.equal(startup!.params.has("_pq_.x"), false);
  const buf = new Uint8Array(64);
  const n = await pair.client.read(buf);
  assert.equal(String.fromCharCode(buf[0]!), "v");
  assert.deepEqual([...buf.subarray(5, 13)], [0, 3, 0, 0, 0, 0, 0, 1]);
  assert.equal(new TextDecoder().decode(buf.subarray(13, n! - 1)), "_pq_.x");
});

Deno.test("startup: protocol 4 is refused with the range the served major speaks", async () => {
  for (const [major, range] of [[15, "3.0 to 3.0"], [18, "3.0 to 3.2"]] as const) {
    using pair = await connectionPair();
    await pair.client.write(startupMessage(0x40000, { user: "repl" }));
    await assert.rejects(
      () => readStartupPacket(pair.server, undefined, major),
      new RegExp(`unsupported frontend protocol 4\\.0: server supports ${range}`),
    );
  }
});

Deno.test("startup: direct TLS without TLS configured is dropped without a word, as PostgreSQL does", async () => {
  using pair = await connectionPair();
  // The start of a ClientHello: a TLS handshake record.
  await pair.client.write(new Uint8Array([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc]));
  const logged: string[] = [];
  assert.equal(await readStartupPacket(pair.server, undefined, 17, (m) => logged.push(m)), null);
  assert.deepEqual(logged, ["direct SSL connection request but TLS is not configured"]);
});

Deno.test("startup: a startup packet of a refused length is dropped without a word, as PostgreSQL does", async () => {
  for (const length of [4, 10001, 0x7fffffff]) {
    using pair = await connectionPair();
    const head = new Uint8Array(8);
    new DataView(head.buffer).setInt32(0, length);
    new DataView(head.buffer).setInt32(4, V3_0);
    await pair.client.write(head);
    const logged: string[] = [];
    assert.equal(await readStartupPacket(pair.server, undefined, 15, (m) => logged.push(m)), null);
    assert.deepEqual(logged, ["invalid length of startup packet"]);
  }
});
