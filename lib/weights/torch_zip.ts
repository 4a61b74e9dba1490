/**
 * PyTorch checkpoints (.ckpt, .pt, .pth, .bin) in the torch.save ZIP format, read through the
 * restricted unpickler in pickle.ts.
 *
 * Format (torch/serialization.py `_save` / `_load`, torch/csrc/jit/serialization/
 * pickler.cpp): a ZIP whose entries share one top folder `<name>/`: `data.pkl` (protocol-2
 * pickle of the saved object), `data/<key>` (raw little-endian storage bytes), `version`, and in
 * newer files `byteorder`. In the pickle, each storage is a persistent id
 * `("storage", torch.<Type>Storage, key, location, numel)` and tensors are rebuilt by
 * `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks)`.
 *
 * The allow-list below is everything a weights file needs; any other global is refused (see
 * pickle.ts). Tensors are rebuilt lazily as {@linkcode TensorRef}s, so listing a checkpoint reads
 * only its pickle, and each tensor's bytes are read (and made contiguous) on demand.
 *
 * @module
 */

import { bytesToFloat32, type Dtype, dtypeByteLength, shapeSize } from "../tensor/dtype.ts";
import { contiguousStrides, gatherStrided, stridedExtent, type Tensor } from "../tensor/tensor.ts";
import { type ByteSource, fileSource, memorySource } from "./byte_source.ts";
import {
  isTuple,
  PickleGlobal,
  PickleObject,
  type PickleValue,
  plainGlobals,
  unpickle,
  UnsafePickleError,
} from "./pickle.ts";
import { ZipArchive } from "./zip.ts";

/** A torch storage referenced by the pickle: one `data/<key>` entry of the archive. */
export class StorageRef {
  /** Storage key (the entry is `<prefix>/data/<key>`). */
  readonly key: string;
  /** Element type. */
  readonly dtype: Dtype;
  /** Number of elements. */
  readonly numel: number;
  /** Device the storage was saved from ("cpu", "cuda:0"); informational. */
  readonly location: string;

  constructor(key: string, dtype: Dtype, numel: number, location: string) {
    this.key = key;
    this.dtype = dtype;
    this.numel = numel;
    this.location = location;
  }
}

/** A tensor described by the pickle, not yet read: a strided view into a storage. */
export class TensorRef {
  /** Element type (the storage's). */
  readonly dtype: Dtype;
  /** Dimensions. */
  readonly shape: number[];
  /** Strides in elements. */
  readonly stride: number[];
  /** Offset in elements into the storage. */
  readonly storageOffset: number;
  /** The storage viewed. */
  readonly storage: StorageRef;

  constructor(
    storage: StorageRef,
    storageOffset: number,
    shape: number[],
    stride: number[],
  ) {
    this.storage = storage;
    this.dtype = storage.dtype;
    this.storageOffset = storageOffset;
    this.shape = shape;
    this.stride = stride;
  }
}

/** A materialised tensor; {@linkcode isTensor} recognises these. */
class LoadedTensor implements Tensor {
  dtype: Dtype;
  shape: number[];
  data: Uint8Array;
  constructor(dtype: Dtype, shape: number[], data: Uint8Array) {
    this.dtype = dtype;
    this.shape = shape;
    this.data = data;
  }
}

/** True for tensors returned by {@linkcode loadTorchFile}. */
export function isTensor(value: unknown): value is Tensor {
  return value instanceof LoadedTensor;
}

const STORAGE_DTYPES: Record<string, Dtype> = {
  FloatStorage: "F32",
  DoubleStorage: "F64",
  HalfStorage: "F16",
  BFloat16Storage: "BF16",
  LongStorage: "I64",
  IntStorage: "I32",
  ShortStorage: "I16",
  CharStorage: "I8",
  ByteStorage: "U8",
  BoolStorage: "BOOL",
};

function int(v: PickleValue, what: string): number {
  if (typeof v !== "number" || !Number.isSafeInteger(v)) {
    throw new RangeError(`Invalid torch pickle: ${what} is not an integer`);
  }
  return v;
}

