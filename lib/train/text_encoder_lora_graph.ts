/**
 * The text-encoder LoRA training graph: the CLIP text encoder of lib/models/clip_text.ts with
 * LoRA branches as graph inputs (lora_hook.ts), and the backward pass from upstream gradients.
 * The UNet's training graph ends at the text conditioning (its `encoder_hidden_states.grad`),
 * so the text encoder's gradients follow by the chain rule from
 * `loss' = sum_k <output_k, upstream_k>`, whose gradient with respect to the LoRA is exactly
 * the UNet loss's.
 *
 * Inputs: `input_ids` `[B, S]` int64, `upstream.<output>` (same shape as each output), and the
 * LoRA matrices. Outputs: the chosen encoder outputs (so one run with zero upstream gradients
 * gives the conditioning), `loss` and `<kohya name>.grad` per matrix.
 *
 * @module
 */
import { GraphBuilder, type OnnxModel, type TensorSource, type Value } from "../onnx/graph.ts";
import { buildClipTextModel, type ClipTextConfig } from "../models/clip_text.ts";
import { gradientGraph } from "./autodiff/gradient_graph.ts";
import { mergeGraphs } from "./autodiff/merge_graphs.ts";
import { clipTextSegments } from "./autodiff/recompute.ts";
import { clipLoraLinearHook, type LoraInput } from "./lora_hook.ts";
import type { LoraParameterPair } from "./lora_parameters.ts";

/** Options of {@linkcode buildTextEncoderLoraTrainingGraph}. */
export interface TextEncoderLoraGraphOptions {
  /** The modules of this encoder to train (names start with `prefix`). */
  modules: readonly LoraParameterPair[];
  /** kohya alpha (scale alpha / rank). */
  alpha: number;
  /** kohya prefix of this encoder: `lora_te_`, `lora_te1_` or `lora_te2_`. */
  prefix: string;
  /** Prompts per batch. */
  batch: number;
  /** Tokens per prompt (77). */
  sequenceLength: number;
  /**
   * The encoder outputs the UNet reads: `last_hidden_state` (SD 1.x/2.x), `hidden_states.<i>`
   * (SDXL's penultimate layer), `text_embeds` (SDXL's pooled projection).
   */
  outputs: readonly string[];
  /** Recompute each encoder layer's activations in the backward pass (default false). */
  recompute?: boolean;
}

/** The built graph and its LoRA inputs. */
export interface TextEncoderLoraGraph {
  model: OnnxModel;
  /** Every LoRA graph input, sorted by name. */
  parameters: LoraInput[];
  /** Each output's shape. */
  outputShapes: Record<string, number[]>;
}

/**
 * Builds the text encoder's training graph.
 *
 * @example
 * ```ts ignore
 * const graph = buildTextEncoderLoraTrainingGraph(config, tensorSources(file), {
 *   modules, alpha: 4, prefix: "lora_te_", batch: 1, sequenceLength: 77,
 *   outputs: ["last_hidden_state"],
 * });
 * ```
 */
export function buildTextEncoderLoraTrainingGraph(
  config: ClipTextConfig,
  weights: ReadonlyMap<string, TensorSource>,
  options: TextEncoderLoraGraphOptions,
): TextEncoderLoraGraph {
  const { batch: b, sequenceLength: s } = options;
  const lora = clipLoraLinearHook(options.modules, options.alpha, options.prefix);
  const encoder = buildClipTextModel(config, weights, { linearHook: lora.hook });
  lora.finish(`text encoder (${options.prefix}*)`);
  const known = new Set(encoder.proto.graph.output.map((o) => o.name));
  const outputShapes: Record<string, number[]> = {};
  for (const name of options.outputs) {
    if (!known.has(name)) {
      throw new RangeError(`The text encoder has no output "${name}"; use one of ${[...known]}`);
    }
    outputShapes[name] = name === "text_embeds"
      ? [b, config.projectionDim]
      : name === "pooler_output"
      ? [b, config.hiddenSize]
      : [b, s, config.hiddenSize];
  }
  // loss' = sum_k sum(output_k * upstream_k)
  const g = new GraphBuilder("upstream_loss");
  const terms: Value[] = options.outputs.map((name) =>
    g.scope(`upstream.${name}`, () => {
      const up = g.input(`upstream.${name}`, "float32", outputShapes[name]!);
      return g.op("ReduceSum", [g.op("Mul", [{ name, type: "float32" }, up])], { keepdims: 0 });
    })
  );
  const total = terms.length === 1 ? terms[0]! : g.op("Sum", terms);
  g.output(total, "upstream_loss", "float32", []);
  const withLoss = mergeGraphs(encoder, g.build(), { keepBaseOutputs: [...options.outputs] });
  const inputShapes: Record<string, number[]> = { input_ids: [b, s] };
  for (const name of options.outputs) inputShapes[`upstream.${name}`] = outputShapes[name]!;
  const model = gradientGraph(withLoss, {
    loss: "upstream_loss",
    wrt: lora.inputs.map((i) => i.name),
    inputShapes,
    keepOutputs: [...options.outputs],
    ...(options.recompute ? { recompute: clipTextSegments } : {}),
  });
  const parameters = [...lora.inputs].sort((x, y) => (x.name < y.name ? -1 : 1));
  return { model, parameters, outputShapes };
}
