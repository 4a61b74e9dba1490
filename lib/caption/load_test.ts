import assert from "node:assert/strict";
import { join } from "node:path";
import { ModelNotFoundError, UsageError } from "../errors.ts";
import { parseLock } from "../hub/lock.ts";
import { captionFamily, resolveCaptionModel } from "./load.ts";

async function folder(files: Record<string, unknown>): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "caption-load-" });
  for (const [name, value] of Object.entries(files)) {
    await Deno.writeTextFile(join(dir, name), JSON.stringify(value));
  }
  return dir;
}

Deno.test("captionFamily() reads model_type and refuses other architectures in one line", async () => {
  const cases: Array<[Record<string, unknown>, string | RegExp]> = [
    [
      { "config.json": { model_type: "blip", architectures: ["BlipForConditionalGeneration"] } },
      "blip",
    ],
    [{ "config.json": { model_type: "florence2" } }, "florence2"],
    [{ "config.json": { model_type: "llava" } }, "llava"],
    [
      { "config.json": { model_type: "blip", architectures: ["BlipForQuestionAnswering"] } },
      /is a BlipForQuestionAnswering model, not a captioning model/,
    ],
    [{ "config.json": { model_type: "bert", architectures: ["BertModel"] } }, /a BertModel model/],
    [
      { "model_index.json": { _class_name: "StableDiffusionPipeline" } },
      /a Diffusers pipeline folder/,
    ],
    [{}, /Cannot find ".*config.json"/],
  ];
  for (const [files, expected] of cases) {
    const dir = await folder(files);
    try {
      if (typeof expected === "string") {
        assert.equal(await captionFamily(dir), expected);
      } else {
        const error = await captionFamily(dir).then(() => undefined, (e) => e);
        assert.ok(error instanceof ModelNotFoundError, String(error));
        assert.match(error.message, expected);
        assert.ok(!error.message.includes("\n"));
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
});

Deno.test("resolveCaptionModel() takes folders and pulled aliases, refuses files and unknowns", async () => {
  const dir = await folder({ "config.json": { model_type: "blip" } });
  try {
    assert.equal(await resolveCaptionModel(dir, { cacheDir: dir }), dir);
    await assert.rejects(
      () => resolveCaptionModel(join(dir, "config.json"), { cacheDir: dir }),
      UsageError,
    );
    await assert.rejects(() => resolveCaptionModel(undefined, { cacheDir: dir }), UsageError);
    const lock = parseLock(
      await Deno.readTextFile(new URL("../../models.lock.json", import.meta.url)),
    );
    assert.equal(lock.models["blip-base"]?.family, "blip");
    await assert.rejects(
      () => resolveCaptionModel("blip-base", { cacheDir: dir, lock }),
      /Model "blip-base" is not downloaded/,
    );
    await assert.rejects(
      () => resolveCaptionModel("no-such-model", { cacheDir: dir, lock }),
      ModelNotFoundError,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
