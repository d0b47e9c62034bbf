/**
 * Numeric IP address parsing for pg_hba.conf matching. Not part of the public API.
 *
 * Only plain forms are accepted: IPv4 as four decimal octets (no `127.1`, no octal `010.0.0.1`,
 * which the C library would read differently from what most people mean), IPv6 in RFC 4291 text
 * form with `::` and an optional dotted IPv4 tail; a `%zone` suffix is ignored.
 *
 * @module
 */

/** Parses an IPv4 (4 bytes) or IPv6 (16 bytes) address, or returns undefined. */
export function parseIp(text: string): Uint8Array | undefined {
  return text.includes(":") ? parseIpv6(text) : parseIpv4(text);
}

function parseIpv4(text: string): Uint8Array | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i]!;
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p) || Number(p) > 255) return undefined;
    out[i] = Number(p);
  }
  return out;
}

function parseIpv6(text: string): Uint8Array | undefined {
  const zone = text.indexOf("%");
  const addr = zone >= 0 ? text.slice(0, zone) : text;
  if (zone >= 0 && zone === text.length - 1) return undefined;
  const halves = addr.split("::");
  if (halves.length > 2) return undefined;
  const groups = (s: string): number[] | undefined => {
    if (s === "") return [];
    const out: number[] = [];
    const parts = s.split(":");
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i]!;
      if (i === parts.length - 1 && p.includes(".")) {
        const v4 = parseIpv4(p);
        if (!v4) return undefined;
        out.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
      } else if (/^[0-9A-Fa-f]{1,4}$/.test(p)) {
        out.push(parseInt(p, 16));
      } else {
        return undefined;
      }
    }
    return out;
  };
  const head = groups(halves[0]!);
  const tail = halves.length === 2 ? groups(halves[1]!) : [];
  if (!head || !tail) return undefined;
  // A dotted IPv4 part may only end the address.
  if (halves.length === 2 && halves[0]!.includes(".")) return undefined;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return undefined;
  const all = [...head, ...new Array<number>(missing).fill(0), ...tail];
  const out = new Uint8Array(16);
  all.forEach((g, i) => {
    out[i * 2] = g >> 8;
    out[i * 2 + 1] = g & 0xff;
  });
  return out;
}

/** A netmask of `bits` leading ones for an address of `length` bytes. */
export function cidrMask(bits: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) {
    const take = Math.max(0, Math.min(8, bits - i * 8));
    out[i] = take === 0 ? 0 : (0xff << (8 - take)) & 0xff;
  }
  return out;
}

/** Whether `client` lies in `network`/`mask` (same family required, as PostgreSQL 15 does). */
export function inNetwork(client: Uint8Array, network: Uint8Array, mask: Uint8Array): boolean {
  if (client.length !== network.length || mask.length !== network.length) return false;
  for (let i = 0; i < client.length; i++) {
    if ((client[i]! & mask[i]!) !== (network[i]! & mask[i]!)) return false;
  }
  return true;
}
