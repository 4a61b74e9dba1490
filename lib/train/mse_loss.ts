/**
 * Appends `F.mse_loss(prediction, target, reduction="mean")` to a model: a new float32 graph
 * input (the target, of the prediction's shape) and a scalar output.
 *
 * @module
 */
import { GraphBuilder, type OnnxModel } from "../onnx/graph.ts";
import { mergeGraphs } from "./autodiff/merge_graphs.ts";

/** Options of {@linkcode appendMseLoss}. */
export interface MseLossOptions {
  /** Name of the target input (default `target`). */
  target?: string;
  /** Name of the loss output (default `mse_loss`). */
  output?: string;
  /**
   * Name of an optional per-item weight input `[B, 1, ...]`: the loss becomes
   * `mean(w_b * (prediction - target)^2)`, which is Diffusers' min-SNR
   * `(mse(reduction="none").mean(dims) * w).mean()` (equal up to rounding). Default none.
   */
  weights?: string;
}

/**
 * The model with a `target` input and an output holding the mean over all elements of
 * `(prediction - target)^2`; the model's outputs are kept.
 *
 * @example
 * ```ts
 * import { GraphBuilder } from "../onnx/graph.ts";
 * import { appendMseLoss } from "./mse_loss.ts";
 * const g = new GraphBuilder("m");
 * g.output(g.op("Relu", [g.input("x", "float32", [2, 3])]), "y", "float32", [2, 3]);
 * const model = appendMseLoss(g.build(), "y", [2, 3]);
 * console.assert(model.proto.graph.output.map((o) => o.name).join() === "y,mse_loss");
 * ```
 */
export function appendMseLoss(
  model: OnnxModel,
  prediction: string,
  shape: ReadonlyArray<number | string>,
  options: MseLossOptions = {},
): OnnxModel {
  const g = new GraphBuilder("mse_loss", { opset: 17 });
  const target = g.input(options.target ?? "target", "float32", shape);
  const output = options.output ?? "mse_loss";
  const loss = g.scope(output, () => {
    const diff = g.op("Sub", [{ name: prediction, type: "float32" }, target]);
    let squared = g.op("Mul", [diff, diff]);
    if (options.weights !== undefined) {
      const perItem = [shape[0]!, ...shape.slice(1).map(() => 1)];
      squared = g.op("Mul", [squared, g.input(options.weights, "float32", perItem)]);
    }
    return g.op("ReduceMean", [squared], { keepdims: 0 });
  });
  g.output(loss, output, "float32", []);
  return mergeGraphs(model, g.build(), { keepBaseOutputs: true });
}
