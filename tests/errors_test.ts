// Every refusal a client can meet, checked by SQLSTATE and message against a relay serving the
// testdata archive, while another client streams through the same relay undisturbed.

import assert from "node:assert/strict";
import { PgClient } from "../lib/pgwire/client.ts";
import { PgServerError } from "../lib/pgwire/server_error.ts";
import { WalRelay } from "../lib/server.ts";
import { silentLogger } from "../lib/log.ts";
import { formatLsn } from "../lib/wal/lsn.ts";
import { MessageBuilder } from "../lib/pgwire/messages.ts";
import { copyTestdata, waitFor } from "./_pg.ts";

async function withRelay(
  fn: (relay: WalRelay, connect: (user?: string) => Promise<PgClient>) => Promise<void>,
  maxSenders = 10,
): Promise<void> {
  const dir = await copyTestdata();
  const relay = await WalRelay.start({
    walDir: dir,
    port: 0,
    maxSenders,
    logger: silentLogger,
    watch: false,
  });
  const clients: PgClient[] = [];
  const connect = async (user = "repl") => {
    const c = await PgClient.connect({ hostname: "127.0.0.1", port: relay.port, user });
    clients.push(c);
    return c;
  };
  try {
    await fn(relay, connect);
  } finally {
    for (const c of clients) await c.terminate();
    relay.close();
    await relay.finished;
    await Deno.remove(dir, { recursive: true });
  }
}

async function expectError(
  p: Promise<unknown>,
  code: string,
  message: string | RegExp,
  detail?: string,
): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof PgServerError, `expected an ErrorResponse, got ${e}`);
    assert.equal(e.code, code, `SQLSTATE for "${e.message}"`);
    if (typeof message === "string") assert.equal(e.message, message);
    else assert.match(e.message, message);
    if (detail !== undefined) assert.equal(e.fields.detail, detail);
    return true;
  });
}

/** A client streaming the whole archive, counting bytes, while the other tests misbehave. */
async function backgroundStream(connect: () => Promise<PgClient>, start: bigint, tli: number) {
  const c = await connect();
  assert.equal(
    await c.startReplication(`START_REPLICATION ${formatLsn(start)} TIMELINE ${tli}`),
    "copy",
  );
  let bytes = 0;
  let done = false;
  let failure: unknown;
  // Settled at once, so a test that fails before stop() leaves no unhandled rejection behind to
  // hide its own error; a failure while streaming is reported by stop().
  const loop = (async () => {
    while (!done) {
      const msg = await c.nextRaw();
      if (msg.type === "d" && msg.body[0] === 0x77) bytes += msg.body.length - 25;
      if (msg.type === "c") break;
    }
  })().catch((e) => {
    if (!done) failure = e;
  });
  return {
    bytes: () => bytes,
    stop: async () => {
      done = true;
      c.close();
      await loop;
      if (failure) throw failure;
    },
  };
}

