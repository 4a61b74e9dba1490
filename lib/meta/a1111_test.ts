import assert from "node:assert/strict";
import fc from "fast-check";
import {
  formatInfotext,
  type Infotext,
  parseHashList,
  parseInfotext,
  quoteValue,
  summarizeInfotext,
  unquoteValue,
} from "./a1111.ts";

const SAMPLE = [
  "masterpiece, (a fox:1.2), <lora:foxy:0.8>",
  "snowy forest",
  "Negative prompt: lowres, (bad hands:1.3)",
  "second negative line",
  "Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 3782896554, " +
  "Size: 832x1216, Model hash: 45a21ea00a, Model: sdxl_base, VAE: sdxl_vae.safetensors, " +
  "Denoising strength: 0.45, Clip skip: 2, Hires upscale: 1.5, Hires steps: 12, " +
  "Hires upscaler: R-ESRGAN 4x+, Hires resize: 1248x1824, " +
  'Lora hashes: "foxy: 0123abcd4567, b: 89ef", TI hashes: "easyneg: c74b4e810b03", ' +
  'ControlNet 0: "Module: canny, Model: control_v11p_sd15_canny [d14c016b], Weight: 1.0", ' +
  'Note: "He said \\"hi\\", then: left\\nand came back", Version: v1.10.1',
  "Template: a {fox|wolf} in snow",
].join("\n");

Deno.test("parseInfotext() reads every field type of an A1111 infotext", () => {
  const info = parseInfotext(SAMPLE);
  assert.equal(info.prompt, "masterpiece, (a fox:1.2), <lora:foxy:0.8>\nsnowy forest");
  assert.equal(info.negativePrompt, "lowres, (bad hands:1.3)\nsecond negative line");
  assert.deepEqual(info.extraLines, ["Template: a {fox|wolf} in snow"]);
  assert.equal(info.params["Lora hashes"], "foxy: 0123abcd4567, b: 89ef");
  assert.equal(info.params["Note"], 'He said "hi", then: left\nand came back');
  assert.equal(info.params["Seed"], "3782896554");
  assert.equal(Object.keys(info.params).length, 20);
  const s = summarizeInfotext(info.params);
  assert.deepEqual(s, {
    steps: 28,
    sampler: "DPM++ 2M",
    scheduleType: "Karras",
    cfgScale: 6.5,
    seed: 3782896554,
    width: 832,
    height: 1216,
    model: "sdxl_base",
    modelHash: "45a21ea00a",
    vae: "sdxl_vae.safetensors",
    denoisingStrength: 0.45,
    clipSkip: 2,
    version: "v1.10.1",
    hires: { upscale: 1.5, steps: 12, upscaler: "R-ESRGAN 4x+", resizeX: 1248, resizeY: 1824 },
    loraHashes: { foxy: "0123abcd4567", b: "89ef" },
    tiHashes: { easyneg: "c74b4e810b03" },
    controlNet: [{
      Module: "canny",
      Model: "control_v11p_sd15_canny [d14c016b]",
      Weight: "1.0",
    }],
  });
});

Deno.test("formatInfotext() writes A1111's layout and parses back to the same object", () => {
  const info = parseInfotext(SAMPLE);
  const text = formatInfotext(info);
  assert.deepEqual(parseInfotext(text), info);
  assert.match(text, /, Note: "He said \\"hi\\", then: left\\nand came back", Version: v1.10.1\n/);
  assert.equal(text.split("\n")[2], "Negative prompt: lowres, (bad hands:1.3)");
});

Deno.test("parseInfotext() handles A1111 edge cases: no prompt, legacy ControlNet, no params", () => {
  const noPrompt = parseInfotext("Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1");
  assert.equal(noPrompt.prompt, "");
  assert.equal(noPrompt.params["Sampler"], "Euler a");
  const legacy = parseInfotext(
    "dog\nSteps: 20, Seed: 9, ControlNet Enabled: True, ControlNet Module: none, " +
      "ControlNet Model: control_sd15_scribble(fef5e48e)",
  );
  assert.deepEqual(summarizeInfotext(legacy.params).controlNet, [{
    Enabled: "True",
    Module: "none",
    Model: "control_sd15_scribble(fef5e48e)",
  }]);
  const plain = parseInfotext("just a prompt: with a colon\nand two lines");
  assert.equal(plain.prompt, "just a prompt: with a colon\nand two lines");
  assert.deepEqual(plain.params, {});
  const short = parseInfotext("a cat\nSteps: 20");
  assert.deepEqual(short.params, { Steps: "20" });
});

Deno.test("quoteValue()/unquoteValue() follow A1111 quote/unquote", () => {
  assert.equal(quoteValue("Euler a"), "Euler a");
  assert.equal(quoteValue("a, b"), '"a, b"');
  assert.equal(quoteValue("k: v"), '"k: v"');
  assert.equal(quoteValue('say "x"'), '"say \\"x\\""');
  assert.equal(quoteValue("テスト"), "テスト");
  assert.equal(unquoteValue('"a, b"'), "a, b");
  assert.equal(unquoteValue('"broken'), '"broken');
  assert.deepEqual(parseHashList("a: 1, b c: 2"), { a: "1", "b c": "2" });
});

const keyArb = fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_ \-/]{0,12}[A-Za-z0-9_\-/]$/);
const valueArb = fc.oneof(
  fc.string({ maxLength: 20 }),
  fc.constantFrom("a, b", 'q"uote', "x: y", "multi\nline", " pad ", "", "テスト", '"'),
);
const promptArb = fc.array(
  fc.stringMatching(/^[a-z ,()<>.:0-9テ]{0,20}$/),
  { maxLength: 3 },
).map((lines) => lines.join("\n"));

Deno.test("parseInfotext(formatInfotext(x)) equals x, or formatInfotext refuses (property)", () => {
  fc.assert(
    fc.property(
      promptArb,
      promptArb,
      fc.dictionary(keyArb, valueArb, { maxKeys: 6 }),
      (prompt, negativePrompt, rest) => {
        const params = { Steps: "20", Sampler: "Euler a", Seed: "1", ...rest };
        const info: Infotext = { prompt, negativePrompt, params: { ...params }, extraLines: [] };
        let text: string;
        try {
          text = formatInfotext(info);
        } catch (error) {
          assert.ok(error instanceof RangeError);
          return;
        }
        assert.deepEqual(parseInfotext(text), info);
      },
    ),
    { numRuns: 500, seed: 42 },
  );
});

Deno.test("formatInfotext() round-trips prompts without param-like lines (property, never refuses)", () => {
  fc.assert(
    fc.property(
      fc.stringMatching(/^[a-z ,()\n]{0,40}$/),
      fc.stringMatching(/^[a-z ,()]{0,40}$/),
      fc.dictionary(keyArb, valueArb, { minKeys: 3, maxKeys: 6 }),
      (prompt, negativePrompt, params) => {
        const info: Infotext = { prompt, negativePrompt, params: { ...params }, extraLines: [] };
        assert.deepEqual(parseInfotext(formatInfotext(info)), info);
      },
    ),
    { numRuns: 500, seed: 7 },
  );
});
