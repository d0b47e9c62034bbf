import assert from "node:assert/strict";
import { join } from "node:path";
import { copyTestdata } from "../../tests/_pg.ts";
import { WalStore } from "./store.ts";

/** Rewrites the magic of every WAL page in the directory's segments, as another major's WAL. */
async function setMagic(dir: string, magic: number): Promise<void> {
  for await (const e of Deno.readDir(dir)) {
    if (!/^[0-9A-F]{24}(\.partial)?$/.test(e.name)) continue;
    const path = join(dir, e.name);
    const bytes = await Deno.readFile(path);
    for (let at = 0; at + 8192 <= bytes.length; at += 8192) {
      if (bytes[at + 1] === 0xD1) new DataView(bytes.buffer).setUint16(at, magic, true);
    }
    await Deno.writeFile(path, bytes);
  }
}

Deno.test("store: WAL of PostgreSQL 16, 17 and 18 opens as that major (synthetic pages)", async () => {
  for (const [magic, major] of [[0xD113, 16], [0xD116, 17], [0xD118, 18]] as const) {
    const dir = await copyTestdata();
    try {
      await setMagic(dir, magic);
      const store = await WalStore.open(dir);
      assert.equal(store.identity.serverMajor, major);
      assert.equal(store.identity.magic, magic);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
});

Deno.test("store: an unknown page magic is named, with the file, at open", async () => {
  const dir = await copyTestdata();
  try {
    await setMagic(dir, 0xD11A);
    await assert.rejects(
      () => WalStore.open(dir),
      (e: Error) => {
        assert.equal(
          e.message,
          "WAL page magic 0xD11A is not from a PostgreSQL major walrelay supports (15–18): " +
            `file "${join(dir, "00000002000000000000000B")}"`,
        );
        return true;
      },
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("store: a later segment of another major is ignored, and said so once", async () => {
  const dir = await copyTestdata();
  try {
    const logged: string[] = [];
    const store = await WalStore.open(dir, { log: (m) => logged.push(m) });
    const end = store.endLsn;
    // The next segments of the newest timeline, with a long header for their position: one of
    // 18, one of a major no one knows.
    const first = (await Deno.readFile(join(dir, "00000002000000000000000B"))).slice(0, 8192);
    for (
      const [name, pageAddr, magic] of [["C", 0xC00000n, 0xD118], ["D", 0xD00000n, 0xD11A]] as const
    ) {
      const page = first.slice();
      new DataView(page.buffer).setBigUint64(8, pageAddr, true);
      new DataView(page.buffer).setUint16(0, magic, true);
      await Deno.writeFile(join(dir, `00000002000000000000000${name}`), page);
    }
    await store.refresh();
    await store.refresh();
    assert.equal(store.endLsn, end);
    assert.deepEqual(logged.filter((m) => /0000000[CD]"/.test(m)).sort(), [
      `WAL file "00000002000000000000000C": PostgreSQL 18's WAL, the WAL served is PostgreSQL 15's; ignoring it`,
      'WAL file "00000002000000000000000D": WAL page magic 0xD11A is not from a PostgreSQL major ' +
      "walrelay supports (15–18); ignoring it",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
