/**
 * Reading a ControlNet annotator weight file as users download it from `lllyasviel/Annotators`
 * (`ControlNetHED.pth`, `table5_pidinet.pth`, `sk_model.pth`, `sk_model2.pth`; `.pth` through the
 * restricted unpickler, or the same tensors as `.safetensors`): which network it holds, told from
 * its key names, and its config, told from their shapes. A top-level `state_dict` is unwrapped
 * (PiDiNet's checkpoint) and DataParallel's `module.` prefix dropped.
 *
 * @module
 */
import { WeightsError } from "../errors.ts";
import type { OnnxModel, TensorSource } from "../onnx/graph.ts";
import { openWeights, type OpenWeightsOptions } from "../weights/weight_source.ts";
import { buildHed, detectHedConfig, type HedConfig } from "./hed.ts";
import {
  buildLineartGenerator,
  detectLineartConfig,
  type LineartConfig,
} from "./lineart_generator.ts";
import { buildPidinet, detectPidinetConfig, type PidinetConfig } from "./pidinet.ts";

/** The config of any annotator network; `architecture` tells them apart. */
export type AnnotatorConfig = HedConfig | PidinetConfig | LineartConfig;

/** An annotator network's name. */
export type AnnotatorArchitecture = AnnotatorConfig["architecture"];

/** Readable names of the architectures, for messages. */
export const ANNOTATOR_NAMES: Readonly<Record<AnnotatorArchitecture, string>> = {
  hed: "ControlNetHED (HED soft edges)",
  pidinet: "PiDiNet (soft edges)",
  lineart: "the line-art Generator (sk_model)",
};

/** An annotator file, read: its config and float32 weights under the checkpoint's names. */
export interface AnnotatorWeights {
  /** The file. */
  path: string;
  /** What the weights describe. */
  config: AnnotatorConfig;
  /** The weights, float32, for {@linkcode buildAnnotator}. */
  weights: Map<string, TensorSource>;
}

/**
 * The stored key -> checkpoint name table: DataParallel's `module.` dropped when every key has it.
 *
 * @example
 * ```ts
 * import { annotatorKeyNames } from "./annotator_load.ts";
 * const names = annotatorKeyNames(["module.init_block.weight", "module.classifier.bias"]);
 * console.assert(names.get("module.init_block.weight") === "init_block.weight");
 * ```
 */
export function annotatorKeyNames(stored: readonly string[]): Map<string, string> {
  const strip = stored.length > 0 && stored.every((k) => k.startsWith("module."));
  return new Map(stored.map((k) => [k, strip ? k.slice("module.".length) : k]));
}

/**
 * The network a state dict holds (by key names) and its config (by shapes). Throws a WeightsError (a TypeError, exit 3)
 * when it is none of ControlNetHED, PiDiNet and the line-art Generator.
 *
 * @example
 * ```ts
 * import { detectAnnotatorConfig } from "./annotator_load.ts";
 * import { annotatorLineartConfig, lineartParameterShapes } from "./lineart_generator.ts";
 * const config = detectAnnotatorConfig(lineartParameterShapes(annotatorLineartConfig()));
 * console.assert(config.architecture === "lineart");
 * ```
 */
export function detectAnnotatorConfig(
  shapes: ReadonlyMap<string, readonly number[]>,
  options: { source?: string } = {},
): AnnotatorConfig {
  if (shapes.has("block1.convs.0.weight")) return detectHedConfig(shapes, options);
  if (shapes.has("init_block.weight")) return detectPidinetConfig(shapes, options);
  if (shapes.has("model0.1.weight")) return detectLineartConfig(shapes, options);
  const where = options.source === undefined ? "the weights" : `"${options.source}"`;
  const some = [...shapes.keys()].slice(0, 3).map((k) => `"${k}"`).join(", ");
  throw new WeightsError(
    `Cannot read ${where} as an annotator network (keys ${some || "none"}, ...): use ` +
      "ControlNetHED.pth (block1.convs.*), table5_pidinet.pth (init_block.*) or sk_model.pth " +
      "(model0.1.*) from lllyasviel/Annotators",
  );
}

/**
 * Opens an annotator file and detects its network. float32 tensors stored contiguously stay in
 * the file and are referenced in place; others (fp16 files) are converted to float32 in memory.
 * The file is closed on return.
 *
 * Throws a WeightsError (a TypeError, exit 3) when the file holds no known annotator network, and the unpickler's
 * `UnsafePickleError` (a RangeError) when a .pth asks for globals a weight file never needs.
 *
 * @example
 * ```ts ignore
 * import { buildAnnotator, loadAnnotatorWeights } from "./annotator_load.ts";
 * const { config, weights } = await loadAnnotatorWeights("ControlNetHED.pth");
 * const model = buildAnnotator(config, weights, { source: "ControlNetHED.pth" });
 * ```
 */
export async function loadAnnotatorWeights(
  path: string,
  options: OpenWeightsOptions = {},
): Promise<AnnotatorWeights> {
  const file = await openWeights(path, options);
  try {
    const names = annotatorKeyNames(file.names());
    const shapes = new Map<string, number[]>();
    for (const [stored, name] of names) shapes.set(name, file.info(stored).shape);
    const config = detectAnnotatorConfig(shapes, { source: path });
    const weights = new Map<string, TensorSource>();
    for (const [stored, name] of names) {
      const info = file.info(stored);
      const shape = info.shape;
      const location = info.dtype === "F32" ? await file.location(stored) : undefined;
      weights.set(
        name,
        location !== undefined
          ? {
            dtype: "float32",
            shape,
            file: location.path,
            offset: location.byteOffset,
            length: location.byteLength,
          }
          : { dtype: "float32", shape, data: await file.readFloat32(stored) },
      );
    }
    return { path, config, weights };
  } finally {
    file.close();
  }
}

/**
 * Reads only the key names and shapes of an annotator file and detects its config (no tensor is
 * read), e.g. to key a build cache before building.
 */
export async function probeAnnotatorConfig(
  path: string,
  options: OpenWeightsOptions = {},
): Promise<AnnotatorConfig> {
  const file = await openWeights(path, options);
  try {
    const shapes = new Map<string, number[]>();
    for (const [stored, name] of annotatorKeyNames(file.names())) {
      shapes.set(name, file.info(stored).shape);
    }
    return detectAnnotatorConfig(shapes, { source: path });
  } finally {
    file.close();
  }
}

/**
 * Builds the graph of any annotator network (see hed.ts, pidinet.ts, lineart_generator.ts).
 *
 * @example
 * ```ts
 * import { buildAnnotator } from "./annotator_load.ts";
 * import { memoryWeights } from "./layers.ts";
 * import { randomWeights } from "./random.ts";
 * import { lineartParameterShapes, type LineartConfig } from "./lineart_generator.ts";
 * const config: LineartConfig = {
 *   architecture: "lineart", inChannels: 3, outChannels: 1, features: 4, downsamples: 1, residualBlocks: 1,
 * };
 * const model = buildAnnotator(config, memoryWeights(randomWeights(lineartParameterShapes(config), 1)));
 * console.assert(model.proto.graph.input[0]!.name === "image");
 * ```
 */
export function buildAnnotator(
  config: AnnotatorConfig,
  weights: ReadonlyMap<string, TensorSource>,
  options: { source?: string } = {},
): OnnxModel {
  switch (config.architecture) {
    case "hed":
      return buildHed(config, weights, options);
    case "pidinet":
      return buildPidinet(config, weights, options);
    case "lineart":
      return buildLineartGenerator(config, weights, options);
  }
}
