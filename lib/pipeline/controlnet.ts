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
import type { ControlMode, ControlnetJob, ControlUnit } from "../job/controlnet.ts";
import { GenerateJob, Img2ImgJob } from "../job/diffusion.ts";
import type { JobSchema } from "../job/define.ts";
import { assertControlnetFitsUnet, buildControlnet } from "../models/controlnet.ts";
import type { ControlnetConfig } from "../models/controlnet_config.ts";
import { loadControlnet } from "../models/controlnet_loader.ts";
import { vaeFactor } from "../model_io/diffusers_folder.ts";
import { openComponent } from "../model_io/engine.ts";
import { type ControlImages, inpaintControlTensor } from "./control_image.ts";
import {
  controlnetHook,
  type ControlnetHookOptions,
  type ControlnetUnit,
} from "./controlnet_hook.ts";
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
    if (model.layout !== "single-file") return dir;
    // The weight file (a single-file entry may list its yaml config too).
    const file = model.files.find((f) => /\.(pth|pt|ckpt|safetensors|bin)$/i.test(f.path)) ??
      model.files[0]!;
    return join(dir, file.path);
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

/** A1111's names of the control modes (the extension's `ControlMode` enum values). */
export const CONTROL_MODE_LABELS: Readonly<Record<ControlMode, string>> = {
  balanced: "Balanced",
  prompt: "My prompt is more important",
  control: "ControlNet is more important",
};

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
 * Start: 0.0, Guidance End: 1.0, Control Mode: Balanced"` (the extension's `serialize_unit`
 * field names and order; the preprocessor fields it also writes are left out, as no
 * preprocessor runs).
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
  options: { controlMode?: ControlMode | undefined } = {},
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
      `Control Mode: ${CONTROL_MODE_LABELS[options.controlMode ?? "balanced"]}`,
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

/** A net of a run before it is opened: its spec, scale, window and control image. */
export interface ControlnetRequest {
  /** A Diffusers folder, an original-layout file or an alias. */
  net: string;
  scale: number;
  start: number;
  end: number;
  /** The `controlnet_cond` image at a pixel size, `[1, C, height, width]`. */
  image: (width: number, height: number) => Promise<Float32Array>;
}

/** Options of {@linkcode ControlnetOpener.open}. */
export interface OpenControlnetsOptions {
  /** How the model is named in a message (`the model "sd15"`). */
  modelLabel: string;
  /** A1111's control mode (default "balanced"). */
  controlMode?: ControlMode;
  /** Diffusers `guess_mode` as asked (a pooling first net turns it on anyway). */
  guessMode?: boolean;
}

/** Opened nets and the options their hooks take. */
export interface OpenedControlnets {
  units: ControlnetUnit[];
  /** For {@linkcode controlnetHook} / {@linkcode controlnetTileHooks}. */
  hookOptions: ControlnetHookOptions;
}

/**
 * Opens the ControlNets of runs on a model: resolves each spec once (folder, file or alias),
 * reads its config once, refuses a net made for another base than the model in one line that
 * names both, and registers it as a component `controlnet:<path>` of the model (built through the
 * engine's cache). Used by the ControlNet extension and by ControlNet-tile upscaling.
 */
export class ControlnetOpener {
  readonly #env: RunEnvironment;
  readonly #nets = new Map<string, Promise<NetInfo>>();

  constructor(env: RunEnvironment) {
    this.#env = env;
  }

  #info(spec: string, floatType: "float32" | "float16"): Promise<NetInfo> {
    const key = `${spec}\0${floatType}`;
    let net = this.#nets.get(key);
    if (net === undefined) {
      net = (async () => {
        const path = await resolveControlnet(spec, this.#env);
        const loaded = await loadControlnet(path, { floatType });
        loaded.close();
        return { path, config: loaded.config, json: loaded.json, file: loaded.file };
      })();
      this.#nets.set(key, net);
      net.catch(() => this.#nets.delete(key));
    }
    return net;
  }

  /** Opens (registers) the nets of one run on `sd`; see the class documentation. */
  async open(
    sd: StableDiffusion,
    requests: readonly ControlnetRequest[],
    options: OpenControlnetsOptions,
  ): Promise<OpenedControlnets> {
    const floatType = sd.options.floatType ?? "float32";
    const units: ControlnetUnit[] = [];
    const components: string[] = [];
    for (const request of requests) {
      const net = await this.#info(request.net, floatType);
      assertControlnetFitsUnet(net.config, sd.model.unet.config, {
        controlnetName: `the ControlNet "${request.net}"`,
        modelName: options.modelLabel,
      });
      const component = registerNet(sd, net, floatType);
      components.push(component);
      units.push({
        config: net.config,
        session: () => sd.components.session(component),
        image: request.image,
        scale: request.scale,
        start: request.start,
        end: request.end,
      });
    }
    const first = units[0]?.config;
    const hookOptions: ControlnetHookOptions = {
      // Diffusers: guess_mode = guess_mode or nets[0].config.global_pool_conditions
      guessMode: (options.guessMode ?? false) || (first?.globalPoolConditions ?? false),
      controlMode: options.controlMode ?? "balanced",
      vaeFactor: vaeFactor(sd.model),
      unet: sd.residualUnet(),
      ...(sd.options.lowMemory
        ? {
          onLastStep: async () => {
            for (const name of new Set(components)) await sd.releaseSession(name);
          },
        }
        : {}),
    };
    return { units, hookOptions };
  }
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
  const opener = new ControlnetOpener(env);
  return {
    name: "controlnet",
    prepare: async ({ sd, job, inputs }) => {
      if (job.command !== "controlnet") return { hooks: [] };
      const { units, hookOptions } = await opener.open(
        sd,
        job.controls.map((control, k) => ({
          net: control.net,
          scale: control.scale,
          start: control.start,
          end: control.end,
          image: controlImage(control, k, images, inputs),
        })),
        {
          modelLabel: `the model "${modelName(job.model, sd.model.dir)}"`,
          guessMode: job.guessMode,
          controlMode: job.controlMode,
        },
      );
      return {
        hooks: [controlnetHook(units, hookOptions)],
        infotext: controlnetInfotext(job.controls, { controlMode: job.controlMode }),
      };
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
