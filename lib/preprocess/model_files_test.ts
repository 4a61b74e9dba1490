import assert from "node:assert/strict";
import { join } from "node:path";
import { parseLock } from "../hub/lock.ts";
import { resolvePreprocessorModel } from "./model_files.ts";
import { getPreprocessor } from "./registry.ts";

const LOCK = parseLock(JSON.stringify({
  version: 1,
  models: {
    dwpose: {
      description: "t",
      family: "preprocessor",
      source: { hub: "huggingface", repo: "a/b", revision: "0".repeat(40) },
      layout: "onnx",
      files: [
        { path: "yolox_l.onnx", size: 3, sha256: null },
        { path: "dw-ll_ucoco_384.onnx", size: 3, sha256: null },
      ],
      verified: false,
    },
    lineart: {
      description: "t",
      family: "preprocessor",
      source: { hub: "huggingface", repo: "a/b", revision: "1".repeat(40) },
      layout: "single-file",
      files: [
        { path: "sk_model.pth", size: null, sha256: null },
        { path: "sk_model2.pth", size: null, sha256: null },
      ],
      verified: false,
    },
  },
}));

Deno.test("resolvePreprocessorModel() finds files in a folder, a single .onnx file, or a pulled alias", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const openpose = getPreprocessor("openpose");
    const depth = getPreprocessor("depth");
    await Deno.mkdir(join(dir, "dw", "onnx"), { recursive: true });
    await Deno.writeTextFile(join(dir, "dw", "yolox_l.onnx"), "abc");
    await Deno.writeTextFile(join(dir, "dw", "onnx", "dw-ll_ucoco_384.onnx"), "abc");
    assert.deepEqual(await resolvePreprocessorModel(openpose, join(dir, "dw")), {
      detector: join(dir, "dw", "yolox_l.onnx"),
      pose: join(dir, "dw", "onnx", "dw-ll_ucoco_384.onnx"),
    });
    await Deno.writeTextFile(join(dir, "d.onnx"), "x");
    assert.deepEqual(await resolvePreprocessorModel(depth, join(dir, "d.onnx")), {
      depth: join(dir, "d.onnx"),
    });
    // A pulled alias: <cache>/models/<alias>/<revision>/<path>.
    const cache = join(dir, "cache");
    const pulled = join(cache, "models", "dwpose", "0".repeat(40));
    await assert.rejects(
      () => resolvePreprocessorModel(openpose, undefined, { lock: LOCK, cacheDir: cache }),
      { name: "ModelNotFoundError", message: /"dwpose" is not downloaded/ },
    );
    await Deno.mkdir(pulled, { recursive: true });
    await Deno.writeTextFile(join(pulled, "yolox_l.onnx"), "abc");
    await Deno.writeTextFile(join(pulled, "dw-ll_ucoco_384.onnx"), "abc");
    assert.deepEqual(
      await resolvePreprocessorModel(openpose, undefined, { lock: LOCK, cacheDir: cache }),
      {
        detector: join(pulled, "yolox_l.onnx"),
        pose: join(pulled, "dw-ll_ucoco_384.onnx"),
      },
    );
    // Errors: a folder without the files, one file for a two-file model, an unknown name, a
    // model-free kind.
    await assert.rejects(() => resolvePreprocessorModel(depth, join(dir, "dw")), {
      name: "ModelNotFoundError",
      message: /holds no model.onnx or depth_anything_v2_vits.onnx/,
    });
    await assert.rejects(() => resolvePreprocessorModel(openpose, join(dir, "d.onnx")), {
      name: "UsageError",
      message: /needs 2 files \(yolox_l.onnx and dw-ll_ucoco_384.onnx\)/,
    });
    await assert.rejects(
      () => resolvePreprocessorModel(depth, "nope", { lock: LOCK, cacheDir: cache }),
      {
        name: "ModelNotFoundError",
        message: /neither a file, a folder nor a known alias/,
      },
    );
    await assert.rejects(() => resolvePreprocessorModel(getPreprocessor("canny"), "x"), {
      name: "UsageError",
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("resolvePreprocessorModel() takes any weight file for built networks and only the roles the options need", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const softedge = getPreprocessor("softedge");
    const lineart = getPreprocessor("lineart");
    // A single weight file (any name) fills the roles; a folder is searched by published names.
    await Deno.writeTextFile(join(dir, "my_hed.pt"), "x");
    assert.deepEqual(await resolvePreprocessorModel(softedge, join(dir, "my_hed.pt")), {
      softedge: join(dir, "my_hed.pt"),
    });
    assert.deepEqual(
      await resolvePreprocessorModel(lineart, join(dir, "my_hed.pt"), {
        options: { coarse: true },
      }),
      { coarse: join(dir, "my_hed.pt") },
    );
    await Deno.mkdir(join(dir, "annotators"));
    await Deno.writeTextFile(join(dir, "annotators", "table5_pidinet.pth"), "x");
    await Deno.writeTextFile(join(dir, "annotators", "sk_model.pth"), "x");
    assert.deepEqual(await resolvePreprocessorModel(softedge, join(dir, "annotators")), {
      softedge: join(dir, "annotators", "table5_pidinet.pth"),
    });
    assert.deepEqual(
      await resolvePreprocessorModel(lineart, join(dir, "annotators"), {
        options: { coarse: false },
      }),
      { fine: join(dir, "annotators", "sk_model.pth") },
    );
    await assert.rejects(
      () =>
        resolvePreprocessorModel(lineart, join(dir, "annotators"), { options: { coarse: true } }),
      {
        name: "ModelNotFoundError",
        message: /holds no sk_model2.pth \(the lineart coarse model\)/,
      },
    );
    // An alias whose other file is not pulled serves the option whose file is.
    const cache = join(dir, "cache");
    const pulled = join(cache, "models", "lineart", "1".repeat(40));
    await Deno.mkdir(pulled, { recursive: true });
    await Deno.writeTextFile(join(pulled, "sk_model2.pth"), "x");
    assert.deepEqual(
      await resolvePreprocessorModel(lineart, undefined, {
        lock: LOCK,
        cacheDir: cache,
        options: { coarse: true },
      }),
      { coarse: join(pulled, "sk_model2.pth") },
    );
    await assert.rejects(
      () =>
        resolvePreprocessorModel(lineart, undefined, {
          lock: LOCK,
          cacheDir: cache,
          options: { coarse: false },
        }),
      { name: "ModelNotFoundError", message: /"lineart" is not downloaded/ },
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
