/**
 * The table of VJP rules by op (`domain::opType` for contrib ops), assembled from the op
 * families. Ops that never carry gradients (Shape, comparisons, ArgMax, ConstantOfShape...)
 * are absent on purpose: their outputs are integers, booleans or constants.
 *
 * @module
 */
import { ATTENTION_VJPS } from "./attention_vjp.ts";
import { CONV_VJPS } from "./conv_vjp.ts";
import { ELEMENTWISE_VJPS } from "./elementwise_vjp.ts";
import { MATMUL_VJPS } from "./matmul_vjp.ts";
import { NORMALIZATION_VJPS } from "./normalization_vjp.ts";
import { REDUCE_VJPS } from "./reduce_vjp.ts";
import { RESIZE_VJPS } from "./resize_vjp.ts";
import { SHAPE_VJPS } from "./shape_vjp.ts";
import type { VjpRule } from "./vjp.ts";

/**
 * Every op the autodiff can differentiate.
 *
 * @example
 * ```ts
 * import { VJP_RULES } from "./vjp_rules.ts";
 * console.assert(VJP_RULES.has("Conv") && VJP_RULES.has("com.microsoft::MultiHeadAttention"));
 * ```
 */
export const VJP_RULES: ReadonlyMap<string, VjpRule> = new Map(Object.entries({
  ...ELEMENTWISE_VJPS,
  ...MATMUL_VJPS,
  ...CONV_VJPS,
  ...NORMALIZATION_VJPS,
  ...SHAPE_VJPS,
  ...RESIZE_VJPS,
  ...REDUCE_VJPS,
  ...ATTENTION_VJPS,
}));