function intList(v: PickleValue, what: string): number[] {
  if (!Array.isArray(v)) throw new RangeError(`Invalid torch pickle: ${what} is not a tuple`);
  return v.map((x, i) => int(x as PickleValue, `${what}[${i}]`));
}

function rebuildTensor(args: PickleValue[]): TensorRef {
  const [storage, offset, size, stride] = args;
  if (!(storage instanceof StorageRef)) {
    throw new RangeError("Invalid torch pickle: a tensor is rebuilt from something not a storage");
  }
  const ref = new TensorRef(
    storage,
    int(offset ?? null, "storage offset"),
    intList(size ?? null, "size"),
    intList(stride ?? null, "stride"),
  );
  const end = stridedExtent(ref.shape, ref.stride, ref.storageOffset);
  if (end > storage.numel) {
    throw new RangeError(
      `Invalid torch pickle: a ${ref.dtype} tensor [${ref.shape.join(", ")}] reaches element ` +
        `${end} of storage "${storage.key}", which has ${storage.numel}`,
    );
  }
  return ref;
}

/** numpy scalar from its dtype and bytes (numpy/_core/src/multiarray/scalarapi.c). */
function numpyScalar(args: PickleValue[]): PickleValue {
  const [dtype, data] = args;
  if (!(dtype instanceof PickleObject) || dtype.className !== "numpy.dtype") {
    throw new RangeError("Invalid pickle: numpy scalar without a numpy.dtype");
  }
  const spec = dtype.args[0];
  const state = dtype.state;
  const order = Array.isArray(state) ? state[1] : "<";
  if (typeof spec !== "string" || !(data instanceof Uint8Array)) {
    throw new RangeError("Invalid pickle: malformed numpy scalar");
  }
  const m = /^([fiub])(\d)$/.exec(spec);
  const size = m ? Number(m[2]) : 0;
  if (!m || data.byteLength !== size) {
    throw new RangeError(`Unsupported numpy scalar of dtype "${spec}"; only bool, int and float`);
  }
  const le = order !== ">";
  const v = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const kind = m[1];
  if (kind === "b") return data[0] !== 0;
  if (kind === "f") {
    if (size === 8) return v.getFloat64(0, le);
    if (size === 4) return v.getFloat32(0, le);
    if (size === 2) {
      const h = v.getUint16(0, le);
      return bytesToFloat32(new Uint8Array([h & 0xff, h >> 8]), "F16")[0]!;
    }
  }
  if (kind === "i" || kind === "u") {
    if (size === 1) return kind === "i" ? v.getInt8(0) : v.getUint8(0);
    if (size === 2) return kind === "i" ? v.getInt16(0, le) : v.getUint16(0, le);
    if (size === 4) return kind === "i" ? v.getInt32(0, le) : v.getUint32(0, le);
    if (size === 8) {
      const big = kind === "i" ? v.getBigInt64(0, le) : v.getBigUint64(0, le);
      return Number.isSafeInteger(Number(big)) ? Number(big) : big;
    }
  }
  throw new RangeError(`Unsupported numpy scalar of dtype "${spec}"`);
}

