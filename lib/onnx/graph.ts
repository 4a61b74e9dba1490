/**
 * A small builder for ONNX graphs, written as readable TypeScript instead of byte arrays.
 *
 * API (kept stable; extended, never broken):
 *
 * - `new GraphBuilder(name, { opset })`: default opset 17 (LayerNormalization is 17+).
 * - `g.input(name, type, shape)`: a graph input; string dims are dynamic (`"batch"`).
 * - `g.initializer(name, source)`: a weight; the name should be the checkpoint parameter name.
 *   `source` is a {@linkcode TensorSource}: bytes in memory, a region of an existing file
 *   (written as ONNX external data pointing into that file) or a loader run at write time.
 * - `g.constant(data, type, shape)`: a small constant tensor (stored inline).
 * - `g.op(type, inputs, attrs, { name, domain })` -> one output `Value`;
 *   `g.opN(type, inputs, n, attrs, opts)` -> `n` outputs. `null` inputs are omitted optional
 *   inputs. Numbers in attrs are ints when integral unless the attribute is a known float
 *   attribute (epsilon, alpha, ...); force with `floatAttr(x)` / `intAttr(x)`.
 * - `g.scope(prefix, fn)`: nodes created inside are named `prefix/...` (nestable), so graphs
 *   read like the checkpoint keys (`down_blocks.0/resnets.1/conv1/Conv`).
 * - `g.output(value, name, type?, shape?)`: a graph output (an Identity is inserted when the
 *   value has another name or is an input).
 * - `g.build()` -> {@linkcode OnnxModel}: the graph message plus initializer sources; write it
 *   with `serializeModel()` (inline bytes) or `writeModel()` (external data) from
 *   `model_file.ts`.
 *
 * Values carry their element type where it follows from the op (first input's type, `Cast`'s
 * `to`, int64 for `Shape`/`ArgMax`, bool for comparisons), so outputs rarely need a type.
 *
 * @module
 */
import {
  type AttributeMessage,
  AttributeType,
  DataType,
  type DimensionMessage,
  type GraphMessage,
  type ModelMessage,
  type NodeMessage,
  type TensorMessage,
  type ValueInfoMessage,
} from "./proto.ts";

/** Element types that graphs and initializers use. */
export type ElemType =
  | "float32"
  | "float16"
  | "bfloat16"
  | "float64"
  | "int64"
  | "int32"
  | "int16"
  | "int8"
  | "uint8"
  | "bool";

/** Bytes per element of each {@linkcode ElemType}. */
export const ELEM_SIZE: Readonly<Record<ElemType, number>> = {
  float32: 4,
  float16: 2,
  bfloat16: 2,
  float64: 8,
  int64: 8,
  int32: 4,
  int16: 2,
  int8: 1,
  uint8: 1,
  bool: 1,
};

/** A named edge of the graph. `type` is known for inputs, weights and most op outputs. */
export interface Value {
  readonly name: string;
  readonly type?: ElemType | undefined;
}

/** Typed-array views accepted as tensor data (little-endian bytes are what get stored). */
export type TensorData =
  | Uint8Array
  | Int8Array
  | Uint16Array
  | Int16Array
  | Int32Array
  | Float32Array
  | Float64Array
  | BigInt64Array;

/**
 * Where an initializer's bytes come from:
 * - `data`: bytes in memory (stored inline, or in the separate data file when large);
 * - `file` + `offset` + `length`: a region of an existing file in exactly the graph's dtype and
 *   layout (e.g. an F32 tensor inside a .safetensors), written as external data pointing there;
 * - `load`: computed when the model is written (dtype casts, merged LoRA deltas), so big
 *   converted tensors are produced one at a time.
 */
export type TensorSource =
  | { readonly dtype: ElemType; readonly shape: readonly number[]; readonly data: TensorData }
  | {
    readonly dtype: ElemType;
    readonly shape: readonly number[];
    readonly file: string;
    readonly offset: number;
    readonly length: number;
  }
  | {
    readonly dtype: ElemType;
    readonly shape: readonly number[];
    readonly load: () => Promise<TensorData> | TensorData;
  };

/** An attribute value whose ONNX type is forced (see {@linkcode floatAttr}). */
export interface TypedAttr {
  readonly attrType: "float" | "int" | "floats" | "ints";
  readonly value: number | readonly number[];
}

/** A tensor-valued attribute (e.g. `ConstantOfShape`'s `value`). */
export interface TensorAttr {
  readonly tensor: { dtype: ElemType; shape: readonly number[]; data: TensorData };
}

