/**
 * The LoRA branch a training graph adds to a linear layer, through the builders'
 * {@linkcode LinearHook}: `y = x W^T + b + scale * (x down^T) up^T` (PEFT's `lora_B(lora_A(x)) *
 * scaling`, kohya's `lora_up(lora_down(x)) * multiplier * alpha / rank`), with `down` and `up`
 * as float32 graph inputs named after the kohya keys. Layers without a module are left alone.
 *
 * @module
 */
import type { Value } from "../onnx/graph.ts";
import type { LinearHook } from "../models/layers.ts";
import { type LoraParameterPair, unetLoraModuleName } from "./lora_parameters.ts";

/** One LoRA branch that was added: its inputs and their shapes. */
export interface LoraInput {
  /** Graph input name. */
  name: string;
  shape: [number, number];
}

/** A hook plus the record of what it matched. */
export interface LoraHook {
  hook: LinearHook;
  /** The graph inputs added so far (down then up of each matched module). */
  inputs: LoraInput[];
  /** Throws listing the modules no linear layer matched. */
  finish(what: string): void;
}

/**
 * A {@linkcode LinearHook} that adds a LoRA branch to each linear layer whose kohya name is
 * among `pairs`, scaled by `alpha / rank` (rank of that module, as kohya and A1111 do).
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
  const byModule = new Map(pairs.map((p) => [p.module, p]));
  const matched = new Set<string>();
  const inputs: LoraInput[] = [];
  const hook: LinearHook = (c, name, x, y, inFeatures, outFeatures): Value => {
    const pair = byModule.get(unetLoraModuleName(name));
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
    const scale = alpha / rank;
    const g = c.g;
    const down = g.input(pair.down, "float32", [rank, inFeatures]);
    const up = g.input(pair.up, "float32", [outFeatures, rank]);
    inputs.push({ name: pair.down, shape: [rank, inFeatures] }, {
      name: pair.up,
      shape: [outFeatures, rank],
    });
    return g.scope(`${name}.lora`, () => {
      // [N, in] -> [N, rank] -> [N, out]
      const h = g.op("Gemm", [x, c.fromF32(down)], { transB: 1 });
      let delta = g.op("Gemm", [h, c.fromF32(up)], { transB: 1 });
      if (scale !== 1) delta = g.op("Mul", [delta, c.scalar(scale)]);
      return g.op("Add", [y, delta]);
    });
  };
  return {
    hook,
    inputs,
    finish(what) {
      const unmatched = pairs.filter((p) => !matched.has(p.module)).map((p) => p.module);
      if (unmatched.length > 0) {
        throw new RangeError(
          `LoRA modules match no linear layer of the ${what}: ${unmatched.slice(0, 5).join(", ")}` +
            (unmatched.length > 5 ? ` and ${unmatched.length - 5} more` : "") +
            `; name them lora_unet_<Diffusers module path with "." -> "_">`,
        );
      }
    },
  };
}
