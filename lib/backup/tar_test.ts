import assert from "node:assert/strict";
import { buildTarHeader, parseTarHeader, tarEvents, type TarHeader } from "./tar.ts";

function header(name: string, size: number, typeflag = "0"): TarHeader {
  return { name, mode: 0o600, uid: 101, gid: 103, size, mtime: 1764625713, typeflag, linkname: "" };
}

/** An archive of the given members (content bytes all 7), with the 1024-byte trailer. */
function archive(members: [string, number][]): Uint8Array {
  const parts: number[] = [];
  for (const [name, size] of members) {
    parts.push(...buildTarHeader(header(name, size)));
    parts.push(...new Array(size).fill(7));
    parts.push(...new Array((512 - (size % 512)) % 512).fill(0));
  }
  parts.push(...new Array(1024).fill(0));
  return new Uint8Array(parts);
}

Deno.test("tar: headers are written as PostgreSQL's tarCreateHeader writes them", () => {
  const block = buildTarHeader(header("backup_label", 225));
  const text = new TextDecoder().decode(block);
  assert.equal(text.slice(100, 108), "0000600 ");
  assert.equal(text.slice(124, 136), "00000000341 ");
  assert.equal(text.slice(257, 265), "ustar\u000000");
  assert.equal(text.slice(265, 273), "postgres");
  assert.deepEqual(parseTarHeader(block), header("backup_label", 225));
  // A name over 100 bytes goes into the prefix, split at a slash.
  const long = `pg_tblspc/16384/${"d".repeat(90)}/${"f".repeat(60)}`;
  assert.equal(parseTarHeader(buildTarHeader(header(long, 1))).name, long);
  // A damaged header is not taken for one.
  block[0] = 0x41;
  assert.throws(() => parseTarHeader(block), /checksum/);
});

Deno.test("tar: members, data, padding and trailer, whatever the chunking", async () => {
  const tar = archive([["PG_VERSION", 3], ["global/", 0], ["big", 70000], ["even", 512]]);
  for (const size of [1, 511, 512, 4096, tar.length]) {
    const chunks: Uint8Array[] = [];
    for (let i = 0; i < tar.length; i += size) chunks.push(tar.slice(i, i + size));
    const events = await Array.fromAsync(tarEvents(ReadableStream.from(chunks), 32768));
    const names = events.filter((e) => e.kind === "member").map((e) =>
      e.kind === "member" ? e.header.name : ""
    );
    assert.deepEqual(names, ["PG_VERSION", "global/", "big", "even"]);
    let bytes = 0;
    for (const e of events) {
      if (e.kind === "member") bytes += 512;
      else {
        bytes += e.bytes.length;
        if (e.kind === "data") assert.ok(e.bytes.length <= 32768);
      }
    }
    assert.equal(bytes, tar.length, `chunks of ${size}`);
    const end = events.at(-1)!;
    assert.equal(end.kind, "end");
    assert.equal(end.kind === "end" && end.bytes.length, 1024);
  }
});

Deno.test("tar: an archive cut short is an error", async () => {
  const tar = archive([["a", 1000]]).subarray(0, 900);
  await assert.rejects(
    Array.fromAsync(tarEvents(ReadableStream.from([tar]))),
    /unexpected end of tar archive/,
  );
});
