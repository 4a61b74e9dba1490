/**
 * Static shapes, element types and (for small integer tensors) values of every value of a built
 * graph, for given input shapes. The backward pass needs them: broadcast gradients are summed
 * back over known axes, `Reshape`'s target shape is known, zero gradients get a known size. So a
 * training graph is built per input shape, and everything in it is static (ORT folds the rest).
 *
 * Shape arithmetic the builders do in the graph (`Shape` -> `Slice` -> `Concat` -> `Reshape`) is
 * evaluated here: integer tensors up to {@linkcode MAX_VALUE_ELEMENTS} elements carry their
 * values. Rules follow the ONNX operator specifications (onnx/docs/Operators.md) at the opsets
 * the builders use (13-18) plus `com.microsoft.MultiHeadAttention`. An op without a rule leaves
 * its outputs unknown, which is an error only when the backward pass needs them.
 *
 * @module
 */
import { type ElemType, numel, type OnnxModel } from "../../onnx/graph.ts";
import { DataType, type NodeMessage, type TensorMessage } from "../../onnx/proto.ts";
import { NodeAttributes, opKey } from "./attributes.ts";

/** What is known statically about one value. */
export interface TensorInfo {
  readonly dtype: ElemType;
  readonly shape: readonly number[];
  /** Row-major contents, for small tensors computed from constants (shape arithmetic). */
  readonly value?: readonly number[];
}

/** Tensors up to this many elements carry their values through shape arithmetic. */
export const MAX_VALUE_ELEMENTS = 4096;

const ELEM_BY_CODE = new Map<number, ElemType>(
  (Object.entries(DataType) as Array<[string, number]>)
    .filter(([k]) =>
      [
        "float32",
        "float16",
        "bfloat16",
        "float64",
        "int64",
        "int32",
        "int16",
        "int8",
        "uint8",
        "bool",
      ]
        .includes(k)
    )
    .map(([k, v]) => [v, k as ElemType]),
);

/** The element type of an ONNX data-type code. */
export function elemTypeOf(code: number): ElemType {
  const t = ELEM_BY_CODE.get(code);
  if (t === undefined) throw new TypeError(`ONNX data type ${code} is not supported here`);
  return t;
}

/** Decodes the inline bytes of a small tensor message into numbers (undefined when too big). */
export function tensorMessageValue(t: TensorMessage): number[] | undefined {
  const n = numel(t.dims.map(Number));
  if (n > MAX_VALUE_ELEMENTS || t.rawData === undefined) return undefined;
  const bytes = t.rawData.slice(); // aligned copy
  const buf = bytes.buffer;
  switch (elemTypeOf(t.dataType)) {
    case "float32":
      return Array.from(new Float32Array(buf, 0, n));
    case "float64":
      return Array.from(new Float64Array(buf, 0, n));
    case "int64":
      return Array.from(new BigInt64Array(buf, 0, n), Number);
    case "int32":
      return Array.from(new Int32Array(buf, 0, n));
    case "int16":
      return Array.from(new Int16Array(buf, 0, n));
    case "int8":
      return Array.from(new Int8Array(buf, 0, n));
    case "uint8":
    case "bool":
      return Array.from(bytes.subarray(0, n));
    default:
      return undefined;
  }
}

/** Numpy-style multidirectional broadcast of shapes; throws when they do not broadcast. */
export function broadcastShapes(...shapes: ReadonlyArray<readonly number[]>): number[] {
  const rank = Math.max(...shapes.map((s) => s.length));
  const out: number[] = [];
  for (let i = 0; i < rank; i++) {
    let d = 1;
    for (const s of shapes) {
      const k = s.length - rank + i;
      const v = k < 0 ? 1 : s[k]!;
      if (v === 1) continue;
      if (d !== 1 && d !== v) {
        throw new RangeError(
          `Shapes ${shapes.map((s) => `[${s}]`).join(", ")} do not broadcast`,
        );
      }
      d = v;
    }
    out.push(d);
  }
  return out;
}

/** Row-major strides of a shape. */
export function stridesOf(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length).fill(1);
  for (let i = shape.length - 2; i >= 0; i--) s[i] = s[i + 1]! * shape[i + 1]!;
  return s;
}

