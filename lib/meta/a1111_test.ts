import assert from "node:assert/strict";
import fc from "fast-check";
import { hasShared, sharedPath } from "../../tests/shared.ts";
import {
  formatInfotext,
  type Infotext,
  parseHashList,
  parseInfotext,
  quoteValue,
  summarizeInfotext,
  unquoteValue,
} from "./a1111.ts";
import { readMetadata } from "./read.ts";

/** The reading without the raw text, for comparing with what was formatted. */
function reading(text: string): Infotext {
  const { raw: _raw, ...info } = parseInfotext(text);
  return info;
}

/** A1111's reading of prompt text on its own, for ASCII test data: lines trimmed, leading empties dropped. */
function a1111Lines(text: string): string {
  let out = "";
  for (const line of text.split("\n")) out += (out === "" ? "" : "\n") + line.trim();
  return out;
}

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
  const info = reading(SAMPLE);
  const text = formatInfotext(info);
  assert.deepEqual(reading(text), info);
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

Deno.test("parseInfotext() strips every line and splits the prompts as A1111 1.10 does", () => {
  const info = parseInfotext(
    "\n \n  a fox \r\n\u3000in snow\u0085\n\nNegative prompt:blurry  \n" +
      "Negative prompt: again\n\tlowres \nSteps: 20 , Sampler: Euler a, Empty: , CFG scale: 7 \n ",
  );
  assert.equal(info.prompt, "a fox\nin snow\n");
  assert.equal(info.negativePrompt, "blurry\nagain\nlowres");
  // An empty value raises inside A1111's try block and is skipped; the rest is kept verbatim.
  assert.deepEqual(info.params, { Steps: "20 ", Sampler: "Euler a", "CFG scale": "7" });
  assert.ok(info.raw.startsWith("\n \n  a fox \r\n"));
  // An empty "Negative prompt:" line then text: no leading line break (A1111 joins that way).
  assert.equal(
    parseInfotext("a\nNegative prompt:\nb\nSteps: 1, Seed: 2, Size: 3x4").negativePrompt,
    "b",
  );
  // Python's str.strip() knows U+001C-U+001F and U+0085 but not U+FEFF.
  assert.equal(parseInfotext("\u001fcat\ufeff").prompt, "cat\ufeff");
  // A quoted value may hold "\\" + carriage return (Python's "." matches it, JS's does not);
  // it is not valid JSON, so A1111's unquote keeps the quotes.
  assert.equal(
    parseInfotext('x\nSteps: 1, Note: "a\\\rb, c", Seed: 2').params["Note"],
    '"a\\\rb, c"',
  );
  assert.equal(parseInfotext("x\nSteps: 1, __proto__: p, Seed: 2").params["__proto__"], "p");
});

/** SHA-256 (hex) of JSON `[prompt, negative, params]` as A1111 v1.10.1 reads each file's text. */
const A1111_READING: Record<string, string> = {
  // Computed with the parsing part of A1111 v1.10.1 `parse_generation_parameters` (Python 3.11,
  // `json.dumps(..., ensure_ascii=False, separators=(",", ":"))`) on each file's infotext.
  "a1111/a1111_v1.10.1_sdxl_itxt_unicode.png":
    "6429eebf81d9f553492dd79292fb125b250ea77994124bd438d78b45f1298c64",
  "a1111/a1111_v1.10.1_hires_fix.png":
    "c5c101b7dad4619b954eef35f87f2e98bdfd4fab2e744ef75d3c771bccd432b5",
  "a1111/a1111_v1.10.1_usercomment.jpg":
    "060f070f13c883a8fb2603846af55f14334e42689d30a6d1e0e2410d2faa272f",
  "a1111/a1111_v1.10.1_usercomment.webp":
    "f8fd139e21132e79aa9fadadb5dbf6ecec640899b04de72ed9352404594b3e61",
  "other_tools/sdnext_usercomment.jpg":
    "ef5c12f0728384f8fe1765352b0a3265fd42c61af45c7e71d8e1a411fdab2018",
  "a1111/forge_classic_adetailer.png":
    "6128177db7360a9a825198ba11d91c03baca666c77c5c2b2262d6b242e16e600",
  "a1111/a1111_v1.4.0_regional_prompter_break.png":
    "6ccb14f8669e534db8397d5222e28bef30583f9a79fab18a324555467618b7e9",
  "a1111/a1111_v1.6.0_lora_hashes_img2img.png":
    "0d88a4d5ca95c2e2284dde92f075c44b88bf2fc13bc11b6165d1cf401c691a28",
  "a1111/a1111_2023_controlnet_legacy_keys.png":
    "9112db1f8ff15aacc1d1ef00fef7127c641901280a8308656a58fc7c5f086862",
};

async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

Deno.test({
  name: "readMetadata() reads real A1111 1.10.1, Forge and SD.Next prompts as A1111 does",
  ignore: !hasShared,
  fn: async () => {
    for (const [name, expected] of Object.entries(A1111_READING)) {
      const meta = readMetadata(await Deno.readFile(sharedPath(`fixtures/real/${name}`)));
      const a = meta.a1111;
      assert.ok(a, name);
      const got = JSON.stringify([a.prompt, a.negativePrompt, a.params]);
      assert.equal(await sha256Hex(got), expected, `${name}: ${got.slice(0, 200)}`);
      for (const line of [...a.prompt.split("\n"), ...a.negativePrompt.split("\n")]) {
        assert.equal(line, line.trim(), `${name}: a prompt line keeps its spaces`);
      }
      assert.ok(a.raw.length > a.prompt.length + a.negativePrompt.length, name);
    }
  },
});

Deno.test("quoteValue()/unquoteValue() follow A1111 quote/unquote", () => {
  assert.equal(quoteValue("Euler a"), "Euler a");
  assert.equal(quoteValue("a, b"), '"a, b"');
  assert.equal(quoteValue("k: v"), '"k: v"');
  assert.equal(quoteValue('say "x"'), '"say \\"x\\""');
  assert.equal(quoteValue("テスト"), "テスト");
  assert.equal(quoteValue(""), '""');
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
        assert.deepEqual(reading(text), {
          ...info,
          prompt: a1111Lines(prompt),
          negativePrompt: a1111Lines(negativePrompt),
        });
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
        assert.deepEqual(reading(formatInfotext(info)), {
          ...info,
          prompt: a1111Lines(prompt),
          negativePrompt: a1111Lines(negativePrompt),
        });
      },
    ),
    { numRuns: 500, seed: 7 },
  );
});
