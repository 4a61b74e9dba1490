import assert from "node:assert/strict";
import { hasShared, sharedPath } from "../../tests/shared.ts";
import { type ImageMetadata, readMetadata } from "./read.ts";
import { encodeChunk, encodeTextChunk } from "./png.ts";
import { makePng, textData } from "./testing.ts";
import { concatBytes, encodeLatin1 } from "./text.ts";
import { deflateZlib } from "./zlib.ts";

const REAL = "fixtures/real";

function readFixture(name: string): ImageMetadata {
  return readMetadata(Deno.readFileSync(sharedPath(`${REAL}/${name}`)));
}

/** Per fixture: checks on what a real reader finds in it. */
const EXPECTED: Record<string, (m: ImageMetadata) => void> = {
  "a1111/a1111_v1.10.1_sdxl_itxt_unicode.png": (m) => {
    assert.equal(m.texts[0]?.type, "iTXt");
    assert.equal(m.a1111?.prompt.split("\n")[1], "1girl, solo, hatsune miku, テスト");
    assert.equal(m.a1111?.summary.seed, 3782896554);
    assert.equal(m.a1111?.summary.scheduleType, "Karras");
  },
  "a1111/a1111_v1.10.1_hires_fix.png": (m) => {
    assert.deepEqual(m.a1111?.summary.hires, {
      upscale: 1.5,
      steps: 10,
      upscaler: "R-ESRGAN 4x+ Anime6B",
    });
    assert.equal(m.width, 1536);
  },
  "a1111/a1111_v1.10.1_usercomment.jpg": (m) => {
    assert.equal(m.a1111?.source, "exif.userComment");
    assert.equal(m.a1111?.summary.seed, 3623174757);
    assert.match(m.a1111?.prompt ?? "", /テスト/);
  },
  "a1111/a1111_v1.10.1_usercomment.webp": (m) => {
    assert.equal(m.format, "webp");
    assert.equal(m.a1111?.summary.seed, 1028435836);
    assert.equal(m.width, 1024);
  },
  "a1111/forge_classic_adetailer.png": (m) => {
    assert.equal(m.a1111?.params["ADetailer model"], "face_yolov8n.pt");
    assert.equal(m.a1111?.summary.version, "classic");
  },
  "a1111/a1111_v1.6.0_lora_hashes_img2img.png": (m) => {
    assert.deepEqual(m.a1111?.summary.loraHashes, { lcm_lora_sd15: "aaebf6360f7d" });
    assert.equal(m.a1111?.summary.denoisingStrength, 0.75);
  },
  "a1111/a1111_2023_controlnet_legacy_keys.png": (m) => {
    assert.deepEqual(m.a1111?.summary.controlNet, [{
      Enabled: "True",
      Module: "none",
      Model: "control_sd15_scribble(fef5e48e)",
    }]);
  },
  "a1111/a1111_v1.4.0_regional_prompter_break.png": (m) => {
    assert.equal(m.a1111?.params["RP Ratios"], "1,1");
    assert.equal(m.a1111?.params["RP threshold"], "0.7,0.45,0.5,0.75,0.45");
    assert.deepEqual(m.chunks?.map((c) => c.type).slice(1, 4), ["sRGB", "gAMA", "pHYs"]);
  },
  "a1111/a1111_card_no_preview_img2img.png": (m) => {
    assert.equal(m.a1111?.params["ENSD"], "31337");
    assert.equal(m.a1111?.negativePrompt, "3d");
  },
  "a1111/a1111_2022_dynamic_prompts_template_line.png": (m) => {
    assert.equal(m.a1111?.prompt, "A diamond ring set on a platinum band.");
    assert.deepEqual(m.a1111?.extraLines, [
      "Template:A diamond ring set on a {{rose|yellow|white} gold|platinum} band.",
    ]);
    assert.equal(m.a1111?.summary.seed, 2602647927);
  },
  "a1111/a1111_2022_grid_usercomment.jpg": (m) => {
    assert.equal(m.a1111?.prompt, "[dog:cat:0.0]");
    assert.equal(m.a1111?.summary.seed, 2607827426);
    assert.deepEqual(m.warnings, []);
  },
  "a1111/a1111_2022_params_without_prompt.png": (m) => {
    assert.equal(m.a1111?.prompt, "");
    assert.equal(m.a1111?.summary.seed, 1198143840);
  },
  "a1111/sdparsers_a1111_cropped_1x1.png": (m) => {
    assert.equal(m.a1111?.prompt, "photo of a duck");
    assert.equal(m.a1111?.summary.width, 512);
    assert.equal(m.width, 1);
  },
  "a1111/sdparsers_a1111_cropped_1x1.jpg": (m) => {
    assert.equal(m.a1111?.negativePrompt, "monochrome");
    assert.equal(m.a1111?.summary.model, "realistic_realisticVisionV20_v20");
  },
  "a1111/sdparsers_a1111_stealth_pnginfo.png": (m) => {
    assert.deepEqual(m.texts, []);
    assert.equal(m.a1111, undefined);
    assert.equal(m.width, 64);
  },
  "comfyui/comfyui_hypernetwork_output.png": (m) => {
    const prompt = m.comfyui?.prompt as Record<string, { inputs: Record<string, unknown> }>;
    assert.equal(prompt["3"]?.inputs["seed"], 572636856966402);
    assert.ok(Array.isArray((m.comfyui?.workflow as { nodes: unknown[] }).nodes));
  },
  "comfyui/comfyui_sdxlturbo_samplercustom.png": (m) => assert.deepEqual(m.generators, ["comfyui"]),
  "comfyui/comfyui_lora_multiple_workflow.png": (m) => assert.ok(m.comfyui?.workflow),
  "comfyui/comfyui_flux_depth_lora.png": (m) => {
    const prompt = m.comfyui?.prompt as Record<string, { inputs: Record<string, unknown> }>;
    assert.equal(prompt["3"]?.inputs["seed"], 91050358797301);
  },
  "comfyui/comfyui_img2img_workflow_rgba.png": (m) => assert.equal(m.width, 2478),
  "comfyui/comfyui_flux_kontext_exif.webp": (m) => {
    assert.match(m.exif?.make ?? "", /^workflow:\{/);
    assert.equal((m.comfyui?.workflow as { last_node_id: number }).last_node_id, 171);
    assert.equal(typeof m.comfyui?.prompt, "object");
  },
  "comfyui/sdparsers_comfyui_img2img_cropped_1x1.png": (m) => {
    const prompt = m.comfyui?.prompt as Record<string, { inputs: Record<string, unknown> }>;
    assert.equal(prompt["3"]?.inputs["sampler_name"], "sample_dpmpp_2m");
  },
  "other_tools/invokeai_v6.10_metadata_graph.png": (m) => {
    assert.equal((m.json["invokeai_metadata"] as { seed: number }).seed, 3951921344);
    assert.ok(m.json["invokeai_graph"]);
    assert.deepEqual(m.generators, ["invokeai"]);
  },
  "other_tools/sdparsers_invokeai_v2.3_dream_sdmetadata_1x1.png": (m) => {
    assert.match(m.texts.find((t) => t.keyword === "Dream")?.text ?? "", / -S 2980747362 /);
    assert.equal((m.json["sd-metadata"] as { app_version: string }).app_version, "2.3.0");
  },
  "other_tools/sdparsers_invokeai_v3_metadata_1x1.png": (m) => {
    assert.equal((m.json["invokeai_metadata"] as { seed: number }).seed, 3293022630);
  },
  "other_tools/sdparsers_novelai_1x1.png": (m) => {
    assert.equal((m.json["Comment"] as { seed: number }).seed, 2253955223);
    assert.equal(
      m.texts.find((t) => t.keyword === "Description")?.text,
      "masterpiece, best quality,  cat, space, icon",
    );
    assert.deepEqual(m.generators, ["novelai"]);
  },
  "other_tools/sdparsers_fooocus_1x1.png": (m) => {
    assert.equal((m.json["parameters"] as { seed: string }).seed, "6952411511246973023");
    assert.equal(m.a1111, undefined);
    assert.deepEqual(m.generators, ["fooocus"]);
  },
  "other_tools/sdnext_usercomment.jpg": (m) => {
    assert.equal(m.a1111?.params["App"], "SD.Next");
    assert.equal(m.a1111?.summary.seed, 899700607);
  },
  "other_tools/kohya_gen_img_diffusers.png": (m) => {
    assert.deepEqual(m.texts.map((t) => [t.keyword, t.text]).slice(1, 5), [
      ["seed", "478163327"],
      ["sampler", "ddim"],
      ["steps", "30"],
      ["scale", "12.0"],
    ]);
    assert.deepEqual(m.generators, ["kohya"]);
    assert.deepEqual(m.warnings, []);
  },
  "other_tools/jpeg_named_png_le_tiff_be_usercomment.png": (m) => {
    assert.equal(m.format, "jpeg");
    assert.equal(
      m.exif?.userComment,
      "Positive prompt:\nTahiti, embedding:OverallDetailXL\nNegative prompt:\n\n" +
        "Model: fenrisxl_V164fp16\nSeed: 1119983674069295",
    );
    assert.equal(m.width, 800);
  },
};

Deno.test({
  name: "readMetadata() finds every text in the real-world fixtures",
  ignore: !hasShared,
  fn() {
    const seen: string[] = [];
    for (const dir of ["a1111", "comfyui", "other_tools"]) {
      for (const entry of Deno.readDirSync(sharedPath(`${REAL}/${dir}`))) {
        const name = `${dir}/${entry.name}`;
        const meta = readFixture(name);
        const check = EXPECTED[name];
        assert.ok(check, `no expectations for fixture ${name}`);
        try {
          check(meta);
        } catch (error) {
          throw new Error(`fixture ${name}: ${(error as Error).message}`, { cause: error });
        }
        seen.push(name);
      }
    }
    assert.equal(seen.length, Object.keys(EXPECTED).length);
  },
});

Deno.test("readMetadata() parses the denoise Job chunk and tolerates ComfyUI NaN", () => {
  const png = makePng([
    ["iTXt", encodeTextChunk("denoise", '{"command":"generate","prompt":"狐"}').subarray(8, -4)],
    ["tEXt", textData("workflow", '{"nodes": [], "extra": {"ds": NaN}}')],
    ["tEXt", textData("prompt", "{not json")],
  ]);
  const m = readMetadata(png);
  assert.deepEqual(m.job, { command: "generate", prompt: "狐" });
  assert.deepEqual(m.comfyui?.workflow, { nodes: [], extra: { ds: null } });
  assert.equal(m.comfyui?.prompt, undefined);
  assert.equal(m.texts[2]?.text, "{not json");
  assert.equal(m.warnings.length, 2);
  assert.match(m.warnings[0]!, /"workflow": 1 bare NaN/);
  assert.match(m.warnings[1]!, /"prompt" looks like JSON but does not parse/);
});

Deno.test("readMetadata() bounds hostile PNGs: zTXt bomb, 100k chunks, bad CRC", () => {
  const bomb = concatBytes([
    encodeLatin1("bomb"),
    Uint8Array.of(0, 0),
    deflateZlib(new Uint8Array(17 << 20)),
  ]);
  const m = readMetadata(makePng([["zTXt", bomb], ["tEXt", textData("ok", "yes")]]));
  assert.deepEqual(m.texts.map((t) => t.keyword), ["ok"]);
  assert.match(m.warnings[0]!, /zTXt chunk "bomb".*more than 16777216 bytes/);

  const one = encodeChunk("tEXt", textData("k", "v"));
  const many = new Uint8Array(one.length * 100_000);
  for (let i = 0; i < 100_000; i++) many.set(one, i * one.length);
  const png = makePng();
  const big = concatBytes([png.subarray(0, png.length - 12), many, png.subarray(png.length - 12)]);
  const meta = readMetadata(big);
  assert.equal(meta.texts.length, 1024);
  assert.equal(meta.chunks?.length, 1024);
  assert.ok(JSON.stringify(meta).length < 200_000);
  assert.ok(meta.warnings.some((w) => /98976 text chunks beyond the first 1024/.test(w)));

  const bad = makePng([["tEXt", textData("k", "v")]]);
  bad[41] = bad[41]! ^ 1;
  assert.throws(() => readMetadata(bad), /fails its CRC check/);
  const lenient = readMetadata(bad, { lenient: true });
  assert.equal(lenient.width, 4);
  assert.deepEqual(lenient.texts, []);
  assert.equal(lenient.warnings.length, 1);
});

Deno.test("readMetadata() rejects bytes that are not an image", () => {
  assert.throws(
    () => readMetadata(new TextEncoder().encode('{"a":1}')),
    /not a PNG, JPEG, WebP or GIF/,
  );
  assert.throws(() => readMetadata(new Uint8Array()), SyntaxError);
  const gif = new TextEncoder().encode("GIF89a\x02\x00\x03\x00");
  assert.deepEqual([readMetadata(gif).width, readMetadata(gif).height], [2, 3]);
});