/** Values of `a` broadcast to `shape` (row-major). */
function broadcastValue(
  value: readonly number[],
  from: readonly number[],
  shape: readonly number[],
) {
  const n = numel(shape);
  const out = new Array<number>(n);
  const outStrides = stridesOf(shape);
  const inStrides = stridesOf(from);
  const lead = shape.length - from.length;
  for (let i = 0; i < n; i++) {
    let src = 0;
    let rem = i;
    for (let d = 0; d < shape.length; d++) {
      const idx = Math.floor(rem / outStrides[d]!);
      rem -= idx * outStrides[d]!;
      const k = d - lead;
      if (k >= 0 && from[k] !== 1) src += idx * inStrides[k]!;
    }
    out[i] = value[src]!;
  }
  return out;
}

function normAxis(axis: number, rank: number, what: string): number {
  const a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= Math.max(rank, 1)) {
    throw new RangeError(`${what}: axis ${axis} is out of range for rank ${rank}`);
  }
  return a;
}

const INT_TYPES = new Set<ElemType>(["int64", "int32", "int16", "int8", "uint8", "bool"]);
const UNARY_SAME = new Set([
  "Identity",
  "Neg",
  "Abs",
  "Sigmoid",
  "Tanh",
  "Erf",
  "Exp",
  "Log",
  "Sqrt",
  "Reciprocal",
  "Relu",
  "Sin",
  "Cos",
  "Softmax",
  "LogSoftmax",
  "Trilu",
  "Floor",
  "Ceil",
  "Round",
  "Sign",
  "Gelu",
  "LeakyRelu",
  "Elu",
  "Softplus",
  "HardSigmoid",
  "Dropout",
]);
const BINARY: Record<string, (a: number, b: number) => number> = {
  Add: (a, b) => a + b,
  Sub: (a, b) => a - b,
  Mul: (a, b) => a * b,
  Div: (a, b) => Math.trunc(a / b),
  Pow: (a, b) => a ** b,
  Max: Math.max,
  Min: Math.min,
  Equal: (a, b) => Number(a === b),
  Less: (a, b) => Number(a < b),
  LessOrEqual: (a, b) => Number(a <= b),
  Greater: (a, b) => Number(a > b),
  GreaterOrEqual: (a, b) => Number(a >= b),
  And: (a, b) => Number(a !== 0 && b !== 0),
  Or: (a, b) => Number(a !== 0 || b !== 0),
};
const COMPARISONS = new Set([
  "Equal",
  "Less",
  "LessOrEqual",
  "Greater",
  "GreaterOrEqual",
  "And",
  "Or",
  "Not",
]);
const REDUCE_OPS = new Set([
  "ReduceSum",
  "ReduceMean",
  "ReduceMax",
  "ReduceMin",
  "ReduceProd",
  "ReduceSumSquare",
  "ReduceL2",
  "ReduceLogSumExp",
]);

/** Opset at which a reduce op's `axes` moved from attribute to input. */
export function reduceAxesAreInput(op: string, opset: number): boolean {
  return op === "ReduceSum" ? opset >= 13 : opset >= 18;
}

/** The static facts about every value of a graph; see the module doc. */
export interface ShapeTable {
  /** Facts about `name`, or undefined when unknown. */
  get(name: string): TensorInfo | undefined;
  /** Facts about `name`; throws naming the producing op when unknown. */
  require(name: string): TensorInfo;
  /** The default-domain opset of the graph. */
  readonly opset: number;
}

/**
 * Infers shapes for a built model given the concrete shape of every graph input with dynamic
 * dimensions.
 *
 * @example
 * ```ts
 * import { GraphBuilder } from "../../onnx/graph.ts";
 * import { inferShapes } from "./shape_inference.ts";
 * const g = new GraphBuilder("t");
 * const x = g.input("x", "float32", ["batch", 3]);
 * const y = g.op("Reshape", [x, g.op("Concat", [g.op("Shape", [x]), g.ints([1])], { axis: 0 })]);
 * g.output(y, "y");
 * const shapes = inferShapes(g.build(), { x: [2, 3] });
 * console.assert(shapes.require("y").shape.join() === "2,3,1");
 * ```
 */
