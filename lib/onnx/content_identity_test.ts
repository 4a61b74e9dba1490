import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { fileIdentity } from "./cache.ts";
import { contentIdentity, HASH_INDEX_FILE, hashFile, noteHardLinks } from "./content_identity.ts";

function bytesOf(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

/** Lets a just-written file's stamp age past the racy window (Deno reports ctime in seconds). */
const settle = () => new Promise((resolve) => setTimeout(resolve, 2100));

/** Runs contentIdentity in a fresh process (nothing remembered in memory) and says if it hashed. */
async function identityInFreshProcess(file: string, indexDir: string) {
  const url = new URL("./content_identity.ts", import.meta.url).href;
  const code = `import { contentIdentity } from ${JSON.stringify(url)};
let hashed = false;
const id = await contentIdentity(${JSON.stringify(file)}, {
  indexDir: ${JSON.stringify(indexDir)}, onHash: () => { hashed = true; } });
console.log(JSON.stringify({ ...id, hashed }));`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--quiet", code],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  return JSON.parse(new TextDecoder().decode(out.stdout)) as {
    sha256: string;
    size: number;
    hashed: boolean;
  };
}

Deno.test("contentIdentity() changes when a file is replaced by one of the same size and mtime (cp -p)", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "denoise-hash-" });
  try {
    const file = join(dir, "unet.safetensors");
    const a = bytesOf(4096, 1);
    const b = bytesOf(4096, 2);
    Deno.writeFileSync(file, a);
    const mtime = new Date("2024-01-02T03:04:05Z");
    Deno.utimeSync(file, mtime, mtime);
    await settle();
    let hashes = 0;
    const onHash = () => hashes++;
    const before = await contentIdentity(file, { indexDir: dir, onHash });
    const cheapBefore = await fileIdentity(file);
    assert.deepEqual(before, { sha256: sha256(a), size: 4096 });
    assert.deepEqual(await contentIdentity(file, { indexDir: dir, onHash }), before);
    assert.equal(hashes, 1, "a settled file is hashed once");

    // In place, as `cp -p b.safetensors unet.safetensors` does: same inode, size and mtime; the
    // ctime moves.
    Deno.writeFileSync(file, b);
    Deno.utimeSync(file, mtime, mtime);
    assert.deepEqual(await fileIdentity(file), cheapBefore, "the old key could not see it");
    const inPlace = await contentIdentity(file, { indexDir: dir, onHash });
    assert.deepEqual(inPlace, { sha256: sha256(b), size: 4096 });
    assert.equal(hashes, 2);
    // Rewritten again at once, maybe within the same clock tick (same ctime): the last hash
    // was racy, so it is not trusted.
    Deno.writeFileSync(file, a);
    Deno.utimeSync(file, mtime, mtime);
    assert.deepEqual(await contentIdentity(file, { indexDir: dir }), before);
    Deno.writeFileSync(file, b);
    Deno.utimeSync(file, mtime, mtime);
    assert.deepEqual(await contentIdentity(file, { indexDir: dir }), inPlace);

    // Renamed into place (a new inode), again with the same size and mtime.
    const other = join(dir, "download.part");
    Deno.writeFileSync(other, a);
    Deno.utimeSync(other, mtime, mtime);
    Deno.renameSync(other, file);
    assert.deepEqual(await contentIdentity(file, { indexDir: dir }), before);
    // The same in a fresh process, which only has the index to go by.
    Deno.writeFileSync(file, b);
    Deno.utimeSync(file, mtime, mtime);
    const fresh = await identityInFreshProcess(file, dir);
    assert.deepEqual(fresh, { sha256: sha256(b), size: 4096, hashed: true });
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("contentIdentity() hashes a file once: the index answers later processes", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "denoise-hash-" });
  try {
    const file = join(dir, "w.bin");
    const data = bytesOf(100_000, 3);
    Deno.writeFileSync(file, data);
    await settle();
    const first = await identityInFreshProcess(file, dir);
    assert.deepEqual(first, { sha256: sha256(data), size: data.length, hashed: true });
    const second = await identityInFreshProcess(file, dir);
    assert.deepEqual(second, { ...first, hashed: false });
    // touch: hashed again, same identity (the key holds the content only).
    const later = new Date(Date.now() - 60_000);
    Deno.utimeSync(file, later, later);
    await settle();
    assert.deepEqual(await identityInFreshProcess(file, dir), first);
    // A cache entry hard-links the file (its ctime changes); noteHardLinks keeps the hash.
    let hashes = 0;
    await contentIdentity(file, { indexDir: dir, onHash: () => hashes++ });
    Deno.linkSync(file, join(dir, "linked.bin"));
    await noteHardLinks([join(dir, "linked.bin")]);
    assert.deepEqual(await identityInFreshProcess(file, dir), { ...first, hashed: false });
    assert.equal(hashes, 0, "known from the index");
    // A damaged index costs a hash, nothing else (once the link's ctime change has settled).
    await settle();
    Deno.writeTextFileSync(join(dir, HASH_INDEX_FILE), '{"version":1,"files":{"x":');
    assert.deepEqual(await identityInFreshProcess(file, dir), first);
    assert.deepEqual(await identityInFreshProcess(file, dir), { ...first, hashed: false });
    const leftovers = [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) =>
      n.includes(".tmp-")
    );
    assert.deepEqual(leftovers, []);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("hashFile() streams: equals a one-shot SHA-256 across chunk boundaries", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "denoise-hash-" });
  try {
    for (const length of [0, 1, (8 << 20) - 1, 8 << 20, (8 << 20) * 2 + 12345]) {
      const data = bytesOf(length, length + 7);
      const file = join(dir, `f${length}`);
      Deno.writeFileSync(file, data);
      assert.equal(await hashFile(file), sha256(data), `length ${length}`);
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
