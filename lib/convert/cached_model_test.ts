import assert from "node:assert/strict";
import { join } from "node:path";
import { hasShared, sharedPath } from "../../tests/shared.ts";
import { convertedModelDir } from "./cached_model.ts";

Deno.test({
  name: "convertedModelDir() keys by content: same header, other weights, another folder",
  ignore: !hasShared,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "denoise-cached-" });
    try {
      const a = join(dir, "a.safetensors");
      const b = join(dir, "b.safetensors");
      await Deno.copyFile(sharedPath("golden/models/tiny_sd/ldm/tiny_sd_ldm_fp16.safetensors"), a);
      // b: the same header (names, shapes, offsets), one weight byte changed.
      const bytes = await Deno.readFile(a);
      bytes[bytes.length - 3] = bytes[bytes.length - 3]! ^ 0x01;
      await Deno.writeFile(b, bytes);
      const cacheDir = join(dir, "cache");
      const tokenizerDir = sharedPath("data/clip");
      const [da, db] = await Promise.all([
        convertedModelDir(a, { cacheDir, tokenizerDir }),
        convertedModelDir(b, { cacheDir, tokenizerDir }),
      ]);
      assert.notEqual(da, db, "different weights, different converted folders");
      assert.equal(await convertedModelDir(a, { cacheDir, tokenizerDir }), da, "reused");
      const leftovers = [...Deno.readDirSync(join(cacheDir, "converted"))].map((e) => e.name)
        .filter((n) => n.endsWith(".lock") || n.includes(".partial-"));
      assert.deepEqual(leftovers, [], "no locks or partial folders left");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
