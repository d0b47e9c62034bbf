/**
 * Archives for tests, made by the real command-line tools. Not part of the public API.
 *
 * @module
 */

/** A real 1 MiB WAL segment from testdata/wal. */
export const SAMPLE_SEGMENT: URL = new URL(
  "../../testdata/wal/000000010000000000000006",
  import.meta.url,
);

/** Runs `cmd args…` on `input` and returns its standard output. */
export async function pipeThroughTool(
  cmd: string,
  args: string[],
  input: Uint8Array,
): Promise<Uint8Array> {
  const child = new Deno.Command(cmd, { args, stdin: "piped", stdout: "piped", stderr: "piped" })
    .spawn();
  const w = child.stdin.getWriter();
  const [out] = await Promise.all([child.output(), w.write(input).then(() => w.close())]);
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  }
  return out.stdout;
}

/** The command line that compresses to each format as its tool writes it. */
export const TOOLS: Record<string, [string, string[]]> = {
  gzip: ["gzip", ["-c"]],
  lz4: ["lz4", ["-q", "-c"]],
  // As pg_receivewal writes it: linked 64 kB blocks, no checksums.
  lz4_receivewal: ["lz4", ["-q", "-c", "-BD", "-B4", "--no-frame-crc"]],
  zstd: ["zstd", ["-q", "-c"]],
  bzip2: ["bzip2", ["-c"]],
  xz: ["xz", ["-c"]],
};

/** `a` followed by `b`. */
export function cat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** Whether `a` starts with all of `prefix`. */
export function isPrefix(prefix: Uint8Array, a: Uint8Array): boolean {
  return prefix.length <= a.length && prefix.every((v, i) => a[i] === v);
}
