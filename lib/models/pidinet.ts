/**
 * PiDiNet (Su et al., "Pixel Difference Networks for Efficient Edge Detection", ICCV 2021) as an
 * ONNX graph: the `table5_pidinet.pth` edge detector of the softedge ControlNets
 * (`lllyasviel/Annotators`), as controlnet_aux `pidi/model.py` and the A1111 extension's
 * `annotator/pidinet/model.py` define it with `pidinet()`: `PiDiNet(60, config_model("carv4"),
 * dil=24, sa=True)`. Initializer names are the checkpoint's without DataParallel's `module.`
 * prefix (`init_block.weight`, `block2_1.shortcut.bias`, `dilations.0.conv2_1.weight`, ...).
 *
 * Pixel difference convolutions are plain convolutions of transformed kernels, built here as
 * graph ops on the stored weights (ORT folds them once):
 *
 * - `cd` (central): `conv(x, w) - conv(x, sum(w))`, i.e. the kernel with its centre minus the sum
 *   of its taps;
 * - `ad` (angular): the kernel minus itself rotated one tap clockwise,
 *   `w - w[[3, 0, 1, 6, 4, 2, 7, 8, 5]]`;
 * - `rd` (radial): a 5x5 kernel with the eight outer taps at the ring's corners and edge centres
 *   and their negatives on the inner ring (padding 2).
 *
 * `carv4` cycles `cd, ad, rd, cv` over the init block and the 15 blocks. Each block is: max pool
 * and a 1x1 `shortcut` (first block of stages 2-4), a depthwise 3x3 pixel-difference `conv1`,
 * ReLU, a 1x1 `conv2`, plus the input. Each stage's output goes through CDCM (`dilations`: ReLU,
 * 1x1 conv, four 3x3 convs dilated 5, 7, 9, 11, summed), CSAM (`attentions`: `x * sigmoid(conv2
 * (conv1(relu(x))))`) and a 1x1 `conv_reduces` to one channel, is bilinearly resized
 * (align_corners=False) to the input size, and a 1x1 `classifier` fuses the four; the output is
 * its sigmoid (the detector uses only this last of PiDiNet's five outputs).
 *
 * Input: BGR / 255 as float32 [B, 3, H, W] (the detector flips RGB to BGR; no mean/std).
 *
 * @module
 */
import { WeightsError } from "../errors.ts";
import { GraphBuilder, type OnnxModel, type TensorSource, type Value } from "../onnx/graph.ts";
import { collectParameterShapes, conv2d, ModelContext } from "./layers.ts";

/** A pixel difference convolution type (`createConvFunc`): central, angular, radial or vanilla. */
export type PixelDifference = "cd" | "ad" | "rd" | "cv";

/** The shape of a PiDiNet, detected from its weights ({@linkcode detectPidinetConfig}). */
export interface PidinetConfig {
  architecture: "pidinet";
  /** `inplane`: channels of stage 1 (60 in `table5_pidinet`); stages 2-4 have 2x, 4x and 4x. */
  inplane: number;
  /** `dil`: channels of the CDCM modules (24), or null without them. */
  dilation: number | null;
  /** `sa`: whether CSAM attention modules follow. */
  attention: boolean;
  /** The 16 pixel difference types (init block, then blocks 1_1 ... 4_4). */
  pdcs: PixelDifference[];
}

/** `config_model("carv4")`: cd, ad, rd, cv, four times. */
export const CARV4: readonly PixelDifference[] = Array.from(
  { length: 16 },
  (_, i) => (["cd", "ad", "rd", "cv"] as const)[i % 4]!,
);

/**
 * The config of `table5_pidinet.pth` (`pidinet()` in controlnet_aux and the A1111 extension).
 *
 * @example
 * ```ts
 * import { tablePidinetConfig } from "./pidinet.ts";
 * console.assert(tablePidinetConfig().pdcs.slice(0, 4).join() === "cd,ad,rd,cv");
 * ```
 */
export function tablePidinetConfig(): PidinetConfig {
  return { architecture: "pidinet", inplane: 60, dilation: 24, attention: true, pdcs: [...CARV4] };
}

/** One `PDCBlock`: its name, channels, stride, and whether it ends a stage. */
interface BlockSpec {
  name: string;
  cin: number;
  cout: number;
  stride: 1 | 2;
  stageEnd: boolean;
}