export function inferShapes(
  model: OnnxModel,
  inputShapes: Readonly<Record<string, readonly number[]>>,
): ShapeTable {
  const graph = model.proto.graph;
  const opset = model.proto.opsetImport.find((o) => o.domain === "" || o.domain === "ai.onnx")
    ?.version ?? 17;
  const table = new Map<string, TensorInfo>();
  const producer = new Map<string, NodeMessage>();
  // The node without a shape rule that left each unknown value unknown.
  const culprit = new Map<string, NodeMessage>();
  for (const input of graph.input) {
    const tt = input.type.tensorType;
    const dtype = elemTypeOf(tt.elemType);
    const declared = tt.shape?.dim;
    const given = inputShapes[input.name];
    let shape: number[];
    if (given !== undefined) {
      if (declared !== undefined) {
        const ok = declared.length === given.length &&
          declared.every((d, i) => !("dimValue" in d) || Number(d.dimValue) === given[i]);
        if (!ok) {
          const want = declared.map((d) => "dimValue" in d ? Number(d.dimValue) : d.dimParam);
          throw new RangeError(
            `Input "${input.name}" has shape [${want}]; the given shape [${given}] does not fit`,
          );
        }
      }
      shape = [...given];
    } else if (declared !== undefined && declared.every((d) => "dimValue" in d)) {
      shape = declared.map((d) => Number((d as { dimValue: number }).dimValue));
    } else {
      throw new RangeError(
        `Cannot infer shapes: input "${input.name}" has dynamic dimensions; pass its shape`,
      );
    }
    table.set(input.name, { dtype, shape });
  }
  for (const init of graph.initializer) {
    const value = tensorMessageValue(init);
    const info: TensorInfo = {
      dtype: elemTypeOf(init.dataType),
      shape: init.dims.map(Number),
      ...(value === undefined ? {} : { value }),
    };
    table.set(init.name!, info);
  }
  for (const { name, source } of model.initializers) {
    const value = "data" in source && numel(source.shape) <= MAX_VALUE_ELEMENTS &&
        (INT_TYPES.has(source.dtype) || source.dtype === "float32" || source.dtype === "float64")
      ? Array.from(source.data as ArrayLike<number | bigint>, Number)
      : undefined;
    table.set(name, {
      dtype: source.dtype,
      shape: [...source.shape],
      ...(value === undefined ? {} : { value }),
    });
  }
  for (const node of graph.node) {
    for (const o of node.output) if (o !== "") producer.set(o, node);
    const ins = node.input.map((n) => n === "" ? undefined : table.get(n));
    // After an op without a rule everything downstream is unknown (an error only if needed).
    const unknownInput = node.input.find((n, i) => n !== "" && ins[i] === undefined);
    if (unknownInput !== undefined) {
      const cause = culprit.get(unknownInput);
      for (const o of node.output) if (o !== "" && cause !== undefined) culprit.set(o, cause);
      continue;
    }
    let outs: Array<TensorInfo | undefined>;
    try {
      outs = inferNode(node, ins, opset);
    } catch (e) {
      throw new RangeError(
        `Cannot infer shapes at node "${node.name}" (${node.opType}): ${(e as Error).message}`,
        { cause: e },
      );
    }
    node.output.forEach((o, i) => {
      const info = outs[i];
      if (o !== "" && info !== undefined) table.set(o, info);
      else if (o !== "") culprit.set(o, node);
    });
  }
  return {
    opset,
    get: (name) => table.get(name),
    require(name) {
      const info = table.get(name);
      if (info !== undefined) return info;
      const p = culprit.get(name) ?? producer.get(name);
      throw new TypeError(
        `No static shape for "${name}"` +
          (p === undefined ? "" : `: ${opKey(p)} node "${p.name}" has no shape rule`) +
          `; add one in lib/train/autodiff/shape_inference.ts`,
      );
    },
  };
}

function withValue(dtype: ElemType, shape: number[], value: number[] | undefined): TensorInfo {
  return value === undefined || numel(shape) > MAX_VALUE_ELEMENTS
    ? { dtype, shape }
    : { dtype, shape, value };
}