Deno.test("errors: commands refused with PostgreSQL's SQLSTATEs, connection stays usable", async () => {
  await withRelay(async (relay, connect) => {
    const store = relay.store;
    const first = store.segments(1)[0]!;
    const stream = await backgroundStream(
      connect,
      first.segno * BigInt(store.identity.segmentSize),
      1,
    );
    const c = await connect();

    await expectError(
      c.query("SELECT 1"),
      "0A000",
      "cannot execute SQL commands in WAL sender for physical replication",
    );
    // Keywords are upper-case literals: lower case is SQL.
    await expectError(
      c.query("identify_system"),
      "0A000",
      "cannot execute SQL commands in WAL sender for physical replication",
    );
    await expectError(c.query("IDENTIFY_SYSTEM nonsense"), "42601", /syntax error/);
    await expectError(c.query("SHOW nope"), "42704", 'unrecognized configuration parameter "nope"');
    await expectError(c.query("TIMELINE_HISTORY 0"), "42601", "invalid timeline 0");
    await expectError(
      c.query("START_REPLICATION 0/0 TIMELINE 0"),
      "42601",
      "invalid timeline 0",
    );
    await expectError(c.query("START_REPLICATION zz/1"), "42601", /syntax error/);
    await expectError(c.query("BASE_BACKUP"), "55000", "no base backup is stored to serve");
    await expectError(
      c.query("TIMELINE_HISTORY 9"),
      "58P01",
      'could not open file "pg_wal/00000009.history": No such file or directory',
    );
    await expectError(
      c.query("START_REPLICATION SLOT nosuch 0/0"),
      "42704",
      'replication slot "nosuch" does not exist',
    );
    // Unquoted names are down-cased; a quoted one keeps its case and is refused.
    await expectError(
      c.query('CREATE_REPLICATION_SLOT "Bad" PHYSICAL'),
      "42602",
      'replication slot name "Bad" contains invalid character',
    );
    await c.query("CREATE_REPLICATION_SLOT s1 PHYSICAL");
    await expectError(
      c.query("CREATE_REPLICATION_SLOT s1 PHYSICAL"),
      "42710",
      'replication slot "s1" already exists',
    );
    await expectError(
      c.query("DROP_REPLICATION_SLOT nosuch"),
      "42704",
      'replication slot "nosuch" does not exist',
    );
    await c.query("DROP_REPLICATION_SLOT s1");
    // After all that the connection still answers.
    const [r] = await c.query("IDENTIFY_SYSTEM");
    assert.equal(r!.rows[0]![0], store.identity.systemId.toString());
    // An unknown slot reads as a row of NULLs, not an error.
    const [slot] = await c.query("READ_REPLICATION_SLOT nosuch");
    assert.deepEqual(slot!.rows, [[null, null, null]]);

    // The streaming client never noticed. Its first bytes wait for the segment's validation,
    // which under load can take longer than all the commands above.
    await waitFor(() => stream.bytes() > 0, {
      timeoutMs: 10_000,
      message: "the other client kept streaming",
    });
    await stream.stop();
  });
});

Deno.test("errors: START_REPLICATION positions and timelines", async () => {
  await withRelay(async (relay, connect) => {
    const store = relay.store;
    const c = await connect();
    const end = store.endLsn;
    const switchPoint = store.endOf(1);

    // Ahead of the end: the walsender answers CopyBothResponse first, then the error.
    await c.write(
      new MessageBuilder("Q").cstring(`START_REPLICATION ${formatLsn(end + 0x10000n)}`).finish(),
    );
    assert.equal((await c.nextRaw()).type, "W");
    await expectError(
      c.next(),
      "XX000",
      `requested starting point ${
        formatLsn(end + 0x10000n)
      } is ahead of the WAL flush position of this server ${formatLsn(end)}`,
    );
    assert.equal((await c.nextRaw()).type, "Z");

    await expectError(
      c.startReplication("START_REPLICATION 0/0 TIMELINE 9"),
      "XX000",
      "requested timeline 9 is not in this server's history",
    );
    await expectError(
      c.startReplication(`START_REPLICATION ${formatLsn(switchPoint + 8n)} TIMELINE 1`),
      "XX000",
      `requested starting point ${
        formatLsn(switchPoint + 8n)
      } on timeline 1 is not in this server's history`,
      `This server's history forked from timeline 1 at ${formatLsn(switchPoint)}.`,
    );

    // Starting exactly at the switch point: no COPY, just where the next timeline begins.
    const res = await c.startReplication(`START_REPLICATION ${formatLsn(switchPoint)} TIMELINE 1`);
    assert.notEqual(res, "copy");
    const rows = res as { rows: (string | null)[][]; tag: string }[];
    assert.deepEqual(rows[0]!.rows, [["2", formatLsn(switchPoint)]]);
    assert.deepEqual(rows.map((r) => r.tag), ["START_STREAMING", "START_REPLICATION"]);

    // Before the oldest segment: removed WAL is an error after W, never garbage.
    await c.write(
      new MessageBuilder("Q").cstring("START_REPLICATION 0/100000 TIMELINE 1").finish(),
    );
    assert.equal((await c.nextRaw()).type, "W");
    await expectError(
      c.next(),
      "58P01",
      "requested WAL segment 000000010000000000000001 has already been removed",
    );
    assert.equal((await c.nextRaw()).type, "Z");
    const [r] = await c.query("IDENTIFY_SYSTEM");
    assert.equal(r!.rows[0]![1], "2");
  });
});

