// Relay mode with --compress: under pgbench the relay stores each completed segment compressed
// (gzip, lz4, zstd; the segment being written stays plain), serves them downstream byte for byte
// as the primary wrote them, takes less disk than the plain segments, and --retain counts the
// compressed sizes.

import assert from "node:assert/strict";
import { join } from "node:path";
import { startPrimary, tempDir, waitFor } from "./_pg.ts";
import { startRelayMode } from "./_relay_mode_util.ts";
import { pullMatchesPrimary, relayEnd, SEG } from "./_archive_util.ts";
import { parseLsn } from "../lib/wal/lsn.ts";

const EXT = { gzip: "gz", lz4: "lz4", zstd: "zst" } as const;

/** Segment files of `dir` by name, with their sizes on disk. */
function segmentFiles(dir: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const e of Deno.readDirSync(dir)) {
    if (e.isFile && /^[0-9A-F]{24}(\.partial|\.gz|\.lz4|\.zst)?$/.test(e.name)) {
      try {
        out.set(e.name, Deno.statSync(join(dir, e.name)).size);
      } catch (err) {
        // Compressed or removed by retention since the listing.
        if (!(err instanceof Deno.errors.NotFound)) throw err;
      }
    }
  }
  return out;
}

/**
 * The primary's segments, each read when asked for: after the comparison's pull, so that WAL the
 * primary wrote after the switch (a standby snapshot), which the relay may have received, is
 * there too.
 */
function primaryNow(pg: { walDir: string }): Map<string, Uint8Array> {
  return new class extends Map<string, Uint8Array> {
    override get(name: string): Uint8Array | undefined {
      try {
        return Deno.readFileSync(join(pg.walDir, name));
      } catch (err) {
        if (err instanceof Deno.errors.NotFound) return undefined;
        throw err;
      }
    }
  }();
}

Deno.test("relay mode --compress gzip|lz4|zstd under pgbench: downstream byte-identical, smaller on disk, --retain on compressed sizes", async () => {
  await using pg = await startPrimary({
    walSegSize: 1,
    conf: { fsync: "off", wal_keep_size: "1GB", max_wal_senders: 10, autovacuum: "off" },
  });
  const formats = ["gzip", "lz4", "zstd"] as const;
  const dirs = await Promise.all(
    [...formats, "retain"].map((f) => tempDir(`walrelay-compress-${f}-`)),
  );
  await using _dirs = {
    [Symbol.asyncDispose]: async () => void await Promise.all(dirs.map((d) => d.remove())),
  };
  const relays = await Promise.all([
    ...formats.map((f, i) =>
      startRelayMode({ walDir: dirs[i]!.path, upstream: pg.conninfo(), args: ["--compress", f] })
    ),
    startRelayMode({
      walDir: dirs[3]!.path,
      upstream: pg.conninfo(),
      args: ["--compress", "zstd", "--retain", "3MB"],
    }),
  ]);
  await using _relays = {
    [Symbol.asyncDispose]: async () =>
      void await Promise.all(relays.map((r) => r[Symbol.asyncDispose]())),
  };

  await pg.pgbench(["-i", "-s", "2", "-q"]);
  await pg.pgbench(["-c", "2", "-t", "1000", "-n"]);
  await pg.switchWal();
  const target = parseLsn(await pg.currentLsn())!;
  for (const relay of relays) {
    await waitFor(async () => (await relayEnd(relay)) >= target, {
      timeoutMs: 60_000,
      message: `the relay did not receive up to the primary's end:\n${relay.stderr()}`,
    });
  }
  // Every completed segment compressed, in the background: only the one being written is plain.
  for (const [i, dir] of dirs.entries()) {
    await waitFor(
      () => [...segmentFiles(dir.path).keys()].every((n) => !/^[0-9A-F]{24}$/.test(n)),
      {
        timeoutMs: 60_000,
        message: `plain complete segments left in ${dir.path}:\n${relays[i]!.stderr()}`,
      },
    );
  }
  const primary = primaryNow(pg);

  for (const [i, format] of formats.entries()) {
    const files = segmentFiles(dirs[i]!.path);
    const packed = [...files].filter(([n]) => n.endsWith(`.${EXT[format]}`));
    assert.ok(packed.length >= 10, `${format}: ${[...files.keys()].join(", ")}`);
    assert.ok(
      [...files.keys()].every((n) => n.endsWith(`.${EXT[format]}`) || n.endsWith(".partial")),
      [...files.keys()].join(", "),
    );
    const onDisk = packed.reduce((n, [, size]) => n + size, 0);
    assert.ok(
      onDisk < packed.length * SEG / 2,
      `${format}: ${onDisk} bytes for ${packed.length} segments`,
    );
    const first = [...files.keys()].sort()[0]!.slice(0, 24);
    const compared = await pullMatchesPrimary(relays[i]!, first, primary, 15);
    assert.ok(compared >= packed.length, `${format}: ${compared} segments compared`);
  }

  // --retain 3MB counts compressed bytes (and the plain segment being written): more complete
  // segments are kept than would fit plain.
  const kept = segmentFiles(dirs[3]!.path);
  const total = [...kept.values()].reduce((a, b) => a + b, 0);
  const complete = [...kept.keys()].filter((n) => n.endsWith(".zst"));
  const partial = [...kept].filter(([n]) => n.endsWith(".partial")).reduce((a, [, b]) => a + b, 0);
  assert.ok(total <= 3 * SEG + SEG, `${total} bytes kept`);
  assert.ok(
    complete.length > Math.floor((3 * SEG - partial) / SEG),
    `only ${JSON.stringify([...kept])} kept`,
  );
});