/** Attribute values; see the module doc for how numbers are typed. */
export type AttrValue =
  | number
  | string
  | readonly number[]
  | readonly string[]
  | TypedAttr
  | TensorAttr;

/** Marks a number (or list) as an ONNX float attribute. @example floatAttr(1) */
export function floatAttr(value: number | readonly number[]): TypedAttr {
  return { attrType: typeof value === "number" ? "float" : "floats", value };
}

/** Marks a number (or list) as an ONNX int attribute. @example intAttr(0) */
export function intAttr(value: number | readonly number[]): TypedAttr {
  return { attrType: typeof value === "number" ? "int" : "ints", value };
}

// Attribute names that are floats in the default ONNX domain whatever their value.
const FLOAT_ATTRS = new Set([
  "alpha",
  "beta",
  "gamma",
  "epsilon",
  "momentum",
  "lambd",
  "bias",
  "value_float",
  "value_floats",
  "spatial_scale",
  "extrapolation_value",
  "cubic_coeff_a",
  "mean",
  "scale",
  "high",
  "low",
  "seed",
  "scales",
]);

/** Optional settings of {@linkcode GraphBuilder}. */
export interface GraphBuilderOptions {
  /** Default-domain opset version (default 17). */
  opset?: number;
  /** Extra opset imports, e.g. `{ "com.microsoft": 1 }` (added automatically when used). */
  domains?: Record<string, number>;
}

/** Options for {@linkcode GraphBuilder.op}. */
export interface OpOptions {
  /** Node name (within the current scope); default `<OpType>` made unique. */
  name?: string;
  /** Operator domain; default the ONNX domain. */
  domain?: string;
  /** Element type of the outputs when it does not follow from the inputs. */
  outputType?: ElemType;
}

/** A built model: the graph message (initializers without data) and their sources. */
export interface OnnxModel {
  /** The ModelProto, whose graph lists no initializers yet (see `initializers`). */
  readonly proto: ModelMessage;
  /** Initializers in graph order, with where their bytes come from. */
  readonly initializers: ReadonlyArray<{ readonly name: string; readonly source: TensorSource }>;
}

/** Product of a shape's dims. */
export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/**
 * Rows `start .. start + count` (along the first axis) of a tensor source, without copying: a file
 * region becomes a smaller region of the same file, bytes in memory a view; a loader is run and
 * cut when the model is written. For weights stored fused that a graph uses in parts (GEGLU's
 * projection, a QKV matrix).
 *
 * @example
 * ```ts
 * import { sliceRows } from "./graph.ts";
 * const w = { dtype: "float32" as const, shape: [4, 2], file: "w.bin", offset: 8, length: 32 };
 * const half = sliceRows(w, 2, 2);
 * console.assert("file" in half && half.offset === 24 && half.length === 16);
 * ```
 */
export function sliceRows(source: TensorSource, start: number, count: number): TensorSource {
  const [rows, ...rest] = source.shape;
  if (rows === undefined || start < 0 || count < 0 || start + count > rows) {
    throw new RangeError(
      `Cannot take rows ${start}..${start + count} of a tensor of shape [${source.shape}]`,
    );
  }
  const shape = [count, ...rest];
  const rowBytes = byteLengthOf(source.dtype, rest);
  if ("file" in source) {
    return {
      dtype: source.dtype,
      shape,
      file: source.file,
      offset: source.offset + start * rowBytes,
      length: count * rowBytes,
    };
  }
  const cut = (data: TensorData): TensorData => {
    const size = data.BYTES_PER_ELEMENT;
    if (rowBytes % size === 0) {
      return data.subarray(start * rowBytes / size, (start + count) * rowBytes / size);
    }
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    return bytes.subarray(start * rowBytes, (start + count) * rowBytes);
  };
  if ("data" in source) return { dtype: source.dtype, shape, data: cut(source.data) };
  const load = source.load;
  return { dtype: source.dtype, shape, load: async () => cut(await load()) };
}

/** Byte length a tensor of this dtype and shape must have. */
export function byteLengthOf(dtype: ElemType, shape: readonly number[]): number {
  return numel(shape) * ELEM_SIZE[dtype];
}

/** ONNX IR version that goes with a default-domain opset (onnx/docs/Versioning.md table). */
export function irVersionFor(opset: number): number {
  if (opset <= 18) return 8;
  if (opset <= 20) return 9;
  if (opset <= 22) return 10;
  return 11;
}

const COMPARISON_OPS = new Set([
  "Equal",
  "Less",
  "LessOrEqual",
  "Greater",
  "GreaterOrEqual",
  "Not",
  "And",
  "Or",
  "Xor",
  "IsNaN",
  "IsInf",
]);
const INT64_OPS = new Set(["Shape", "Size", "ArgMax", "ArgMin", "NonZero"]);

