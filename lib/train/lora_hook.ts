/**
 * The LoRA branch a training graph adds to a linear layer, through the builders' linear hooks:
 * `y = x W^T + b + scale * (x down^T) up^T` (PEFT's `lora_B(lora_A(x)) * scaling`, kohya's
 * `lora_up(lora_down(x)) * multiplier * alpha / rank`), with `down` and `up` as float32 graph
 * inputs named after the kohya keys. Layers without a module are left alone.
 * {@linkcode loraLinearHook} serves the UNet builder (2-D tokens, `Gemm`),
 * {@linkcode clipLoraLinearHook} the CLIP text encoder (`[B, S, C]` tokens, `MatMul`).
 *
 * @module
 */
import type { GraphBuilder, Value } from "../onnx/graph.ts";
import type { LinearHook } from "../models/layers.ts";
import type { ClipLinearHook } from "../models/clip_text.ts";
import { normalisePath } from "../adapters/lora_keys.ts";
import { type LoraParameterPair, unetLoraModuleName } from "./lora_parameters.ts";

/** One LoRA branch that was added: its inputs and their shapes. */
export interface LoraInput {
  /** Graph input name. */
  name: string;
  shape: [number, number];
}

/** A hook plus the record of what it matched. */
export interface LoraHook<H = LinearHook> {
  hook: H;
  /** The graph inputs added so far (down then up of each matched module). */
  inputs: LoraInput[];
  /** Throws listing the modules no linear layer matched. */
  finish(what: string): void;
}

type Branch = (
  g: GraphBuilder,
  x: Value,
  down: Value,
  up: Value,
  scale: number,
) => Value;

function loraHook<H>(
  pairs: readonly LoraParameterPair[],
  alpha: number,
  moduleName: (path: string) => string,
  naming: string,
  make: (
    attach: (
      g: GraphBuilder,
      name: string,
      x: Value,
      y: Value,
      inF: number,
      outF: number,
      branch: Branch,
    ) => Value,
  ) => H,
): LoraHook<H> {
  const byModule = new Map(pairs.map((p) => [p.module, p]));
  const matched = new Set<string>();
  const inputs: LoraInput[] = [];
  const attach = (
    g: GraphBuilder,
    name: string,
    x: Value,
    y: Value,
    inFeatures: number,
    outFeatures: number,
    branch: Branch,
  ): Value => {
    const pair = byModule.get(moduleName(name));
    if (pair === undefined) return y;
    if (matched.has(pair.module)) {
      throw new RangeError(`LoRA module "${pair.module}" matches two linear layers`);
    }
    const rank = pair.downSize / inFeatures;
    if (!Number.isInteger(rank) || rank < 1 || pair.upSize !== outFeatures * rank) {
      throw new RangeError(
        `LoRA module "${pair.module}" does not fit "${name}" (${inFeatures} -> ${outFeatures}): ` +
          `lora_down has ${pair.downSize} values and lora_up ${pair.upSize}, expected ` +
          `[rank, ${inFeatures}] and [${outFeatures}, rank]`,
      );
    }
    matched.add(pair.module);
    const down = g.input(pair.down, "float32", [rank, inFeatures]);
    const up = g.input(pair.up, "float32", [outFeatures, rank]);
    inputs.push({ name: pair.down, shape: [rank, inFeatures] }, {
      name: pair.up,
      shape: [outFeatures, rank],
    });
    return g.scope(`${name}.lora`, () => g.op("Add", [y, branch(g, x, down, up, alpha / rank)]));
  };
  return {
    hook: make(attach),
    inputs,
    finish(what) {
      const unmatched = pairs.filter((p) => !matched.has(p.module)).map((p) => p.module);
      if (unmatched.length > 0) {
        throw new RangeError(
          `LoRA modules match no linear layer of the ${what}: ${unmatched.slice(0, 5).join(", ")}` +
            (unmatched.length > 5 ? ` and ${unmatched.length - 5} more` : "") +
            `; name them ${naming}`,
        );
      }
    },
  };
}

/**
 * A {@linkcode LinearHook} for the UNet builder that adds a LoRA branch to each linear layer
 * whose kohya name is among `pairs`, scaled by `alpha / rank` (rank of that module, as kohya and
 * A1111 do).
 *
 * @example
 * ```ts
 * import { loraLinearHook } from "./lora_hook.ts";
 * const lora = loraLinearHook([{ module: "lora_unet_fc", down: "lora_unet_fc.lora_down.weight",
 *   up: "lora_unet_fc.lora_up.weight", downSize: 8, upSize: 8 }], 4);
 * console.assert(lora.inputs.length === 0); // filled while a graph is built with lora.hook
 * ```
 */
export function loraLinearHook(pairs: readonly LoraParameterPair[], alpha: number): LoraHook {
  return loraHook<LinearHook>(
    pairs,
    alpha,
    unetLoraModuleName,
    'lora_unet_<Diffusers module path with "." -> "_">',
    (attach) => (c, name, x, y, inF, outF) =>
      attach(c.g, name, x, y, inF, outF, (g, x2, down, up, scale) => {
        // [N, in] -> [N, rank] -> [N, out]
        const h = g.op("Gemm", [x2, c.fromF32(down)], { transB: 1 });
        const delta = g.op("Gemm", [h, c.fromF32(up)], { transB: 1 });
        return scale === 1 ? delta : g.op("Mul", [delta, c.scalar(scale)]);
      }),
  );
}

/**
 * A {@linkcode ClipLinearHook} for the CLIP text encoder builder: the same branch on
 * `[B, S, in]` tokens, for modules named `prefix` + the transformers path ("." -> "_"), e.g.
 * `lora_te_text_model_encoder_layers_0_self_attn_q_proj` (kohya; SDXL uses `lora_te1_` and
 * `lora_te2_`). float32 graphs only.
 *
 * @example
 * ```ts
 * import { clipLoraLinearHook } from "./lora_hook.ts";
 * const lora = clipLoraLinearHook([], 1, "lora_te_");
 * lora.finish("text encoder"); // nothing asked, nothing missing
 * ```
 */
export function clipLoraLinearHook(
  pairs: readonly LoraParameterPair[],
  alpha: number,
  prefix: string,
): LoraHook<ClipLinearHook> {
  return loraHook<ClipLinearHook>(
    pairs,
    alpha,
    (path) => prefix + normalisePath(path),
    `${prefix}<transformers module path with "." -> "_">`,
    (attach) => (g, name, x, y, inF, outF) =>
      attach(g, name, x, y, inF, outF, (g2, x2, down, up, scale) => {
        // [B, S, in] -> [B, S, rank] -> [B, S, out]
        const h = g2.op("MatMul", [x2, g2.op("Transpose", [down], { perm: [1, 0] })]);
        const delta = g2.op("MatMul", [h, g2.op("Transpose", [up], { perm: [1, 0] })]);
        return scale === 1 ? delta : g2.op("Mul", [delta, g2.scalar(scale, "float32")]);
      }),
  );
}