function need(info: TensorInfo | undefined, what: string): TensorInfo {
  if (info === undefined) throw new TypeError(`${what} is unknown`);
  return info;
}

function needValue(info: TensorInfo | undefined, what: string): readonly number[] {
  const v = need(info, what).value;
  if (v === undefined) {
    throw new TypeError(`${what} is not a constant the graph computes statically`);
  }
  return v;
}

/** The resolved Slice parameters for one axis: start, end (exclusive, may be -1), step. */
export interface SliceAxis {
  axis: number;
  start: number;
  end: number;
  step: number;
}

/** ONNX Slice's clamping of starts/ends for each sliced axis of a tensor of `shape`. */
export function resolveSlice(
  shape: readonly number[],
  starts: readonly number[],
  ends: readonly number[],
  axes?: readonly number[],
  steps?: readonly number[],
): SliceAxis[] {
  const rank = shape.length;
  return starts.map((s, i) => {
    const axis = normAxis(axes?.[i] ?? i, rank, "Slice");
    const dim = shape[axis]!;
    const step = steps?.[i] ?? 1;
    if (step === 0) throw new RangeError("Slice: step 0");
    let start = s < 0 ? s + dim : s;
    let end = ends[i]! < 0 ? ends[i]! + dim : ends[i]!;
    if (step > 0) {
      start = Math.min(Math.max(start, 0), dim);
      end = Math.min(Math.max(end, 0), dim);
    } else {
      start = Math.min(Math.max(start, 0), dim - 1);
      end = Math.min(Math.max(end, -1), dim - 1);
    }
    return { axis, start, end, step };
  });
}

/** Length of one resolved slice. */
export function sliceLength(s: SliceAxis): number {
  return s.step > 0
    ? Math.max(0, Math.ceil((s.end - s.start) / s.step))
    : Math.max(0, Math.ceil((s.start - s.end) / -s.step));
}

/** Resolves `Reshape`'s target (0 copies the input dim unless allowzero, -1 is inferred). */
export function reshapeTarget(
  input: readonly number[],
  target: readonly number[],
  allowZero = false,
): number[] {
  const out = target.map((d, i) => (d === 0 && !allowZero ? input[i]! : d));
  const known = out.reduce((a, d) => (d === -1 ? a : a * d), 1);
  const minus = out.filter((d) => d === -1).length;
  const total = numel(input);
  if (minus > 1) throw new RangeError(`Reshape: more than one -1 in [${target}]`);
  if (minus === 1) {
    if (known === 0 || total % known !== 0) {
      throw new RangeError(`Reshape: cannot reshape [${input}] to [${target}]`);
    }
    out[out.indexOf(-1)] = total / known;
  } else if (known !== total) {
    throw new RangeError(`Reshape: cannot reshape [${input}] to [${target}]`);
  }
  return out;
}

/** Output spatial size of a convolution along one axis. */
export function convOutSize(
  size: number,
  kernel: number,
  stride: number,
  padBegin: number,
  padEnd: number,
  dilation: number,
): number {
  return Math.floor((size + padBegin + padEnd - ((kernel - 1) * dilation + 1)) / stride) + 1;
}

