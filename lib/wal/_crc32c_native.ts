/**
 * CRC-32C by the CPU's own instructions (SSE 4.2 `crc32`, ARMv8 `crc32c*`) through the Node-API
 * addon of `@node-rs/crc32`: some 14 GB/s here against 1.8–2.3 for the table loops, which is most
 * of the cost of validating a segment or checksumming a base backup's files.
 *
 * An addon is native code, so it is loaded only when the process was granted `--allow-ffi`, and
 * only where the package's loader can run without asking for more: it reads the environment
 * variable `NAPI_RS_FORCE_WASI`, and on Linux tells glibc from musl by reading `/usr/bin/ldd` (or
 * by a report that needs `--allow-sys`). walrelay never makes Deno prompt: anything not granted,
 * or a failed download, leaves the table loops in charge. Not part of the public API.
 *
 * @module
 */

/** The addon's `crc32c(data, crc)`: continues the finished CRC `crc` over `data`. */
export type NativeCrc32c = (data: Uint8Array, crc: number) => number;

/** The package, pinned: a different build is a different piece of native code. */
const SPECIFIER = "npm:@node-rs/crc32@1.10.6";

/** Platforms the package ships a native build for (`Deno.build.os`/`arch`). */
const BUILDS = new Set([
  "linux/x86_64",
  "linux/aarch64",
  "darwin/x86_64",
  "darwin/aarch64",
  "windows/x86_64",
  "windows/aarch64",
]);

/** Whether `desc` is granted already; `prompt` counts as no, so nothing is ever asked. */
function granted(desc: Deno.PermissionDescriptor): boolean {
  try {
    return Deno.permissions.querySync(desc).state === "granted";
  } catch {
    return false;
  }
}

/**
 * Loads the addon's `crc32c`, or returns undefined where it cannot or may not be loaded. The
 * function is checked against the standard check value before it is trusted.
 */
export async function loadNativeCrc32c(): Promise<NativeCrc32c | undefined> {
  if (!BUILDS.has(`${Deno.build.os}/${Deno.build.arch}`)) return undefined;
  if (!granted({ name: "ffi" })) return undefined;
  if (!granted({ name: "env", variable: "NAPI_RS_FORCE_WASI" })) return undefined;
  if (
    Deno.build.os === "linux" && !granted({ name: "read", path: "/usr/bin/ldd" }) &&
    !granted({ name: "sys", kind: "cpus" })
  ) return undefined;
  try {
    const mod = await import(SPECIFIER);
    const f = (mod.crc32c ?? mod.default?.crc32c) as NativeCrc32c | undefined;
    if (typeof f !== "function") return undefined;
    if (f(new TextEncoder().encode("123456789"), 0) !== 0xE3069283) return undefined;
    return f;
  } catch {
    return undefined;
  }
}