Deno.test("relay mode --compress --retain restarted on plain segments: none is removed for its plain size while it awaits compression", async () => {
  await using pg = await startPrimary({
    walSegSize: 1,
    conf: { fsync: "off", wal_keep_size: "1GB", max_wal_senders: 10, autovacuum: "off" },
  });
  await using dir = await tempDir("walrelay-compress-backlog-");
  {
    // Without --compress first: the directory fills with plain segments.
    await using relay = await startRelayMode({ walDir: dir.path, upstream: pg.conninfo() });
    await pg.pgbench(["-i", "-s", "1", "-q"]);
    await pg.switchWal();
    const target = parseLsn(await pg.currentLsn())!;
    await waitFor(async () => (await relayEnd(relay)) >= target, {
      timeoutMs: 60_000,
      message: `the relay did not reach the primary's end:\n${relay.stderr()}`,
    });
    assert.equal((await relay.stop("SIGTERM", 15_000)).code, 0, relay.stderr());
  }
  const plain = [...segmentFiles(dir.path).keys()].filter((n) => /^[0-9A-F]{24}$/.test(n)).sort();
  const budget = 4 * SEG;
  assert.ok(plain.length * SEG > budget, `only ${plain.length} segments`);
  // Restarted with --compress, it queues them all for compression at once. Counted plain they
  // would exceed the budget; compressed they fit, so none may go.
  await using relay = await startRelayMode({
    walDir: dir.path,
    upstream: pg.conninfo(),
    args: ["--compress", "zstd", "--retain", "4MB"],
  });
  await waitFor(
    () => [...segmentFiles(dir.path).keys()].every((n) => !/^[0-9A-F]{24}$/.test(n)),
    { timeoutMs: 60_000, message: `plain complete segments left:\n${relay.stderr()}` },
  );
  const files = segmentFiles(dir.path);
  const total = [...files.values()].reduce((a, b) => a + b, 0);
  assert.ok(total <= budget, `${total} bytes kept: ${JSON.stringify([...files])}`);
  assert.deepEqual(
    plain.filter((n) => !files.has(`${n}.zst`)),
    [],
    `removed:\n${relay.stderr()}`,
  );
});

Deno.test("relay mode --compress: restarted on its directory, the relay resumes after its compressed segments", async () => {
  await using pg = await startPrimary({
    walSegSize: 1,
    conf: { fsync: "off", wal_keep_size: "1GB", max_wal_senders: 10, autovacuum: "off" },
  });
  await using dir = await tempDir("walrelay-compress-restart-");
  const start = () =>
    startRelayMode({ walDir: dir.path, upstream: pg.conninfo(), args: ["--compress", "gzip"] });
  const caughtUp = async (relay: Awaited<ReturnType<typeof start>>) => {
    const target = parseLsn(await pg.currentLsn())!;
    await waitFor(async () => (await relayEnd(relay)) >= target, {
      timeoutMs: 60_000,
      message: `the relay did not reach the primary's end:\n${relay.stderr()}`,
    });
    await waitFor(
      () => [...segmentFiles(dir.path).keys()].every((n) => !/^[0-9A-F]{24}$/.test(n)),
      { timeoutMs: 60_000, message: `plain complete segments left:\n${relay.stderr()}` },
    );
  };
  {
    await using relay = await start();
    await pg.pgbench(["-i", "-s", "1", "-q"]);
    await pg.switchWal();
    await caughtUp(relay);
    assert.equal((await relay.stop("SIGTERM", 15_000)).code, 0, relay.stderr());
  }
  const before = [...segmentFiles(dir.path).keys()].filter((n) => n.endsWith(".gz")).length;
  // Written while the relay is down: it must continue from its compressed segments, not from
  // wherever the upstream is now.
  await pg.pgbench(["-c", "1", "-t", "500", "-n"]);
  await pg.switchWal();
  await using relay = await start();
  await caughtUp(relay);
  const files = [...segmentFiles(dir.path).keys()].sort();
  assert.ok(files.filter((n) => n.endsWith(".gz")).length > before, files.join(", "));
  const compared = await pullMatchesPrimary(
    relay,
    files[0]!.slice(0, 24),
    primaryNow(pg),
    15,
  );
  assert.ok(compared >= before, `${compared} segments compared`);
});