function inferNode(
  node: NodeMessage,
  ins: Array<TensorInfo | undefined>,
  opset: number,
): Array<TensorInfo | undefined> {
  const a = new NodeAttributes(node);
  const op = opKey(node);
  const x = ins[0];
  if (UNARY_SAME.has(op)) {
    if (x === undefined) return [];
    return [{ dtype: x.dtype, shape: x.shape }];
  }
  if (op === "Cast") {
    const xi = need(x, "Cast input");
    const dtype = elemTypeOf(a.int("to", 1));
    const v = xi.value;
    const value = v === undefined
      ? undefined
      : INT_TYPES.has(dtype) && !INT_TYPES.has(xi.dtype)
      ? v.map(Math.trunc)
      : dtype === "bool"
      ? v.map((e) => Number(e !== 0))
      : [...v];
    return [withValue(dtype, [...xi.shape], value)];
  }
  if (op === "Not") {
    const xi = need(x, "Not input");
    return [withValue("bool", [...xi.shape], xi.value?.map((e) => Number(e === 0)))];
  }
  if (op in BINARY || op === "Sum" || op === "Mean" || op === "Where") {
    if (ins.some((i) => i === undefined)) return [];
    const infos = ins as TensorInfo[];
    const shape = broadcastShapes(...infos.map((i) => i.shape));
    const dtype: ElemType = COMPARISONS.has(op)
      ? "bool"
      : op === "Where"
      ? infos[1]!.dtype
      : infos[0]!.dtype;
    let value: number[] | undefined;
    if (numel(shape) <= MAX_VALUE_ELEMENTS && infos.every((i) => i.value !== undefined)) {
      const vs = infos.map((i) => broadcastValue(i.value!, i.shape, shape));
      if (op === "Where") value = vs[0]!.map((c, k) => (c !== 0 ? vs[1]![k]! : vs[2]![k]!));
      else if (op === "Sum" || op === "Mean") {
        value = vs[0]!.map((_, k) =>
          vs.reduce((s, v) => s + v[k]!, 0) / (op === "Mean" ? vs.length : 1)
        );
      } else {
        const f = BINARY[op]!;
        const isInt = INT_TYPES.has(infos[0]!.dtype);
        value = vs[0]!.map((v, k) => op === "Div" && !isInt ? v / vs[1]![k]! : f(v, vs[1]![k]!));
      }
    }
    return [withValue(dtype, shape, value)];
  }
  switch (op) {
    case "Shape": {
      const xi = need(x, "Shape input");
      const r = xi.shape.length;
      const clamp = (v: number) => Math.min(Math.max(v < 0 ? v + r : v, 0), r);
      const dims = xi.shape.slice(clamp(a.int("start", 0)), clamp(a.int("end", r)));
      return [{ dtype: "int64", shape: [dims.length], value: dims }];
    }
    case "Size": {
      const xi = need(x, "Size input");
      return [{ dtype: "int64", shape: [], value: [numel(xi.shape)] }];
    }
    case "Constant": {
      const t = a.tensor("value");
      if (t !== undefined) {
        const value = tensorMessageValue(t);
        return [withValue(elemTypeOf(t.dataType), t.dims.map(Number), value)];
      }
      if (a.has("value_float")) {
        return [{ dtype: "float32", shape: [], value: [a.float("value_float", 0)] }];
      }
      if (a.has("value_int")) {
        return [{ dtype: "int64", shape: [], value: [a.int("value_int", 0)] }];
      }
      const ints = a.ints("value_ints");
      if (ints !== undefined) return [{ dtype: "int64", shape: [ints.length], value: ints }];
      return [];
    }
    case "ConstantOfShape": {
      const shape = [...needValue(x, "ConstantOfShape shape")];
      const t = a.tensor("value");
      const dtype = t === undefined ? "float32" : elemTypeOf(t.dataType);
      const fill = t === undefined ? 0 : (tensorMessageValue(t)?.[0] ?? 0);
      return [
        withValue(
          dtype,
          shape,
          numel(shape) <= MAX_VALUE_ELEMENTS ? new Array(numel(shape)).fill(fill) : undefined,
        ),
      ];
    }
    case "Reshape": {
      const xi = need(x, "Reshape data");
      const shape = reshapeTarget(
        xi.shape,
        needValue(ins[1], "Reshape shape"),
        a.int("allowzero", 0) === 1,
      );
      return [withValue(xi.dtype, shape, xi.value === undefined ? undefined : [...xi.value])];
    }
    case "Flatten": {
      const xi = need(x, "Flatten input");
      const axis = a.int("axis", 1);
      const ax = axis < 0 ? axis + xi.shape.length : axis;
      const shape = [numel(xi.shape.slice(0, ax)), numel(xi.shape.slice(ax))];
      return [withValue(xi.dtype, shape, xi.value === undefined ? undefined : [...xi.value])];
    }
    case "Unsqueeze": {
      const xi = need(x, "Unsqueeze data");
      const axes = opset >= 13 ? needValue(ins[1], "Unsqueeze axes") : a.ints("axes", []);
      const rank = xi.shape.length + axes.length;
      const norm = new Set(axes.map((ax) => normAxis(ax, rank, "Unsqueeze")));
      const shape: number[] = [];
      let k = 0;
      for (let i = 0; i < rank; i++) shape.push(norm.has(i) ? 1 : xi.shape[k++]!);
      return [withValue(xi.dtype, shape, xi.value === undefined ? undefined : [...xi.value])];
    }
    case "Squeeze": {
      const xi = need(x, "Squeeze data");
      const given = opset >= 13 ? ins[1] : undefined;
      const axesList = opset >= 13
        ? (given === undefined ? undefined : needValue(given, "Squeeze axes"))
        : a.ints("axes");
      const axes = axesList === undefined
        ? xi.shape.map((d, i) => (d === 1 ? i : -1)).filter((i) => i >= 0)
        : axesList.map((ax) => normAxis(ax, xi.shape.length, "Squeeze"));
      const shape = xi.shape.filter((_, i) => !axes.includes(i));
      return [withValue(xi.dtype, shape, xi.value === undefined ? undefined : [...xi.value])];
    }
    case "Transpose": {
      const xi = need(x, "Transpose input");
      const r = xi.shape.length;
      const perm = a.ints("perm", [...Array(r).keys()].reverse());
      const shape = perm.map((p) => xi.shape[p]!);
      let value: number[] | undefined;
      if (xi.value !== undefined) {
        const inStrides = stridesOf(xi.shape);
        const outStrides = stridesOf(shape);
        value = new Array(xi.value.length);
        for (let i = 0; i < value.length; i++) {
          let src = 0;
          let rem = i;
          for (let d = 0; d < r; d++) {
            const idx = Math.floor(rem / outStrides[d]!);
            rem -= idx * outStrides[d]!;
            src += idx * inStrides[perm[d]!]!;
          }
          value[i] = xi.value[src]!;
        }
      }
      return [withValue(xi.dtype, shape, value)];
    }
    case "Concat": {
      if (ins.some((i) => i === undefined)) return [];
      const infos = ins as TensorInfo[];
      const rank = infos[0]!.shape.length;
      const axis = normAxis(a.int("axis", 0), rank, "Concat");
      const shape = [...infos[0]!.shape];
      shape[axis] = infos.reduce((s, i) => s + i.shape[axis]!, 0);
      let value: number[] | undefined;
      if (rank === 1 && infos.every((i) => i.value !== undefined)) {
        value = infos.flatMap((i) => [...i.value!]);
      }
      return [withValue(infos[0]!.dtype, shape, value)];
    }
    case "Split": {
      const xi = need(x, "Split input");
      const axis = normAxis(a.int("axis", 0), xi.shape.length, "Split");
      const n = node.output.length;
      let sizes: readonly number[];
      if (opset >= 13 && ins[1] !== undefined) sizes = needValue(ins[1], "Split sizes");
      else if (opset < 13 && a.has("split")) sizes = a.ints("split", []);
      else {
        const dim = xi.shape[axis]!;
        const chunk = Math.ceil(dim / n);
        sizes = Array.from({ length: n }, (_, i) => Math.max(0, Math.min(chunk, dim - i * chunk)));
      }
      return sizes.map((s) => {
        const shape = [...xi.shape];
        shape[axis] = s;
        return { dtype: xi.dtype, shape };
      });
    }
    case "Slice": {
      const xi = need(x, "Slice data");
      const starts = needValue(ins[1], "Slice starts");
      const ends = needValue(ins[2], "Slice ends");
      const axes = ins[3] === undefined ? undefined : needValue(ins[3], "Slice axes");
      const steps = ins[4] === undefined ? undefined : needValue(ins[4], "Slice steps");
      const spec = resolveSlice(xi.shape, starts, ends, axes, steps);
      const shape = [...xi.shape];
      for (const s of spec) shape[s.axis] = sliceLength(s);
      let value: number[] | undefined;
      if (xi.value !== undefined && xi.shape.length === 1 && spec.length === 1) {
        const s = spec[0]!;
        value = [];
        for (let i = 0; i < shape[0]!; i++) value.push(xi.value[s.start + i * s.step]!);
      }
      return [withValue(xi.dtype, shape, value)];
    }
    case "Expand": {
      const xi = need(x, "Expand input");
      const shape = broadcastShapes(xi.shape, needValue(ins[1], "Expand shape"));
      const value = xi.value === undefined || numel(shape) > MAX_VALUE_ELEMENTS
        ? undefined
        : broadcastValue(xi.value, xi.shape, shape);
      return [withValue(xi.dtype, shape, value)];
    }
    case "Tile": {
      const xi = need(x, "Tile input");
      const reps = needValue(ins[1], "Tile repeats");
      return [{ dtype: xi.dtype, shape: xi.shape.map((d, i) => d * reps[i]!) }];
    }
    case "Gather": {
      const xi = need(x, "Gather data");
      const idx = need(ins[1], "Gather indices");
      const axis = normAxis(a.int("axis", 0), xi.shape.length, "Gather");
      const shape = [...xi.shape.slice(0, axis), ...idx.shape, ...xi.shape.slice(axis + 1)];
      let value: number[] | undefined;
      if (xi.value !== undefined && idx.value !== undefined && xi.shape.length === 1) {
        value = idx.value.map((i) => xi.value![i < 0 ? i + xi.shape[0]! : i]!);
      }
      return [withValue(xi.dtype, shape, value)];
    }
    case "GatherND": {
      const xi = need(x, "GatherND data");
      const idx = need(ins[1], "GatherND indices");
      const b = a.int("batch_dims", 0);
      const last = idx.shape[idx.shape.length - 1]!;
      const shape = [...idx.shape.slice(0, -1), ...xi.shape.slice(b + last)];
      return [{ dtype: xi.dtype, shape }];
    }
    case "ScatterND":
    case "ScatterElements":
      return x === undefined ? [] : [{ dtype: x.dtype, shape: x.shape }];
    case "Range": {
      const [s, l, d] = [0, 1, 2].map((i) => needValue(ins[i], "Range argument")[0]!);
      const n = Math.max(Math.ceil((l! - s!) / d!), 0);
      const value = Array.from({ length: n }, (_, i) => s! + i * d!);
      return [withValue(need(x, "Range start").dtype, [n], value)];
    }
    case "MatMul": {
      const A = need(x, "MatMul A");
      const B = need(ins[1], "MatMul B");
      const a2 = A.shape.length === 1 ? [1, A.shape[0]!] : A.shape;
      const b2 = B.shape.length === 1 ? [B.shape[0]!, 1] : B.shape;
      if (a2[a2.length - 1] !== b2[b2.length - 2]) {
        throw new RangeError(`MatMul: [${A.shape}] @ [${B.shape}] do not fit`);
      }
      const batch = broadcastShapes(a2.slice(0, -2), b2.slice(0, -2));
      const shape = [...batch];
      if (A.shape.length !== 1) shape.push(a2[a2.length - 2]!);
      if (B.shape.length !== 1) shape.push(b2[b2.length - 1]!);
      return [{ dtype: A.dtype, shape }];
    }
    case "Gemm": {
      const A = need(x, "Gemm A");
      const B = need(ins[1], "Gemm B");
      const m = a.int("transA", 0) ? A.shape[1]! : A.shape[0]!;
      const n = a.int("transB", 0) ? B.shape[0]! : B.shape[1]!;
      return [{ dtype: A.dtype, shape: [m, n] }];
    }
    case "Conv":
    case "ConvTranspose": {
      const X = need(x, `${op} X`);
      const W = need(ins[1], `${op} W`);
      const spatial = X.shape.length - 2;
      const kernel = a.ints("kernel_shape", W.shape.slice(2));
      const strides = a.ints("strides", new Array(spatial).fill(1));
      const dil = a.ints("dilations", new Array(spatial).fill(1));
      const pads = a.ints("pads", new Array(2 * spatial).fill(0));
      if (a.string("auto_pad", "NOTSET") !== "NOTSET") {
        throw new TypeError(`${op}: auto_pad is not supported; use explicit pads`);
      }
      const group = a.int("group", 1);
      if (op === "Conv") {
        const shape = [X.shape[0]!, W.shape[0]!];
        for (let i = 0; i < spatial; i++) {
          shape.push(
            convOutSize(
              X.shape[i + 2]!,
              kernel[i]!,
              strides[i]!,
              pads[i]!,
              pads[i + spatial]!,
              dil[i]!,
            ),
          );
        }
        return [{ dtype: X.dtype, shape }];
      }
      const outPad = a.ints("output_padding", new Array(spatial).fill(0));
      const given = a.ints("output_shape");
      const shape = [X.shape[0]!, W.shape[1]! * group];
      for (let i = 0; i < spatial; i++) {
        shape.push(
          given?.[i] ??
            strides[i]! * (X.shape[i + 2]! - 1) + outPad[i]! + (kernel[i]! - 1) * dil[i]! + 1 -
              pads[i]! - pads[i + spatial]!,
        );
      }
      return [{ dtype: X.dtype, shape }];
    }
    case "InstanceNormalization":
      return [x === undefined ? undefined : { dtype: x.dtype, shape: x.shape }];
    case "LayerNormalization": {
      const xi = need(x, "LayerNormalization X");
      const axis = normAxis(a.int("axis", -1), xi.shape.length, "LayerNormalization");
      const stat = xi.shape.map((d, i) => (i < axis ? d : 1));
      return [
        { dtype: xi.dtype, shape: xi.shape },
        { dtype: "float32", shape: stat },
        { dtype: "float32", shape: stat },
      ];
    }
    case "ArgMax":
    case "ArgMin": {
      const xi = need(x, `${op} input`);
      const axis = normAxis(a.int("axis", 0), xi.shape.length, op);
      const keep = a.int("keepdims", 1) === 1;
      const shape = keep
        ? xi.shape.map((d, i) => (i === axis ? 1 : d))
        : xi.shape.filter((_, i) => i !== axis);
      return [{ dtype: "int64", shape }];
    }
    case "Pad": {
      const xi = need(x, "Pad data");
      const pads = needValue(ins[1], "Pad pads");
      const r = xi.shape.length;
      const axes = ins[3] === undefined
        ? [...Array(r).keys()]
        : needValue(ins[3], "Pad axes").map((ax) => normAxis(ax, r, "Pad"));
      const shape = [...xi.shape];
      axes.forEach((ax, i) => {
        shape[ax] = shape[ax]! + pads[i]! + pads[i + axes.length]!;
      });
      return [{ dtype: xi.dtype, shape }];
    }
    case "Resize": {
      const xi = need(x, "Resize X");
      if (ins[3] !== undefined) {
        return [{ dtype: xi.dtype, shape: [...needValue(ins[3], "Resize sizes")] }];
      }
      const scales = needValue(ins[2], "Resize scales");
      return [{
        dtype: xi.dtype,
        shape: xi.shape.map((d, i) => Math.floor(d * Math.fround(scales[i]!))),
      }];
    }
    case "com.microsoft::MultiHeadAttention": {
      const q = need(x, "MultiHeadAttention query");
      const v = ins[2];
      if (q.shape.length !== 3 || v === undefined || v.shape.length !== 3) return [];
      return [{ dtype: q.dtype, shape: [q.shape[0]!, q.shape[1]!, v.shape[2]!] }];
    }
  }
  if (REDUCE_OPS.has(op)) {
    const xi = need(x, `${op} input`);
    const r = xi.shape.length;
    const axesIn = reduceAxesAreInput(op, opset);
    const list = axesIn
      ? (ins[1] === undefined ? [] : needValue(ins[1], `${op} axes`))
      : a.ints("axes", []);
    const noop = a.int("noop_with_empty_axes", 0) === 1;
    if (list.length === 0 && noop) return [{ dtype: xi.dtype, shape: xi.shape }];
    const axes = list.length === 0 ? [...Array(r).keys()] : list.map((ax) => normAxis(ax, r, op));
    const keep = a.int("keepdims", 1) === 1;
    const shape = keep
      ? xi.shape.map((d, i) => (axes.includes(i) ? 1 : d))
      : xi.shape.filter((_, i) => !axes.includes(i));
    return [{ dtype: xi.dtype, shape }];
  }
  return [];
}
