import assert from "node:assert/strict";
import { join } from "node:path";
import sharp from "sharp";
import { hasShared, sharedPath } from "../../tests/shared.ts";
import { readModelReference } from "../../tests/fixtures/golden.ts";
import { ControlnetJob } from "../job/controlnet.ts";
import { ControlImages, readControlImages } from "./control_image.ts";
import { controlnetInfotext, controlnetRunOptions, controlnetTaskJob } from "./controlnet.ts";
import { controlnetKeep } from "./controlnet_hook.ts";
import type { RunEnvironment } from "./resolve.ts";
import { type MadeImage, type RunExtension, runJobs } from "./run.ts";

interface Step {
  i: number;
  t: number;
  latent8: number[];
  sum: number;
  abs_sum: number;
}
interface Reference {
  runs: Array<{
    tag: string;
    steps: Step[];
    latents: { shape: number[]; values: number[] };
    image: { png: string };
  }>;
}

const SET = "golden/models/tiny_sd_controlnet";

Deno.test("controlnetKeep() follows Diffusers' controlnet_keep for 5 timesteps", () => {
  // 1 - float(i / 5 < s or (i + 1) / 5 > e)
  const keeps = (s: number, e: number) =>
    [0, 1, 2, 3, 4].map((i) => controlnetKeep(i, 5, s, e)).join("");
  assert.equal(keeps(0, 1), "11111");
  assert.equal(keeps(0, 0.5), "11000");
  assert.equal(keeps(0.2, 0.8), "01110");
  assert.equal(keeps(0.5, 1), "00011");
});

Deno.test("controlnetInfotext() writes A1111's ControlNet unit fields", () => {
  const fields = controlnetInfotext([
    { net: "/m/control_v11p_sd15_canny.pth", module: "none", scale: 1, start: 0, end: 0.5 },
    { net: "cn/", module: "inpaint", scale: 0.7, start: 0.1, end: 1 },
  ]);
  assert.deepEqual(fields, {
    "ControlNet 0": "Module: none, Model: control_v11p_sd15_canny, Weight: 1.0, " +
      "Resize Mode: Just Resize, Guidance Start: 0.0, Guidance End: 0.5, Control Mode: Balanced",
    "ControlNet 1": "Module: inpaint_global_harmonious, Model: cn, Weight: 0.7, " +
      "Resize Mode: Just Resize, Guidance Start: 0.1, Guidance End: 1.0, Control Mode: Balanced",
  });
  const control = controlnetInfotext([{ net: "t", module: "none", scale: 1, start: 0, end: 1 }], {
    controlMode: "control",
  });
  assert.match(control["ControlNet 0"]!, /, Control Mode: ControlNet is more important$/);
});

Deno.test("controlnetTaskJob() sees a controlnet Job as generate or img2img", () => {
  const job = ControlnetJob.parse({
    command: "controlnet",
    prompt: "a cat",
    seed: 3,
    controls: [{ net: "n", image: "c.png" }],
  });
  const txt = controlnetTaskJob(job, {}, { width: 96, height: 64 });
  assert.equal(txt.command, "generate");
  assert.deepEqual([txt.width, txt.height, txt.prompt, txt.seed], [96, 64, "a cat", 3]);
  const image = {
    data: new Float32Array(3 * 64),
    dims: [1, 3, 8, 8] as [number, number, number, number],
  };
  const i2i = controlnetTaskJob({ ...job, strength: 0.4 }, { image });
  assert.equal(i2i.command, "img2img");
  assert.equal(i2i.command === "img2img" && i2i.strength, 0.4);
  assert.throws(() => controlnetTaskJob({ ...job, hiresScale: 2 }, { image }), /--hires-scale/);
  assert.throws(() => controlnetTaskJob({ ...job, mask: "m.png" }, {}), /--mask needs/);
});

/** Captures the latents after every step of every loop (a test-only extension). */
function captureLatents(into: Float32Array[]): RunExtension {
  return {
    name: "capture",
    prepare: () =>
      Promise.resolve({
        hooks: [{
          afterStep: (latents) => {
            into.push(latents.slice());
            return latents;
          },
        }],
      }),
  };
}

async function pixels(bytes: Uint8Array): Promise<Uint8Array> {
  const { data } = await sharp(bytes).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return new Uint8Array(data);
}