/** The 15 blocks in order: stage 1 has 3 at `inplane`, stages 2-4 have 4 at 2x, 4x and 4x. */
function blockSpecs(inplane: number): BlockSpec[] {
  const c = inplane;
  const stages: Array<[cin: number, cout: number, count: number]> = [
    [c, c, 3],
    [c, 2 * c, 4],
    [2 * c, 4 * c, 4],
    [4 * c, 4 * c, 4],
  ];
  const out: BlockSpec[] = [];
  stages.forEach(([cin, cout, count], s) => {
    for (let k = 1; k <= count; k++) {
      out.push({
        name: `block${s + 1}_${k}`,
        cin: k === 1 ? cin : cout,
        cout,
        stride: s > 0 && k === 1 ? 2 : 1,
        stageEnd: k === count,
      });
    }
  });
  return out;
}

/**
 * The PiDiNet config a state dict describes (keys without `module.`): `init_block.weight` gives
 * `inplane`, `dilations.0.conv1.weight` the CDCM width, `attentions.*` whether CSAM is there.
 * The pixel difference types cannot be read from shapes (every kernel is 3x3); they are carv4,
 * the only configuration released for ControlNet. Throws a WeightsError (a TypeError, exit 3) naming what does not fit.
 *
 * @example
 * ```ts
 * import { detectPidinetConfig, pidinetParameterShapes, tablePidinetConfig } from "./pidinet.ts";
 * const config = detectPidinetConfig(pidinetParameterShapes(tablePidinetConfig()));
 * console.assert(config.inplane === 60 && config.dilation === 24 && config.attention);
 * ```
 */
export function detectPidinetConfig(
  shapes: ReadonlyMap<string, readonly number[]>,
  options: { source?: string } = {},
): PidinetConfig {
  const where = options.source === undefined ? "the weights" : `"${options.source}"`;
  const init = shapes.get("init_block.weight");
  if (init === undefined || init.length !== 4 || init[1] !== 3 || init[2] !== 3) {
    throw new WeightsError(
      `Cannot read ${where} as PiDiNet: "init_block.weight" is ${
        init === undefined ? "missing" : `[${init}]`
      }, expected [C, 3, 3, 3]`,
    );
  }
  const rd = shapes.get("block1_2.conv1.weight");
  if (rd !== undefined && rd[2] === 5) {
    throw new WeightsError(
      `Cannot read ${where} as PiDiNet: it is a converted PiDiNet (5x5 radial kernels), which is ` +
        "not supported; use the training checkpoint (table5_pidinet.pth), whose kernels are 3x3",
    );
  }
  const dil = shapes.get("dilations.0.conv1.weight");
  return {
    architecture: "pidinet",
    inplane: init[0]!,
    dilation: dil === undefined ? null : dil[0]!,
    attention: shapes.has("attentions.0.conv1.weight"),
    pdcs: [...CARV4],
  };
}

/** Options of {@linkcode buildPidinet}. */
export interface PidinetBuildOptions {
  /** Names the weights in error messages, e.g. the file path. */
  source?: string;
}

/**
 * Builds PiDiNet: `image` [B, 3, H, W] (BGR / 255) -> `edge` [B, 1, H, W] (the sigmoid of the
 * fused map). Missing, misshapen and unused weights are reported together.
 *
 * @example
 * ```ts
 * import { buildPidinet, pidinetParameterShapes, tablePidinetConfig } from "./pidinet.ts";
 * import { memoryWeights } from "./layers.ts";
 * import { randomWeights } from "./random.ts";
 * const config = { ...tablePidinetConfig(), inplane: 4, dilation: 4 };
 * const model = buildPidinet(config, memoryWeights(randomWeights(pidinetParameterShapes(config), 0)));
 * console.assert(model.proto.graph.output[0]!.name === "edge");
 * ```
 */
