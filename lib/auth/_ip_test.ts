import assert from "node:assert/strict";
import { cidrMask, inNetwork, parseIp } from "./_ip.ts";

const hex = (b: Uint8Array | undefined) => b?.toHex();

Deno.test("ip: IPv4 and IPv6 text forms", () => {
  assert.equal(hex(parseIp("127.0.0.1")), "7f000001");
  assert.equal(hex(parseIp("0.0.0.0")), "00000000");
  assert.equal(hex(parseIp("255.255.255.255")), "ffffffff");
  assert.equal(hex(parseIp("::1")), "00000000000000000000000000000001");
  assert.equal(hex(parseIp("::")), "0".repeat(32));
  assert.equal(hex(parseIp("fe80::1%eth0")), "fe800000000000000000000000000001");
  assert.equal(hex(parseIp("2001:DB8:0:0:1:0:0:1")), "20010db8000000000001000000000001");
  assert.equal(hex(parseIp("::ffff:10.1.2.3")), "00000000000000000000ffff0a010203");
  assert.equal(hex(parseIp("1:2:3:4:5:6:7::")), "00010002000300040005000600070000");
  for (
    const bad of [
      "",
      "127.1",
      "010.0.0.1",
      "256.0.0.1",
      "1.2.3.4.5",
      "1.2.3.",
      "a.b.c.d",
      ":::",
      "1::2::3",
      "1:2:3:4:5:6:7:8:9",
      "1:2:3:4:5:6:7",
      "1:2:3:4:5:6:7:8::",
      "12345::",
      "1.2.3.4::",
      "fe80::1%",
      "localhost",
    ]
  ) {
    assert.equal(parseIp(bad), undefined, bad);
  }
});

Deno.test("ip: masks and membership", () => {
  assert.equal(cidrMask(0, 4).toHex(), "00000000");
  assert.equal(cidrMask(12, 4).toHex(), "fff00000");
  assert.equal(cidrMask(32, 4).toHex(), "ffffffff");
  assert.equal(cidrMask(65, 16).toHex(), "ffffffffffffffff8000000000000000");
  const net = parseIp("10.20.0.0")!;
  assert.ok(inNetwork(parseIp("10.20.255.1")!, net, cidrMask(16, 4)));
  assert.ok(!inNetwork(parseIp("10.21.0.1")!, net, cidrMask(16, 4)));
  // Families never mix, even for IPv4-mapped IPv6 (PostgreSQL's documented rule).
  assert.ok(!inNetwork(parseIp("::ffff:10.20.0.1")!, net, cidrMask(16, 4)));
});
