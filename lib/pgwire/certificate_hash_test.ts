import assert from "node:assert/strict";
import { certificateHash, signatureDigest } from "./certificate_hash.ts";
import { firstCertificateDer } from "./tls_bridge.ts";

async function selfSigned(dir: string, args: string[]): Promise<Uint8Array> {
  const out = await new Deno.Command("openssl", {
    args: [
      "req",
      "-x509",
      "-nodes",
      "-days",
      "1",
      "-subj",
      "/CN=t",
      "-keyout",
      `${dir}/k`,
      "-out",
      `${dir}/c`,
      ...args,
    ],
    stdout: "null",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  return firstCertificateDer(await Deno.readTextFile(`${dir}/c`));
}

Deno.test("certificate hash: the signature's digest over the DER, as openssl computes it", async () => {
  const dir = await Deno.makeTempDir();
  try {
    for (
      const [args, digest] of [
        [["-newkey", "rsa:2048", "-sha256"], "SHA-256"],
        [["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384", "-sha384"], "SHA-384"],
      ] as const
    ) {
      const der = await selfSigned(dir, [...args]);
      assert.equal(signatureDigest(der), digest);
      await Deno.writeFile(`${dir}/der`, der);
      const openssl = await new Deno.Command("openssl", {
        args: ["dgst", "-" + digest.replace("-", "").toLowerCase(), "-hex", `${dir}/der`],
        stdout: "piped",
      }).output();
      const expected = new TextDecoder().decode(openssl.stdout).trim().split(" ").at(-1);
      assert.equal((await certificateHash(der))?.toHex(), expected);
    }
    // Ed25519 has no digest in RFC 5929: no binding rather than a wrong one.
    const ed = await selfSigned(dir, ["-newkey", "ed25519"]);
    assert.equal(await certificateHash(ed), undefined);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