/** Every Python global a torch weights file may name, and what each builds. */
function torchGlobals(): Map<string, PickleGlobal> {
  const g = new Map<string, PickleGlobal>(plainGlobals());
  const add = (name: string, call?: (args: PickleValue[]) => PickleValue, tag?: unknown) =>
    g.set(name, new PickleGlobal(name, call, tag));
  add("torch._utils._rebuild_tensor_v2", rebuildTensor);
  add("torch._utils._rebuild_tensor", rebuildTensor);
  // Parameters are plain tensors here: requires_grad and hooks do not matter for weights.
  add("torch._utils._rebuild_parameter", (args) => args[0] ?? null);
  add("torch._utils._rebuild_parameter_with_state", (args) => args[0] ?? null);
  add("torch.Size", (args) => Object.freeze(intList(args[0] ?? null, "torch.Size")));
  // Tensor subclasses: torch._tensor._rebuild_from_type_v2(func, type, args, state).
  add("torch.Tensor");
  add("torch.nn.parameter.Parameter");
  add("torch._tensor._rebuild_from_type_v2", (args) => {
    const [func, type, fargs] = args;
    if (
      !(func instanceof PickleGlobal) || !(type instanceof PickleGlobal) ||
      !["torch.Tensor", "torch.nn.parameter.Parameter"].includes(type.qualname) ||
      !Array.isArray(fargs)
    ) {
      throw new UnsafePickleError("Refusing a tensor subclass other than Tensor or Parameter");
    }
    return func.call(fargs);
  });
  for (const [type, dtype] of Object.entries(STORAGE_DTYPES)) {
    add(`torch.${type}`, undefined, dtype);
  }
  // Lightning checkpoints store global_step and scores as numpy scalars:
  // numpy.core.multiarray.scalar(numpy.dtype("i8") + BUILD state, raw bytes).
  add("numpy.dtype", (args) => new PickleObject("numpy.dtype", args));
  for (const mod of ["numpy.core.multiarray", "numpy._core.multiarray"]) {
    add(`${mod}.scalar`, numpyScalar);
  }
  // Lightning saves its checkpoint callback's settings; kept as inert data.
  for (
    const cls of [
      "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint",
      "lightning.pytorch.callbacks.model_checkpoint.ModelCheckpoint",
    ]
  ) add(cls, (args) => new PickleObject(cls, args));
  return g;
}

const GLOBALS = torchGlobals();

function build(obj: PickleValue, state: PickleValue): boolean {
  // OrderedDict state is its __dict__ (torch puts `_metadata` there); tensors' is Python-only
  // attributes. Neither affects the weights, so the state is dropped.
  if (obj instanceof Map || obj instanceof TensorRef) return true;
  if (obj instanceof PickleObject) {
    obj.state = state;
    return true;
  }
  return false;
}

/** Options for reading torch files. */
export interface TorchLoadOptions {
  /** Largest data.pkl accepted (default 256 MiB). */
  maxPickleBytes?: number;
  /**
   * Most bytes that materialising tensors may allocate, as a multiple of the archive size
   * (default 4). Views that share a storage each get a copy, so a hostile pickle could otherwise
   * ask for the same gigabytes thousands of times.
   */
  maxExpansion?: number;
}

/** A torch.save archive whose pickle has been read; tensor bytes are read on demand. */
export class TorchArchive {
  /** The object torch.save stored, with tensors as {@linkcode TensorRef}s. */
  readonly root: PickleValue;
  /** Path inside the ZIP common to all entries (e.g. "archive"). */
  readonly prefix: string;
  #zip: ZipArchive;
  #budget: number;

  private constructor(zip: ZipArchive, prefix: string, root: PickleValue, budget: number) {
    this.#zip = zip;
    this.prefix = prefix;
    this.root = root;
    this.#budget = budget;
  }

  /** Name of the file, for messages. */
  get name(): string {
    return this.#zip.name;
  }

