import assert from "node:assert/strict";
import { join } from "node:path";
import { listImageInputs, sidecarPath } from "./image_inputs.ts";

Deno.test("listImageInputs() walks folders for images, sorted, hidden entries skipped", async () => {
  const dir = await Deno.makeTempDir({ prefix: "caption-inputs-" });
  try {
    for (
      const f of [
        "b.png",
        "a.JPG",
        "z/c.webp",
        "z/y/d.gif",
        ".hidden.png",
        ".git/e.png",
        "notes.txt",
        "A.tiff",
      ]
    ) {
      await Deno.mkdir(join(dir, f, ".."), { recursive: true });
      await Deno.writeFile(join(dir, f), new Uint8Array([1]));
    }
    const { images, single } = await listImageInputs([dir]);
    assert.equal(single, false);
    assert.deepEqual(images.map((i) => i.path!.slice(dir.length + 1)), [
      "A.tiff",
      "a.JPG",
      "b.png",
      "z/c.webp",
      "z/y/d.gif",
    ]);
    // Files are taken as named (any extension), stdin once, a missing path kept for later.
    const mixed = await listImageInputs([join(dir, "notes.txt"), "-", "missing.png"]);
    assert.deepEqual(mixed.images.map((i) => i.label), [
      join(dir, "notes.txt"),
      "stdin",
      "missing.png",
    ]);
    assert.equal(mixed.images[1]!.path, undefined);
    assert.equal((await listImageInputs([join(dir, "b.png")])).single, true);
    assert.equal((await listImageInputs([])).single, true);
    assert.equal((await listImageInputs(["-"])).images[0]!.label, "stdin");
    await assert.rejects(() => listImageInputs(["-", "-"]), /named twice/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("sidecarPath() replaces the extension with .txt (kohya)", () => {
  assert.equal(sidecarPath("a/b.png"), "a/b.txt");
  assert.equal(sidecarPath("a/b.c.jpeg"), "a/b.c.txt");
  assert.equal(sidecarPath("a/noext"), "a/noext.txt");
});
