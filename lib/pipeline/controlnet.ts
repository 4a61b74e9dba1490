/**
 * ControlNet runs (`denoise controlnet`): a {@linkcode RunExtension} that, for a controlnet Job,
 * registers each net as a component of the model (built through the engine's cache, so a second
 * run starts fast), checks it fits the model, and adds the loop hook of controlnet_hook.ts; and a
 * task table whose rows run a controlnet Job through the existing tasks (txt2img, hires fix,
 * img2img, inpaint) seen as a generate or img2img Job, as Diffusers'
 * StableDiffusionControlNetPipeline, ...Img2ImgPipeline and ...InpaintPipeline share their
 * parents' steps.
 *
 * Sizes follow Diffusers: without `width`/`height` the output takes the first control image's
 * size rounded down to the VAE grid; every control image is resized to the output size (PIL
 * Lanczos); an img2img or inpaint run keeps its input image's size.
 *
 * @module
 */
import { existsSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { ModelNotFoundError, UsageError } from "../errors.ts";
import { lockedModel, modelDir, modelStatus } from "../hub/mod.ts";
import type { ControlnetJob, ControlUnit } from "../job/controlnet.ts";
import { GenerateJob, Img2ImgJob } from "../job/diffusion.ts";
import type { JobSchema } from "../job/define.ts";
import { assertControlnetFitsUnet, buildControlnet } from "../models/controlnet.ts";
import type { ControlnetConfig } from "../models/controlnet_config.ts";
import { loadControlnet } from "../models/controlnet_loader.ts";
import { vaeFactor } from "../model_io/diffusers_folder.ts";
import { openComponent } from "../model_io/engine.ts";
import { type ControlImages, inpaintControlTensor } from "./control_image.ts";
import { controlnetHook, type ControlnetUnit } from "./controlnet_hook.ts";
import { modelName, type RunEnvironment } from "./resolve.ts";
import type { RunExtension } from "./run.ts";
import type { StableDiffusion } from "./stable_diffusion.ts";
import { DIFFUSION_TASKS, type DiffusionTask, type TaskInputs } from "./tasks.ts";

/**
 * Resolves a net spec to a path: an existing folder or file as it is, else an alias of
 * models.lock.json (its folder, or its one file for a single-file entry), which must be pulled.
 * Throws ModelNotFoundError (exit 4) otherwise.
 */
export async function resolveControlnet(spec: string, env: RunEnvironment): Promise<string> {
  if (existsSync(spec)) return resolve(spec);
  if (env.lock?.models[spec] !== undefined) {
    const model = lockedModel(env.lock, spec);
    const status = await modelStatus(env.cacheDir, spec, model);
    if (status.some((s) => !s.present)) {
      throw new ModelNotFoundError(`ControlNet "${spec}" is not downloaded`, {
        hint: `run "denoise models pull ${spec}"`,
      });
    }
    const dir = modelDir(env.cacheDir, spec, model);
    return model.layout === "single-file" ? join(dir, model.files[0]!.path) : dir;
  }
  throw new ModelNotFoundError(
    `Cannot find the ControlNet "${spec}": no such file or folder, and no alias of that name`,
    {
      hint: "pass a Diffusers ControlNet folder, a control_*.pth / .safetensors file, or an " +
        "alias from denoise models list",
    },
  );
}

/** A net as the run knows it before its graph is built. */
interface NetInfo {
  path: string;
  config: ControlnetConfig;
  json: Record<string, unknown>;
  file: string;
}

/** The name A1111's infotext gives a net: its file or folder name without extension. */
function netLabel(spec: string): string {
  const base = basename(spec.replace(/[\\/]+$/, ""));
  // A1111's infotext values cannot hold "," or ":".
  return base.replace(/\.(safetensors|pth|pt|ckpt|bin)$/i, "").replace(/[,:]/g, "_") || spec;
}

/** A number as Python's `repr` writes a float (A1111 writes weights so). */
function pyFloat(x: number): string {
  return Number.isInteger(x) ? x.toFixed(1) : String(x);
}

/**
 * A1111's ControlNet extension infotext fields for the controls of a Job:
 * `ControlNet k: "Module: none, Model: name, Weight: 1.0, Resize Mode: Just Resize, Guidance
 * Start: 0.0, Guidance End: 1.0"` (the extension's `serialize_unit` field names and order).
 *
 * @example
 * ```ts
 * import { controlnetInfotext } from "./controlnet.ts";
 * const fields = controlnetInfotext([{ net: "nets/control_v11p_sd15_canny.pth", module: "none",
 *   scale: 0.5, start: 0, end: 1 }]);
 * console.assert(fields["ControlNet 0"]!.startsWith("Module: none, Model: control_v11p_sd15_canny, Weight: 0.5"));
 * ```
 */
export function controlnetInfotext(
  controls: readonly Pick<ControlUnit, "net" | "module" | "scale" | "start" | "end">[],
): Record<string, string> {
  const out: Record<string, string> = {};
  controls.forEach((c, k) => {
    const module = c.module === "inpaint" ? "inpaint_global_harmonious" : "none";
    out[`ControlNet ${k}`] = [
      `Module: ${module}`,
      `Model: ${netLabel(c.net)}`,
      `Weight: ${pyFloat(c.scale)}`,
      "Resize Mode: Just Resize",
      `Guidance Start: ${pyFloat(c.start)}`,
      `Guidance End: ${pyFloat(c.end)}`,
    ].join(", ");
  });
  return out;
}

/** The fields of `job` that `schema` has, with `command` replaced, parsed by the schema. */
function asJob<T>(schema: JobSchema, job: ControlnetJob, fields: Record<string, unknown>): T {
  const picked: Record<string, unknown> = {};
  for (const key of Object.keys(schema.shape)) {
    const value = (job as Record<string, unknown>)[key];
    if (value !== undefined) picked[key] = value;
  }
  return schema.parse({ ...picked, ...fields }) as T;
}

/**
 * A controlnet Job seen as the Job the underlying task makes: img2img (inpainting with a mask)
 * when there is an input image, else generate (hires fix included). `size` fills a missing
 * width/height (the first control image's size).
 */
export function controlnetTaskJob(
  job: ControlnetJob,
  inputs: TaskInputs,
  size?: { width: number; height: number },
): GenerateJob | Img2ImgJob {
  if (inputs.image !== undefined) {
    if (job.hiresScale !== undefined) {
      throw new UsageError("--hires-scale cannot be combined with an input image (--image)", {
        hint: "drop one of them",
      });
    }
    return asJob<Img2ImgJob>(Img2ImgJob, job, {
      command: "img2img",
      strength: job.strength ?? 0.75,
    });
  }
  if (job.mask !== undefined) {
    throw new UsageError("--mask needs an input image (--image)", {
      hint: "pass the image to inpaint with --image",
    });
  }
  return asJob<GenerateJob>(GenerateJob, job, {
    command: "generate",
    ...(job.width === undefined && size ? { width: size.width } : {}),
    ...(job.height === undefined && size ? { height: size.height } : {}),
  });
}

/**
 * The task table for controlnet Jobs: each row of `base` (default {@linkcode DIFFUSION_TASKS})
 * that can make the Job's generate/img2img view runs it; the base rows follow, so the table also
 * makes plain Jobs. The first control image sets the size of a txt2img run without one.
 */
export function controlnetTasks(
  images: ControlImages,
  base: readonly DiffusionTask[] = DIFFUSION_TASKS,
): DiffusionTask[] {
  const rows: DiffusionTask[] = base.map((task) => ({
    name: `controlnet ${task.name}`,
    matches: (job, inputs) =>
      job.command === "controlnet" && task.matches(controlnetTaskJob(job, inputs), inputs),
    run: async (request) => {
      const job = request.job as ControlnetJob;
      let size: { width: number; height: number } | undefined;
      const first = job.controls[0]!;
      if (request.inputs.image === undefined && first.sha256 !== undefined) {
        // Diffusers: the output defaults to the control image's size, rounded down to the grid.
        const image = await images.decoded(first.sha256);
        const f = vaeFactor(request.sd.model);
        size = { width: image.width - image.width % f, height: image.height - image.height % f };
      }
      const view = controlnetTaskJob(job, request.inputs, size);
      const out = await task.run({ ...request, job: view });
      const strength = view.command === "img2img" ? { strength: view.strength } : {};
      return { ...out, recorded: { ...out.recorded, ...strength } };
    },
  }));
  return [...rows, ...base];
}

/** Options of {@linkcode controlnetExtension}. */
export interface ControlnetExtensionOptions {
  /** Where models live and how aliases resolve. */
  env: RunEnvironment;
  /** The control images the Jobs name by SHA-256 (see control_image.ts). */
  images: ControlImages;
}

/**
 * The ControlNet {@linkcode RunExtension}: for a controlnet Job, registers its nets as components
 * `controlnet:<path>` of the model (once per model; refusing a net made for another base in one
 * line that names both), and returns the loop hook and the infotext fields. Other Jobs get
 * nothing.
 */
export function controlnetExtension(options: ControlnetExtensionOptions): RunExtension {
  const { env, images } = options;
  const nets = new Map<string, Promise<NetInfo>>();
  const info = (spec: string, floatType: "float32" | "float16"): Promise<NetInfo> => {
    const key = `${spec}\0${floatType}`;
    let net = nets.get(key);
    if (net === undefined) {
      net = (async () => {
        const path = await resolveControlnet(spec, env);
        const loaded = await loadControlnet(path, { floatType });
        loaded.close();
        return { path, config: loaded.config, json: loaded.json, file: loaded.file };
      })();
      nets.set(key, net);
      net.catch(() => nets.delete(key));
    }
    return net;
  };
  return {
    name: "controlnet",
    prepare: async ({ sd, job, inputs }) => {
      if (job.command !== "controlnet") return { hooks: [] };
      const floatType = sd.options.floatType ?? "float32";
      const units: ControlnetUnit[] = [];
      const components: string[] = [];
      for (const [k, control] of job.controls.entries()) {
        const net = await info(control.net, floatType);
        assertControlnetFitsUnet(net.config, sd.model.unet.config, {
          controlnetName: `the ControlNet "${control.net}"`,
          modelName: `the model "${modelName(job.model, sd.model.dir)}"`,
        });
        const component = registerNet(sd, net, floatType);
        components.push(component);
        units.push({
          config: net.config,
          session: () => sd.components.session(component),
          image: controlImage(control, k, images, inputs),
          scale: control.scale,
          start: control.start,
          end: control.end,
        });
      }
      const first = units[0]!.config;
      const hook = controlnetHook(units, {
        // Diffusers: guess_mode = guess_mode or nets[0].config.global_pool_conditions
        guessMode: job.guessMode || first.globalPoolConditions,
        vaeFactor: vaeFactor(sd.model),
        unet: sd.residualUnet(),
        ...(sd.options.lowMemory
          ? {
            onLastStep: async () => {
              for (const name of new Set(components)) await sd.releaseSession(name);
            },
          }
          : {}),
      });
      return { hooks: [hook], infotext: controlnetInfotext(job.controls) };
    },
  };
}

/** The component name a net is registered under. */
function componentName(path: string): string {
  return `controlnet:${path}`;
}

/** Registers (once per model) a net's component, built through the engine's cache. */
function registerNet(
  sd: StableDiffusion,
  net: NetInfo,
  floatType: "float32" | "float16",
): string {
  const name = componentName(net.path);
  if (sd.components.has(name)) return name;
  void sd.components.register(name, () =>
    openComponent({
      kind: "controlnet",
      weights: net.file,
      config: net.json,
      floatType,
      // Original-layout and .pth files are renamed and read by the loader, not as safetensors.
      sources: async () => {
        const loaded = await loadControlnet(net.path, { floatType });
        return { sources: loaded.weights, close: () => loaded.close() };
      },
      build: (sources) => buildControlnet(net.config, sources, { floatType }),
    }, sd.engineOptions));
  return name;
}

/** The `controlnet_cond` image of control `k` at a size. */
function controlImage(
  control: ControlUnit,
  k: number,
  images: ControlImages,
  inputs: TaskInputs,
): (width: number, height: number) => Promise<Float32Array> {
  if (control.module === "inpaint") {
    const image = inputs.image;
    const mask = inputs.mask;
    if (image === undefined || mask === undefined) {
      throw new UsageError(
        `Control ${k + 1} uses the inpaint module, which needs an input image and a mask`,
        { hint: "pass --image and --mask" },
      );
    }
    const made = new Map<string, Float32Array>();
    return (width, height) => {
      const key = `${width}x${height}`;
      let t = made.get(key);
      if (t === undefined) {
        t = inpaintControlTensor(image, mask, width, height);
        made.set(key, t);
      }
      return Promise.resolve(t);
    };
  }
  const sha = control.sha256;
  if (sha === undefined || !images.has(sha)) {
    throw new RangeError(
      `Cannot run control ${k + 1}: its image was not read (readControlImages records it)`,
    );
  }
  return (width, height) => images.tensor(sha, width, height);
}

/** Everything `runJobs` needs to make controlnet Jobs: the task table and the extension. */
export function controlnetRunOptions(
  env: RunEnvironment,
  images: ControlImages,
): { tasks: DiffusionTask[]; extensions: RunExtension[] } {
  return {
    tasks: controlnetTasks(images),
    extensions: [controlnetExtension({ env, images })],
  };
}
