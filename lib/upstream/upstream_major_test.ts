import assert from "node:assert/strict";
import {
  authenticationOk,
  backendKeyData,
  parameterStatus,
  readyForQuery,
} from "../pgwire/messages.ts";
import { upstreamMajor } from "./_session.ts";
import { UpstreamConfigError } from "./config_error.ts";
import { startUpstream } from "./receiver.ts";

Deno.test("upstream major: 15 to 18 are served, whatever the minor and the packager say", () => {
  assert.equal(upstreamMajor("15.18 (Debian 15.18-0+deb12u1)"), 15);
  assert.equal(upstreamMajor("16.4"), 16);
  assert.equal(upstreamMajor("17.12 (Debian 17.12-0+deb13u1)"), 17);
  assert.equal(upstreamMajor("18.6 (Debian 18.6-3)"), 18);
  assert.equal(upstreamMajor("18beta1"), 18);
});

Deno.test("upstream major: others are refused, naming the upstream's version", () => {
  for (const version of ["19devel", "14.13", "9.6.24", undefined]) {
    assert.throws(() => upstreamMajor(version), (e: Error) => {
      assert.ok(e instanceof UpstreamConfigError);
      assert.equal(
        e.message,
        `upstream server version ${version ?? "(not reported)"} is not a PostgreSQL major ` +
          "walrelay supports (15–18)",
      );
      return true;
    });
  }
});

Deno.test("upstream major: relay mode refuses a 19devel upstream before writing any WAL", async () => {
  // An upstream that lets anyone in and says it is PostgreSQL 19; it never answers a query.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const served = (async () => {
    const conn = await listener.accept();
    const buf = new Uint8Array(1024);
    let n = await conn.read(buf);
    if (n === 8) { // SSLRequest
      await conn.write(new TextEncoder().encode("N"));
      n = await conn.read(buf);
    }
    for (
      const m of [
        authenticationOk(),
        parameterStatus("server_version", "19devel"),
        backendKeyData(1, 2),
        readyForQuery(),
      ]
    ) await conn.write(m);
    while (await conn.read(buf) !== null) { /* until the receiver leaves */ }
    conn.close();
  })();
  const dir = await Deno.makeTempDir();
  try {
    await assert.rejects(
      () =>
        startUpstream({
          dir,
          conninfo: `host=127.0.0.1 port=${listener.addr.port} user=x sslmode=disable`,
          environment: {
            env: () => undefined,
            home: () => undefined,
            readFile: () => undefined,
            warn: () => {},
          },
        }),
      /upstream server version 19devel is not a PostgreSQL major walrelay supports \(15–18\)/,
    );
    await served;
    assert.deepEqual(await Array.fromAsync(Deno.readDir(dir)), []);
  } finally {
    listener.close();
    await Deno.remove(dir, { recursive: true });
  }
});
