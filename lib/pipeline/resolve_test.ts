import assert from "node:assert/strict";
import { modelName } from "./resolve.ts";

Deno.test("modelName() shows the alias, the file stem or the folder name, never the cache", () => {
  assert.equal(modelName("sd15", "/cache/models/sd15/abc"), "sd15");
  assert.equal(modelName("/m/dreamshaper_8.safetensors", "/cache/converted/1f2e"), "dreamshaper_8");
  assert.equal(modelName("./models/my-model/", "/abs/models/my-model"), "my-model");
  assert.equal(modelName(undefined, "/abs/models/x"), "x");
});