export function buildPidinet(
  config: PidinetConfig,
  weights: ReadonlyMap<string, TensorSource>,
  options: PidinetBuildOptions = {},
): OnnxModel {
  if (config.pdcs.length !== 16) {
    throw new RangeError(`Invalid PiDiNet config: ${config.pdcs.length} pdcs, expected 16`);
  }
  const what = `PiDiNet${options.source === undefined ? "" : ` from "${options.source}"`}`;
  const g = new GraphBuilder("PiDiNet");
  const c = new ModelContext(g, what, weights);
  const image = g.input("image", "float32", ["batch", 3, "height", "width"]);
  const C = config.inplane;

  // [B, 3, H, W] -> [B, C, H, W]
  let x = pixelDifferenceConv(c, "init_block", image, 3, C, config.pdcs[0]!, 1);
  const stages: Value[] = [];
  blockSpecs(C).forEach((block, i) => {
    x = pdcBlock(c, block.name, x, block.cin, block.cout, block.stride, config.pdcs[i + 1]!);
    if (block.stageEnd) stages.push(x);
  });
  const fusePlanes = [C, 2 * C, 4 * C, 4 * C];
  // [B, 1, H, W] per stage, resized to the input size
  const sizeOf = g.op("Shape", [image]);
  const edges = stages.map((xi, i) => {
    let h = xi;
    let channels = fusePlanes[i]!;
    if (config.dilation !== null) {
      h = cdcm(c, `dilations.${i}`, h, channels, config.dilation);
      channels = config.dilation;
    }
    if (config.attention) h = csam(c, `attentions.${i}`, h, channels);
    const e = conv2d(c, `conv_reduces.${i}.conv`, h, channels, 1, { kernel: 1 });
    // F.interpolate(e, (H, W), mode="bilinear", align_corners=False): [B, 1, h, w] -> [B, 1, H, W]
    return g.scope(`conv_reduces.${i}`, () => {
      const sizes = g.op("Concat", [
        g.op("Slice", [g.op("Shape", [e]), g.ints([0]), g.ints([2])]),
        g.op("Slice", [sizeOf, g.ints([2]), g.ints([4])]),
      ], { axis: 0 });
      return g.op("Resize", [e, null, null, sizes], {
        mode: "linear",
        coordinate_transformation_mode: "half_pixel",
      });
    });
  });
  // [B, 4, H, W] -> [B, 1, H, W]
  const fused = conv2d(c, "classifier", g.op("Concat", edges, { axis: 1 }), 4, 1, { kernel: 1 });
  g.output(g.op("Sigmoid", [fused]), "edge", "float32", ["batch", 1, "height", "width"]);
  c.finish();
  return g.build({ metadata: { architecture: "pidinet", config: JSON.stringify(config) } });
}

/**
 * Names and shapes of the weights {@linkcode buildPidinet} reads for `config` (the checkpoint's
 * names without `module.`).
 *
 * @example
 * ```ts
 * import { pidinetParameterShapes, tablePidinetConfig } from "./pidinet.ts";
 * const shapes = pidinetParameterShapes(tablePidinetConfig());
 * console.assert(shapes.get("block2_1.shortcut.weight")?.join() === "120,60,1,1");
 * console.assert(shapes.get("block1_2.conv1.weight")?.join() === "60,1,3,3");
 * ```
 */
export function pidinetParameterShapes(config: PidinetConfig): Map<string, number[]> {
  return collectParameterShapes(() => buildPidinet(config, new Map()));
}

/** `PDCBlock`: [max pool], depthwise pixel-difference conv1, ReLU, 1x1 conv2, + [shortcut] x. */
function pdcBlock(
  c: ModelContext,
  name: string,
  input: Value,
  cin: number,
  cout: number,
  stride: 1 | 2,
  pdc: PixelDifference,
): Value {
  const g = c.g;
  // nn.MaxPool2d(kernel_size=2, stride=2): [B, C, H, W] -> [B, C, H / 2, W / 2]
  const x = stride > 1
    ? g.scope(name, () => g.op("MaxPool", [input], { kernel_shape: [2, 2], strides: [2, 2] }))
    : input;
  let y = pixelDifferenceConv(c, `${name}.conv1`, x, cin, cin, pdc, cin);
  y = g.scope(name, () => g.op("Relu", [y]));
  y = conv2d(c, `${name}.conv2`, y, cin, cout, { kernel: 1, bias: false });
  const skip = stride > 1 ? conv2d(c, `${name}.shortcut`, x, cin, cout, { kernel: 1 }) : x;
  return g.scope(name, () => g.op("Add", [y, skip]));
}

/**
 * A 3x3 pixel difference convolution without bias (`Conv2d(pdc, ...)`, padding 1; the radial
 * type a 5x5 kernel with padding 2): the stored kernel `${name}.weight` [cout, cin / groups, 3,
 * 3] transformed as the module doc says. [B, cin, H, W] -> [B, cout, H, W].
 *
 * @example
 * ```ts
 * import { GraphBuilder } from "../onnx/graph.ts";
 * import { ModelContext, memoryWeights } from "./layers.ts";
 * import { pixelDifferenceConv } from "./pidinet.ts";
 * const g = new GraphBuilder("pdc");
 * const w = memoryWeights(new Map([["conv.weight", { shape: [2, 1, 3, 3], data: new Float32Array(18) }]]));
 * const c = new ModelContext(g, "pdc", w);
 * const y = pixelDifferenceConv(c, "conv", g.input("x", "float32", [1, 2, 4, 4]), 2, 2, "rd", 2);
 * g.output(y, "y", "float32", [1, 2, 4, 4]);
 * c.finish();
 * ```
 */
