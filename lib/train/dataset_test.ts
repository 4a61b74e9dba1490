import assert from "node:assert/strict";
import { join } from "node:path";
import { datasetFingerprint, scanDataset, tagFrequency } from "./dataset.ts";

async function tree(files: Record<string, string>): Promise<string> {
  const root = await Deno.makeTempDir({ prefix: "denoise-dataset-" });
  for (const [path, text] of Object.entries(files)) {
    await Deno.mkdir(join(root, path, ".."), { recursive: true });
    await Deno.writeTextFile(join(root, path), text);
  }
  return root;
}

Deno.test("scanDataset() reads kohya folders: captions, N_name repeats and class tokens, orphans", async () => {
  const root = await tree({
    "top.png": "",
    "top.txt": "\n  a top image, red \nsecond line\n",
    "10_sks dog/a.jpg": "",
    "10_sks dog/a.txt": "sks dog, sitting",
    "10_sks dog/b.webp": "",
    "10_sks dog/orphan.caption": "no image",
    "notes/x.png": "",
  });
  try {
    const ds = await scanDataset(root);
    assert.equal(ds.layout, "kohya");
    assert.deepEqual(
      ds.items.map((i) => [i.image.slice(root.length + 1), i.caption, i.repeats, i.subset]),
      [
        ["top.png", "a top image, red", 1, root.split("/").pop()],
        ["10_sks dog/a.jpg", "sks dog, sitting", 10, "10_sks dog"],
        ["10_sks dog/b.webp", "sks dog", 10, "10_sks dog"],
      ],
    );
    assert.ok(ds.warnings.some((w) => /orphan\.caption: caption file with no image/.test(w)));
    assert.ok(ds.warnings.some((w) => /notes\/: not an N_name repeat folder/.test(w)));
    assert.deepEqual(tagFrequency(ds.items)["10_sks dog"], { "sks dog": 2, sitting: 1 });
    assert.equal((await datasetFingerprint(ds)).length, 16);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("scanDataset() reads an imagefolder metadata.jsonl and rejects empty or bad datasets", async () => {
  const root = await tree({
    "train/metadata.jsonl": '{"file_name": "b.png", "text": "second"}\n' +
      '{"file_name": "a.png", "text": " first "}\n{"file_name": "gone.png", "text": "x"}\n',
    "train/a.png": "",
    "train/b.png": "",
    "train/extra.png": "",
  });
  const empty = await Deno.makeTempDir();
  const bad = await tree({ "metadata.jsonl": "{not json" });
  try {
    const ds = await scanDataset(root);
    assert.equal(ds.layout, "imagefolder");
    assert.deepEqual(ds.items.map((i) => i.caption), ["first", "second"]);
    assert.ok(ds.warnings.some((w) => /"gone\.png" does not exist/.test(w)));
    assert.ok(ds.warnings.some((w) => /extra\.png: not in metadata\.jsonl/.test(w)));
    await assert.rejects(() => scanDataset(empty), /has no images/);
    await assert.rejects(() => scanDataset(join(empty, "missing")), /does not exist/);
    await assert.rejects(() => scanDataset(bad), /line 1 is not valid JSON/);
  } finally {
    for (const d of [root, empty, bad]) await Deno.remove(d, { recursive: true });
  }
});