const ELEM_BY_CODE = new Map<number, ElemType>(
  (Object.entries(DataType) as Array<[string, number]>)
    .filter(([k]) => k in ELEM_SIZE)
    .map(([k, v]) => [v, k as ElemType]),
);

/** Builds one ONNX graph. See the module documentation for the API. */
export class GraphBuilder {
  readonly name: string;
  readonly opset: number;
  #domains: Map<string, number>;
  #nodes: NodeMessage[] = [];
  #inputs: ValueInfoMessage[] = [];
  #outputs: ValueInfoMessage[] = [];
  #initializers: Array<{ name: string; source: TensorSource }> = [];
  #inlineInitializers: TensorMessage[] = [];
  #names = new Set<string>();
  #nodeNames = new Set<string>();
  #scope: string[] = [];
  #counter = 0;

  constructor(name: string, options: GraphBuilderOptions = {}) {
    this.name = name;
    this.opset = options.opset ?? 17;
    this.#domains = new Map(Object.entries(options.domains ?? {}));
  }

  /** Number of nodes so far. */
  get nodeCount(): number {
    return this.#nodes.length;
  }

  /** Declares a graph input. String dims are dynamic (named) dimensions. */
  input(name: string, type: ElemType, shape: ReadonlyArray<number | string>): Value {
    this.#claim(name, "input");
    this.#inputs.push(valueInfo(name, type, shape));
    return { name, type };
  }