function sum(a: Float32Array): [number, number] {
  let s = 0;
  let abs = 0;
  for (const v of a) {
    s += v;
    abs += Math.abs(v);
  }
  return [s, abs];
}

// Golden: ../shared/golden/models/tiny_sd_controlnet/reference.json `runs` (Diffusers 0.27.2
// StableDiffusionControlNetPipeline, PNDM, scale 1.0, 4 steps, guidance 7.5, seed 0, 128x128).
Deno.test({
  name:
    "runJobs() with a ControlNet matches StableDiffusionControlNetPipeline (latents 1e-3, PNG 1/255)",
  ignore: !hasShared,
  fn: async () => {
    const ref = readModelReference<Reference>("tiny_sd_controlnet").runs[0]!;
    const cacheDir = await Deno.makeTempDir({ prefix: "denoise-cn-test-" });
    const env: RunEnvironment = { cacheDir, threads: 1, version: "test" };
    try {
      const images = new ControlImages();
      const job = await readControlImages(
        ControlnetJob.parse({
          command: "controlnet",
          prompt: "a photo of a cat",
          negative: "",
          model: sharedPath("golden/models/tiny_sd/pipeline"),
          steps: 4,
          cfg: 7.5,
          seed: 0,
          controls: [{ net: sharedPath(`${SET}/controlnet`), image: "control_edges.png" }],
        }),
        images,
        async (path) => ({
          bytes: await Deno.readFile(sharedPath(`${SET}/${path}`)),
          label: path ?? "stdin",
        }),
      );
      const steps: Float32Array[] = [];
      const cn = controlnetRunOptions(env, images);
      const made: MadeImage[] = [];
      await runJobs(env, [job], {
        ...cn,
        extensions: [...cn.extensions, captureLatents(steps)],
        format: "png",
        onImage: (image) => {
          made.push(image);
          return Promise.resolve();
        },
      });
      assert.equal(steps.length, ref.steps.length);
      ref.steps.forEach((step, i) => {
        const got = steps[i]!;
        let d = 0;
        step.latent8.forEach((v, j) => d = Math.max(d, Math.abs(got[j]! - v)));
        const [s, abs] = sum(got);
        console.log(
          `step ${i} (t=${step.t}): latent8 maxdiff ${d.toExponential(3)}, sum ${
            (s - step.sum).toExponential(2)
          }, abs_sum ${(abs - step.abs_sum).toExponential(2)}`,
        );
        assert.ok(d <= 1e-3, `step ${i}: latent8 maxdiff ${d}`);
        // Sums of 1024 values printed to 7 digits: 1e-3 relative.
        assert.ok(Math.abs(s - step.sum) <= 1e-3 * Math.max(1, Math.abs(step.sum)));
        assert.ok(Math.abs(abs - step.abs_sum) <= 1e-3 * step.abs_sum);
      });
      const final = steps[steps.length - 1]!;
      let d = 0;
      ref.latents.values.forEach((v, j) => d = Math.max(d, Math.abs(final[j]! - v)));
      console.log(`final latents: maxdiff ${d.toExponential(3)} (tolerance 1e-3)`);
      assert.ok(d <= 1e-3, `final latents maxdiff ${d}`);

      assert.equal(made.length, 1);
      const image = made[0]!;
      assert.deepEqual([image.width, image.height], [128, 128]);
      const a = await pixels(image.bytes);
      const b = await pixels(await Deno.readFile(join(sharedPath(SET), ref.image.png)));
      let px = 0;
      for (let j = 0; j < a.length; j++) px = Math.max(px, Math.abs(a[j]! - b[j]!));
      console.log(`PNG: maxdiff ${px}/255 (tolerance 1)`);
      assert.ok(px <= 1, `PNG maxdiff ${px}`);
      // The Job records the net, the image's hash and the default size (from the control image).
      const recorded = image.job as ControlnetJob;
      assert.equal(recorded.command, "controlnet");
      assert.equal(recorded.width, 128);
      assert.match(recorded.controls[0]!.sha256 ?? "", /^[0-9a-f]{64}$/);
    } finally {
      await Deno.remove(cacheDir, { recursive: true });
    }
  },
});
