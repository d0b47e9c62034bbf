// A directory mixing two database systems: a segment of another cluster under a name inside the
// range a client streams. That client gets a clear error naming the file (XX001) after exactly
// the WAL before it, and the relay says so in its log; it never sends the foreign bytes.

import assert from "node:assert/strict";
import { PgClient } from "../lib/pgwire/client.ts";
import { PgServerError } from "../lib/pgwire/server_error.ts";
import { formatLsn } from "../lib/wal/lsn.ts";
import { startRelay, waitFor } from "./_pg.ts";
import { generateArchive, segmentStartLsn } from "./_relay_util.ts";

Deno.test("mixed systems: a foreign segment mid-range is refused with XX001, never sent", async () => {
  const a = await generateArchive({ walSegSize: 1, megabytes: 4 });
  await using _a = a.dir;
  const b = await generateArchive({ walSegSize: 1, megabytes: 2 });
  await using _b = b.dir;
  // Both clusters start at segment 1; put B's second segment where A's second one was.
  const foreign = a.names[1]!;
  assert.equal(b.names[1], foreign);
  await Deno.copyFile(`${b.dir.path}/${foreign}`, `${a.dir.path}/${foreign}`);
  await using relay = await startRelay({ walDir: a.dir.path });
  const c = await PgClient.connect({ hostname: "127.0.0.1", port: relay.port, user: "x" });
  try {
    const start = segmentStartLsn(a.names[0]!, 1024 * 1024);
    assert.equal(
      await c.startReplication(`START_REPLICATION ${formatLsn(start)} TIMELINE 1`),
      "copy",
    );
    let received = 0;
    let error: PgServerError | undefined;
    try {
      while (true) {
        const m = await c.next();
        if (m.type === "d" && m.body[0] === 0x77) received += m.body.length - 25;
      }
    } catch (e) {
      if (!(e instanceof PgServerError)) throw e;
      error = e;
    }
    assert.equal(error?.code, "XX001");
    assert.equal(error?.message, `WAL file "${foreign}" is from a different database system`);
    assert.match(error?.fields.detail ?? "", /database system identifier is \d+/);
    assert.equal(received, 1024 * 1024, "exactly the first segment, nothing of the foreign one");
    await waitFor(() => /is from a different database system/.test(relay.stderr()) || undefined, {
      message: "the relay must log the foreign segment",
    });
  } finally {
    c.close();
  }
});