  /** Declares a graph output; inserts an Identity when the value is named otherwise. */
  output(
    value: Value,
    name: string,
    type?: ElemType,
    shape?: ReadonlyArray<number | string>,
  ): void {
    const elem = type ?? value.type;
    if (elem === undefined) {
      throw new TypeError(
        `Cannot declare output "${name}": its element type is unknown; pass the type`,
      );
    }
    let source = value;
    const isInput = this.#inputs.some((i) => i.name === value.name);
    if (value.name !== name || isInput) {
      this.#claim(name, "output");
      this.#nodes.push({
        input: [value.name],
        output: [name],
        name: this.#nodeName(`output_${name}`),
        opType: "Identity",
      });
      source = { name, type: elem };
    }
    this.#outputs.push(valueInfo(source.name, elem, shape));
  }

  /** Adds a named initializer (a weight). Names must be unique. */
  initializer(name: string, source: TensorSource): Value {
    checkSource(name, source);
    this.#claim(name, "initializer");
    this.#initializers.push({ name, source });
    return { name, type: source.dtype };
  }

  /** Adds a small constant tensor, stored inline in the model. */
  constant(
    data: readonly number[] | TensorData,
    type: ElemType,
    shape: readonly number[],
  ): Value {
    const name = this.#unique(this.#prefixed("const"));
    const bytes = toBytes(data, type);
    if (bytes.length !== byteLengthOf(type, shape)) {
      throw new TypeError(
        `Cannot make constant "${name}": ${bytes.length} bytes do not fit ${type} [${shape}]`,
      );
    }
    this.#inlineInitializers.push({
      name,
      dims: [...shape],
      dataType: DataType[type],
      rawData: bytes,
    });
    return { name, type };
  }

  /** Shorthand for a 1-D int64 constant (shapes, axes, indices). */
  ints(values: readonly number[]): Value {
    return this.constant(BigInt64Array.from(values, (v) => BigInt(v)), "int64", [values.length]);
  }

  /** Shorthand for a float32 scalar constant (rank 0). */
  scalar(value: number, type: ElemType = "float32"): Value {
    return this.constant([value], type, []);
  }

  /** Adds one node with a single output. */
  op(
    type: string,
    inputs: ReadonlyArray<Value | null>,
    attrs: Record<string, AttrValue> = {},
    opts: OpOptions = {},
  ): Value {
    return this.opN(type, inputs, 1, attrs, opts)[0]!;
  }

  /** Adds one node with `n` outputs. */
  opN(
    type: string,
    inputs: ReadonlyArray<Value | null>,
    n: number,
    attrs: Record<string, AttrValue> = {},
    opts: OpOptions = {},
  ): Value[] {
    const nodeName = this.#nodeName(opts.name ?? type);
    const domain = opts.domain ?? "";
    if (domain !== "" && domain !== "ai.onnx" && !this.#domains.has(domain)) {
      this.#domains.set(domain, 1);
    }
    const outType = opts.outputType ?? inferType(type, inputs, attrs);
    const outputs: Value[] = [];
    for (let i = 0; i < n; i++) {
      const name = this.#unique(n === 1 ? nodeName : `${nodeName}:${i}`);
      outputs.push({ name, type: outType });
    }
    // Trailing omitted inputs are dropped; inner ones become "" as ONNX requires.
    const names = inputs.map((v) => v?.name ?? "");
    while (names.length > 0 && names[names.length - 1] === "") names.pop();
    const node: NodeMessage = {
      input: names,
      output: outputs.map((o) => o.name),
      name: nodeName,
      opType: type,
    };
    if (domain !== "") node.domain = domain;
    const attribute = Object.entries(attrs).map(([k, v]) => toAttribute(k, v));
    if (attribute.length > 0) node.attribute = attribute;
    this.#nodes.push(node);
    return outputs;
  }

  /** Runs `fn` with node names prefixed by `prefix/` (nested scopes join with `/`). */
  scope<T>(prefix: string, fn: () => T): T {
    this.#scope.push(prefix);
    try {
      return fn();
    } finally {
      this.#scope.pop();
    }
  }

  /** The current scope prefix, e.g. `"encoder/layers.0"` (empty at top level). */
  get currentScope(): string {
    return this.#scope.join("/");
  }

  /** Finishes the graph. The builder may not be used afterwards. */
  build(options: { docString?: string; metadata?: Record<string, string> } = {}): OnnxModel {
    if (this.#outputs.length === 0) {
      throw new RangeError(`Cannot build graph "${this.name}": it has no outputs; add one`);
    }
    const graph: GraphMessage = {
      name: this.name,
      node: this.#nodes,
      initializer: this.#inlineInitializers,
      input: this.#inputs,
      output: this.#outputs,
    };
    const opsetImport = [{ domain: "", version: this.opset }];
    for (const [domain, version] of this.#domains) opsetImport.push({ domain, version });
    const proto: ModelMessage = {
      irVersion: irVersionFor(this.opset),
      opsetImport,
      producerName: "denoise",
      producerVersion: "0.1.0",
      graph,
    };
    if (options.docString !== undefined) proto.docString = options.docString;
    if (options.metadata !== undefined) {
      proto.metadataProps = Object.entries(options.metadata).map(([key, value]) => ({
        key,
        value,
      }));
    }
    return { proto, initializers: this.#initializers };
  }

  #prefixed(name: string): string {
    return this.#scope.length === 0 ? name : `${this.#scope.join("/")}/${name}`;
  }

  #nodeName(base: string): string {
    const full = this.#prefixed(base);
    let name = full;
    while (this.#nodeNames.has(name) || this.#names.has(name)) name = `${full}_${++this.#counter}`;
    this.#nodeNames.add(name);
    return name;
  }

  #unique(base: string): string {
    let name = base;
    while (this.#names.has(name)) name = `${base}_${++this.#counter}`;
    this.#names.add(name);
    return name;
  }

  #claim(name: string, what: string): void {
    if (this.#names.has(name)) {
      throw new RangeError(
        `Cannot add ${what} "${name}" to graph "${this.name}": the name is taken; pick another`,
      );
    }
    this.#names.add(name);
  }
}

function valueInfo(
  name: string,
  type: ElemType,
  shape: ReadonlyArray<number | string> | undefined,
): ValueInfoMessage {
  const tensorType: ValueInfoMessage["type"]["tensorType"] = { elemType: DataType[type] };
  if (shape !== undefined) {
    tensorType.shape = {
      dim: shape.map((d): DimensionMessage =>
        typeof d === "number" ? { dimValue: d } : { dimParam: d }
      ),
    };
  }
  return { name, type: { tensorType } };
}

function inferType(
  opType: string,
  inputs: ReadonlyArray<Value | null>,
  attrs: Record<string, AttrValue>,
): ElemType | undefined {
  if (opType === "Cast") {
    const to = attrs["to"];
    return typeof to === "number" ? ELEM_BY_CODE.get(to) : undefined;
  }
  if (COMPARISON_OPS.has(opType)) return "bool";
  if (INT64_OPS.has(opType)) return "int64";
  if (opType === "ConstantOfShape") {
    const v = attrs["value"];
    return v !== undefined && typeof v === "object" && "tensor" in v ? v.tensor.dtype : "float32";
  }
  if (opType === "Where") return inputs[1]?.type;
  return inputs.find((v) => v !== null)?.type ?? undefined;
}

/** ONNX data-type code of an element type, e.g. for `Cast`'s `to`. @example onnxType("float16") */
export function onnxType(type: ElemType): number {
  return DataType[type];
}

