/**
 * Jobs: the plain JSON objects that command-line flags become, that image metadata stores and
 * that `--job FILE|-|image` reads back. One zod schema per subcommand, all in this folder; each
 * Job names its `command` and the schema `version`, so a stored Job replays exactly.
 *
 * @example
 * ```ts
 * import { GenerateJob, resolveJob } from "./mod.ts";
 * const job = resolveJob(GenerateJob, "generate", { flags: { prompt: "a fox", seed: 7 } });
 * console.assert(job.steps === 20 && job.seed === 7);
 * ```
 *
 * @module
 */
export * from "./define.ts";
export * from "./load.ts";
export * from "./infotext.ts";
export * from "./diffusion.ts";
export * from "./meta.ts";
export * from "./convert.ts";
export * from "./tools.ts";
export * from "./controlnet.ts";
export * from "./upscale.ts";
export * from "./preprocess.ts";
export * from "./caption.ts";
export * from "./lora_train.ts";
export * from "./animate.ts";
