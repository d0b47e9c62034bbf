import assert from "node:assert/strict";
import {
  majorVersionOfMagic,
  PAGE_MAGIC_BY_MAJOR,
  readLongPageHeader,
  SIZE_OF_LONG_PAGE_HEADER,
  unsupportedMagicMessage,
  XLP_LONG_HEADER,
} from "./page_header.ts";

/** A synthetic first page of a segment, as `initdb` of that major would write it. */
function longPage(magic: number): Uint8Array {
  const page = new Uint8Array(SIZE_OF_LONG_PAGE_HEADER);
  const v = new DataView(page.buffer);
  v.setUint16(0, magic, true);
  v.setUint16(2, XLP_LONG_HEADER, true);
  v.setUint32(4, 1, true);
  v.setBigUint64(8, 0x1000000n, true);
  v.setBigUint64(24, 7714455572339687036n, true);
  v.setUint32(32, 16 * 1024 * 1024, true);
  v.setUint32(36, 8192, true);
  return page;
}

Deno.test("page magic of every supported major, 16 included on synthetic pages", () => {
  // 15, 17 and 18 are also read from real servers' WAL; no Debian release ships 16.
  const expected: [number, number][] = [[15, 0xD110], [16, 0xD113], [17, 0xD116], [18, 0xD118]];
  for (const [major, magic] of expected) {
    assert.equal(PAGE_MAGIC_BY_MAJOR[major], magic);
    const h = readLongPageHeader(longPage(magic));
    assert.ok(h, `major ${major}`);
    assert.equal(majorVersionOfMagic(h.magic), major);
    assert.equal(h.segmentSize, 16 * 1024 * 1024);
  }
});

Deno.test("an unknown page magic has no major and a message naming it", () => {
  for (const magic of [0xD10D, 0xD111, 0xD11A, 0x0000]) {
    assert.equal(majorVersionOfMagic(magic), undefined);
  }
  assert.equal(
    unsupportedMagicMessage(0xD11A),
    "WAL page magic 0xD11A is not from a PostgreSQL major walrelay supports (15–18)",
  );
  assert.match(unsupportedMagicMessage(0x12), /0x0012/);
});