Deno.test("errors: protocol misuse", async () => {
  await withRelay(async (relay, connect) => {
    const c = await connect();
    // Extended query protocol: refused, batch skipped to Sync, then ready again.
    await c.write(new MessageBuilder("P").cstring("").cstring("SELECT 1").int16(0).finish());
    await c.write(new MessageBuilder("S").finish());
    await expectError(
      c.next(),
      "08P01",
      "extended query protocol not supported in a replication connection",
    );
    assert.equal((await c.nextRaw()).type, "Z");
    const [r] = await c.query("SHOW wal_segment_size");
    assert.equal(r!.rows[0]![0], "1MB");

    // Non-replication and logical connections get a clear FATAL.
    for (
      const params of [{ database: "postgres" }, { database: "postgres", replication: "database" }]
    ) {
      await assert.rejects(
        PgClient.connect({ hostname: "127.0.0.1", port: relay.port, user: "repl", params }),
        (e: unknown) => e instanceof PgServerError && e.severity === "FATAL" && e.code === "0A000",
      );
    }
    await assert.rejects(
      PgClient.connect({
        hostname: "127.0.0.1",
        port: relay.port,
        user: "repl",
        params: { replication: "maybe" },
      }),
      (e: unknown) => e instanceof PgServerError && e.code === "22023",
    );

    // replication= is read as parse_bool reads it: prefixes, on/of(f), 1/0; a lone "o" is neither.
    const yes = await PgClient.connect({
      hostname: "127.0.0.1",
      port: relay.port,
      user: "repl",
      params: { replication: "ye" },
    });
    await yes.terminate();
    for (const [value, code] of [["of", "0A000"], ["o", "22023"], ["2", "22023"]] as const) {
      await assert.rejects(
        PgClient.connect({
          hostname: "127.0.0.1",
          port: relay.port,
          user: "repl",
          params: { replication: value },
        }),
        (e: unknown) => e instanceof PgServerError && e.code === code,
        `replication=${value}`,
      );
    }

    // An oversized startup packet is refused before it is read: as the postmaster's COMMERROR,
    // logged and the connection closed without a word to the client.
    const raw = await Deno.connect({ hostname: "127.0.0.1", port: relay.port });
    await raw.write(new Uint8Array([0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0]));
    const buf = new Uint8Array(512);
    let n: number | null = null;
    try {
      n = await raw.read(buf);
    } catch (e) {
      if (!(e instanceof Deno.errors.ConnectionReset)) throw e;
    }
    assert.equal(n, null, "closed without an ErrorResponse");
    raw.close();

    // An unknown payload inside COPY closes that connection only, as the walsender does.
    const s = await connect();
    assert.equal(
      await s.startReplication(`START_REPLICATION ${formatLsn(relay.store.endLsn)}`),
      "copy",
    );
    await s.write(new MessageBuilder("d").byte(0x7a).finish());
    await assert.rejects(
      (async () => {
        while (true) await s.nextRaw();
      })(),
      Deno.errors.UnexpectedEof,
    );
    const [again] = await c.query("IDENTIFY_SYSTEM");
    assert.equal(again!.rows.length, 1);
  });
});

Deno.test("errors: max senders is enforced before authentication and slots are freed", async () => {
  await withRelay(async (relay, connect) => {
    const a = await connect();
    const b = await connect();
    await expectError(
      connect(),
      "53300",
      "number of requested standby connections exceeds max_wal_senders (currently 2)",
    );
    // A client that vanishes frees its slot.
    a.close();
    const deadline = Date.now() + 5000;
    while (relay.registry.size > 1 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    const c = await connect();
    assert.equal((await c.query("IDENTIFY_SYSTEM")).length, 1);
    await b.terminate();
  }, 2);
});