  /** Reads the archive's pickle from a ByteSource (taking ownership of it). */
  static async fromSource(
    source: ByteSource,
    options: TorchLoadOptions = {},
  ): Promise<TorchArchive> {
    let zip: ZipArchive | undefined;
    try {
      zip = await ZipArchive.open(source);
      const name = source.name;
      const pkls = [...zip.entries.keys()].filter((n) => /^[^/]+\/data\.pkl$/.test(n));
      if (pkls.length !== 1) {
        throw new RangeError(
          `"${name}" is not a torch.save archive: expected one "<name>/data.pkl" entry, ` +
            `found ${pkls.length}`,
        );
      }
      const prefix = pkls[0]!.slice(0, -"/data.pkl".length);
      const order = zip.entries.get(`${prefix}/byteorder`);
      if (order) {
        const text = new TextDecoder().decode(await zip.read(order.name)).trim();
        if (text !== "little") {
          throw new RangeError(`"${name}" was saved with byte order "${text}"; only little works`);
        }
      }
      const z = zip;
      const storages = new Map<string, StorageRef>();
      const persistentLoad = (pid: PickleValue): PickleValue => {
        if (!isTuple(pid) || pid[0] !== "storage" || pid.length < 5) {
          throw new UnsafePickleError(
            `Refusing to load "${name}": unknown persistent id ${JSON.stringify(String(pid))}`,
          );
        }
        const [, type, key, location, numel] = pid;
        const dtype = type instanceof PickleGlobal ? type.tag : undefined;
        if (typeof dtype !== "string" || typeof key !== "string") {
          throw new RangeError(`Invalid torch pickle in "${name}": a storage id is malformed`);
        }
        const count = int(numel ?? null, "storage size");
        const entry = z.entries.get(`${prefix}/data/${key}`);
        if (!entry) {
          throw new RangeError(
            `Invalid torch archive "${name}": the pickle references storage "${key}" but the ` +
              `archive has no entry "${prefix}/data/${key}"`,
          );
        }
        const bytes = dtypeByteLength(dtype as Dtype, count);
        if (entry.size < bytes) {
          throw new RangeError(
            `Invalid torch archive "${name}": storage "${key}" needs ${bytes} bytes, entry has ` +
              `${entry.size}`,
          );
        }
        const known = storages.get(key);
        if (known) return known;
        const ref = new StorageRef(key, dtype as Dtype, count, String(location));
        storages.set(key, ref);
        return ref;
      };
      const pickle = await zip.read(pkls[0]!);
      const root = unpickle(pickle, {
        globals: GLOBALS,
        persistentLoad,
        build,
        name,
        maxBytes: options.maxPickleBytes ?? 256 * 2 ** 20,
      });
      return new TorchArchive(
        zip,
        prefix,
        root,
        source.size * (options.maxExpansion ?? 4) + 2 ** 20,
      );
    } catch (error) {
      if (zip) zip.close();
      else source.close();
      throw error;
    }
  }

  /** Opens a checkpoint file; only its ZIP directory and pickle are read. */
  static async open(path: string, options: TorchLoadOptions = {}): Promise<TorchArchive> {
    return await TorchArchive.fromSource(await fileSource(path), options);
  }

