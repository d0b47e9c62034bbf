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