export function pixelDifferenceConv(
  c: ModelContext,
  name: string,
  x: Value,
  cin: number,
  cout: number,
  pdc: PixelDifference,
  groups: number,
): Value {
  const g = c.g;
  const shape = [cout, cin / groups, 3, 3];
  const w = c.param(`${name}.weight`, shape);
  return g.scope(name, () => {
    let kernel = w;
    let k = 3;
    if (pdc === "cd") {
      // w - sum(w) at the centre tap: conv(x, w) - conv(x, weights.sum(dim=[2, 3]))
      const sum = g.op("ReduceSum", [w, g.ints([2, 3])], { keepdims: 1 });
      const centre = g.constant([0, 0, 0, 0, 1, 0, 0, 0, 0], "float32", [1, 1, 3, 3]);
      kernel = g.op("Sub", [w, g.op("Mul", [sum, centre])]);
    } else if (pdc === "ad") {
      // [O, I, 3, 3] -> [O, I, 9]; w - w[:, :, [3, 0, 1, 6, 4, 2, 7, 8, 5]] (clockwise)
      const flat = g.op("Reshape", [w, g.ints([shape[0]!, shape[1]!, 9])]);
      const rotated = g.op("Gather", [flat, g.ints([3, 0, 1, 6, 4, 2, 7, 8, 5])], { axis: 2 });
      kernel = g.op("Reshape", [g.op("Sub", [flat, rotated]), g.ints(shape)]);
    } else if (pdc === "rd") {
      // [O, I, 9] @ [9, 25] -> [O, I, 25] -> [O, I, 5, 5]: taps 1..8 go to the outer ring (+)
      // and the inner ring (-); each output is one tap times +-1, so the product is exact.
      const outer = [0, 2, 4, 10, 14, 20, 22, 24];
      const inner = [6, 7, 8, 11, 13, 16, 17, 18];
      const place = new Float32Array(9 * 25);
      for (let t = 1; t <= 8; t++) {
        place[t * 25 + outer[t - 1]!] = 1;
        place[t * 25 + inner[t - 1]!] = -1;
      }
      const flat = g.op("Reshape", [w, g.ints([shape[0]!, shape[1]!, 9])]);
      const spread = g.op("MatMul", [flat, g.constant(place, "float32", [9, 25])]);
      kernel = g.op("Reshape", [spread, g.ints([shape[0]!, shape[1]!, 5, 5])]);
      k = 5;
    }
    const pad = (k - 1) / 2;
    // [B, cin, H, W] -> [B, cout, H, W]
    return g.op("Conv", [x, kernel], {
      kernel_shape: [k, k],
      pads: [pad, pad, pad, pad],
      ...(groups !== 1 ? { group: groups } : {}),
    });
  });
}

/** `CDCM`: ReLU, 1x1 conv1 to `dil` channels, then four 3x3 convs dilated 5, 7, 9, 11, summed. */
function cdcm(c: ModelContext, name: string, x: Value, channels: number, dil: number): Value {
  const g = c.g;
  const h = conv2d(c, `${name}.conv1`, g.scope(name, () => g.op("Relu", [x])), channels, dil, {
    kernel: 1,
  });
  let sum: Value | null = null;
  [5, 7, 9, 11].forEach((d, i) => {
    const y = conv2d(c, `${name}.conv2_${i + 1}`, h, dil, dil, { dilation: d, bias: false });
    sum = sum === null ? y : g.scope(name, () => g.op("Add", [sum!, y]));
  });
  return sum!;
}

/** `CSAM`: `x * sigmoid(conv2(conv1(relu(x))))`, conv1 1x1 to 4 channels, conv2 3x3 to 1. */
function csam(c: ModelContext, name: string, x: Value, channels: number): Value {
  const g = c.g;
  const y1 = conv2d(c, `${name}.conv1`, g.scope(name, () => g.op("Relu", [x])), channels, 4, {
    kernel: 1,
  });
  const y2 = conv2d(c, `${name}.conv2`, y1, 4, 1, { bias: false });
  return g.scope(name, () => g.op("Mul", [x, g.op("Sigmoid", [y2])]));
}