  /** Reads one tensor's bytes, contiguous and little-endian. */
  async readTensor(ref: TensorRef): Promise<Tensor> {
    const es = dtypeByteLength(ref.dtype, 1);
    const numel = shapeSize(ref.shape);
    if (numel * es > this.#budget) {
      throw new RangeError(
        `Refusing to read more tensor data from "${this.name}" than ${this.#budget} bytes; ` +
          `its tensors repeat storages (raise maxExpansion if the file is trusted)`,
      );
    }
    this.#budget -= numel * es;
    const end = stridedExtent(ref.shape, ref.stride, ref.storageOffset);
    const start = ref.storageOffset;
    const raw = await this.#zip.readRange(
      `${this.prefix}/data/${ref.storage.key}`,
      start * es,
      (end - start) * es,
    );
    const data = gatherStrided(raw, ref.dtype, ref.shape, ref.stride, ref.storageOffset, start);
    return new LoadedTensor(ref.dtype, [...ref.shape], data);
  }

  /**
   * Where a tensor's bytes lie in the checkpoint file when they can be used in place: the
   * storage entry is stored uncompressed and the view is contiguous. Undefined otherwise.
   */
  async byteRange(ref: TensorRef): Promise<{ byteOffset: number; byteLength: number } | undefined> {
    const es = dtypeByteLength(ref.dtype, 1);
    const strides = contiguousStrides(ref.shape);
    if (ref.shape.some((d, i) => d !== 1 && ref.stride[i] !== strides[i])) return undefined;
    const at = await this.#zip.storedOffset(`${this.prefix}/data/${ref.storage.key}`);
    if (at === undefined) return undefined;
    return { byteOffset: at + ref.storageOffset * es, byteLength: shapeSize(ref.shape) * es };
  }

  /** A copy of `root` with every TensorRef replaced by its loaded Tensor. */
  async materialize(): Promise<PickleValue> {
    const done = new Map<unknown, PickleValue>();
    const walk = async (v: PickleValue): Promise<PickleValue> => {
      if (v === null || typeof v !== "object" || v instanceof Uint8Array) return v;
      const seen = done.get(v);
      if (seen !== undefined) return seen;
      if (v instanceof TensorRef) {
        const t = await this.readTensor(v);
        done.set(v, t);
        return t;
      }
      if (Array.isArray(v)) {
        const out: PickleValue[] = [];
        done.set(v, out);
        for (const x of v) out.push(await walk(x));
        return isTuple(v) ? Object.freeze(out) : out;
      }
      if (v instanceof Map) {
        const out = new Map<PickleValue, PickleValue>();
        done.set(v, out);
        for (const [k, x] of v) out.set(k, await walk(x));
        return out;
      }
      if (v instanceof Set) {
        const out = new Set<PickleValue>();
        done.set(v, out);
        for (const x of v) out.add(await walk(x));
        return out;
      }
      return v;
    };
    return await walk(this.root);
  }

  /**
   * The tensors of the checkpoint by dotted name: a top-level "state_dict" dict is unwrapped,
   * nested dicts and lists are flattened with "." (`string_to_param.*`, `0`, `1`...), and values
   * that are not tensors are skipped.
   */
  tensorRefs(): Map<string, TensorRef> {
    return flattenTensors(this.root);
  }

  /** Closes the file. */
  close(): void {
    this.#zip.close();
  }

  /** Same as {@linkcode TorchArchive.close}, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }
}

function flattenTensors(root: PickleValue): Map<string, TensorRef> {
  let top = root;
  if (top instanceof Map) {
    const sd = top.get("state_dict");
    if (sd instanceof Map) top = sd;
  }
  const out = new Map<string, TensorRef>();
  const active = new Set<unknown>();
  const walk = (v: PickleValue, prefix: string) => {
    if (v instanceof TensorRef) {
      if (out.has(prefix)) {
        throw new RangeError(`Two tensors flatten to the same name "${prefix}"`);
      }
      out.set(prefix, v);
      return;
    }
    if (v === null || typeof v !== "object" || active.has(v)) return;
    const entries: Array<[string, PickleValue]> = v instanceof Map
      ? [...v].filter(([k]) => typeof k === "string" || typeof k === "number")
        .map(([k, x]) => [String(k), x])
      : Array.isArray(v)
      ? v.map((x, i) => [String(i), x as PickleValue])
      : [];
    active.add(v);
    for (const [k, x] of entries) walk(x, prefix === "" ? k : `${prefix}.${k}`);
    active.delete(v);
  };
  walk(top, "");
  return out;
}

/**
 * Loads a torch.save file (path or bytes) through the restricted unpickler and returns the
 * saved object with every tensor read: dicts and OrderedDicts become Maps, lists and tuples
 * arrays (tuples frozen), tensors {@linkcode Tensor}s.
 *
 * @example
 * ```ts ignore
 * import { loadTorchFile } from "./torch_zip.ts";
 * const emb = await loadTorchFile("bad-hands-5.pt") as Map<string, unknown>;
 * console.log(emb.get("string_to_param"));
 * ```
 */
export async function loadTorchFile(
  input: string | Uint8Array,
  options: TorchLoadOptions = {},
): Promise<PickleValue> {
  const archive = typeof input === "string"
    ? await TorchArchive.open(input, options)
    : await TorchArchive.fromSource(memorySource(input), options);
  try {
    return await archive.materialize();
  } finally {
    archive.close();
  }
}

/**
 * Loads the tensors of a torch.save file by dotted name (see {@linkcode TorchArchive.tensorRefs}
 * for how nesting and "state_dict" are flattened).
 *
 * @example
 * ```ts ignore
 * import { loadTorchStateDict } from "./torch_zip.ts";
 * const sd = await loadTorchStateDict("model.ckpt");
 * console.log(sd.get("model.diffusion_model.input_blocks.0.0.weight")?.shape);
 * ```
 */
export async function loadTorchStateDict(
  input: string | Uint8Array,
  options: TorchLoadOptions = {},
): Promise<Map<string, Tensor>> {
  const archive = typeof input === "string"
    ? await TorchArchive.open(input, options)
    : await TorchArchive.fromSource(memorySource(input), options);
  try {
    const out = new Map<string, Tensor>();
    const cache = new Map<TensorRef, Tensor>();
    for (const [name, ref] of archive.tensorRefs()) {
      let t = cache.get(ref);
      if (!t) {
        t = await archive.readTensor(ref);
        cache.set(ref, t);
      }
      out.set(name, t);
    }
    return out;
  } finally {
    archive.close();
  }
}