function toAttribute(name: string, value: AttrValue): AttributeMessage {
  if (typeof value === "string") {
    return { name, type: AttributeType.string, s: new TextEncoder().encode(value) };
  }
  if (typeof value === "number") {
    if (FLOAT_ATTRS.has(name) || !Number.isInteger(value)) {
      return { name, type: AttributeType.float, f: value };
    }
    return { name, type: AttributeType.int, i: value };
  }
  if (isTypedAttr(value)) {
    switch (value.attrType) {
      case "float":
        return { name, type: AttributeType.float, f: value.value as number };
      case "int":
        return { name, type: AttributeType.int, i: value.value as number };
      case "floats":
        return { name, type: AttributeType.floats, floats: [...(value.value as number[])] };
      case "ints":
        return { name, type: AttributeType.ints, ints: [...(value.value as number[])] };
    }
  }
  if ("tensor" in value) {
    const t = value.tensor;
    return {
      name,
      type: AttributeType.tensor,
      t: { dims: [...t.shape], dataType: DataType[t.dtype], rawData: toBytes(t.data, t.dtype) },
    };
  }
  const list = value as ReadonlyArray<number | string>;
  if (list.length > 0 && typeof list[0] === "string") {
    const enc = new TextEncoder();
    return { name, type: AttributeType.strings, strings: list.map((s) => enc.encode(String(s))) };
  }
  const nums = list as readonly number[];
  if (FLOAT_ATTRS.has(name) || nums.some((x) => !Number.isInteger(x))) {
    return { name, type: AttributeType.floats, floats: [...nums] };
  }
  return { name, type: AttributeType.ints, ints: [...nums] };
}

function isTypedAttr(value: object): value is TypedAttr {
  return "attrType" in value;
}

/** Little-endian bytes of `data` as `type` (plain number arrays are converted). */
export function toBytes(data: readonly number[] | TensorData, type: ElemType): Uint8Array {
  if (ArrayBuffer.isView(data)) {
    return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  }
  const arr = data as readonly number[];
  switch (type) {
    case "float32":
      return new Uint8Array(Float32Array.from(arr).buffer);
    case "float64":
      return new Uint8Array(Float64Array.from(arr).buffer);
    case "int64":
      return new Uint8Array(BigInt64Array.from(arr, (v) => BigInt(v)).buffer);
    case "int32":
      return new Uint8Array(Int32Array.from(arr).buffer);
    case "int16":
      return new Uint8Array(Int16Array.from(arr).buffer);
    case "int8":
      return new Uint8Array(Int8Array.from(arr).buffer);
    case "uint8":
    case "bool":
      return Uint8Array.from(arr);
    case "float16":
      return new Uint8Array(Uint16Array.from(arr, float32ToFloat16Bits).buffer);
    case "bfloat16":
      return new Uint8Array(Uint16Array.from(arr, float32ToBfloat16Bits).buffer);
  }
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** IEEE half-precision bits of a number, rounding to nearest even. */
export function float32ToFloat16Bits(value: number): number {
  f32[0] = value;
  const x = u32[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 : 0); // inf / nan
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow -> inf
  if (e <= 0) {
    if (e < -10) return sign; // underflow -> 0
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    let r = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    if (rem > half || (rem === half && (r & 1) === 1)) r++;
    return sign | r;
  }
  let r = mant >>> 13;
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (r & 1) === 1)) {
    r++;
    if (r === 0x400) {
      r = 0;
      e++;
      if (e >= 0x1f) return sign | 0x7c00;
    }
  }
  return sign | (e << 10) | r;
}

/** bfloat16 bits of a number, rounding to nearest even. */
export function float32ToBfloat16Bits(value: number): number {
  f32[0] = value;
  const x = u32[0]!;
  if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff) !== 0) return (x >>> 16) | 0x40;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

function checkSource(name: string, source: TensorSource): void {
  for (const d of source.shape) {
    if (!Number.isInteger(d) || d < 0) {
      throw new RangeError(`Cannot add initializer "${name}": bad shape [${source.shape}]`);
    }
  }
  const want = byteLengthOf(source.dtype, source.shape);
  if ("data" in source && source.data.byteLength !== want) {
    throw new TypeError(
      `Cannot add initializer "${name}": ${source.data.byteLength} bytes given, ` +
        `${source.dtype} [${source.shape}] needs ${want}`,
    );
  }
  if ("file" in source && source.length !== want) {
    throw new TypeError(
      `Cannot add initializer "${name}": file region of ${source.length} bytes, ` +
        `${source.dtype} [${source.shape}] needs ${want}`,
    );
  }
}
