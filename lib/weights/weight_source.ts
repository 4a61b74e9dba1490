/**
 * One interface over every weight file format: safetensors, and torch.save checkpoints (.ckpt,
 * .pt, .pth, .bin) through the restricted unpickler. The format is chosen from the file's first
 * bytes, never from its name.
 *
 * @module
 */

import { bytesToFloat32, type Dtype, dtypeByteLength, shapeSize } from "../tensor/dtype.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { SafetensorsFile } from "./safetensors.ts";
import { type TensorRef, TorchArchive, type TorchLoadOptions } from "./torch_zip.ts";

/** Type and shape of one weight. */
export interface WeightInfo {
  /** Element type as stored. */
  dtype: Dtype;
  /** Dimensions, outermost first. */
  shape: number[];
}

/** Where a weight's bytes lie, as they are, in a file (for ONNX external data). */
export interface WeightLocation {
  /** The file. */
  path: string;
  /** Absolute offset of the first byte. */
  byteOffset: number;
  /** Number of bytes (contiguous, little-endian). */
  byteLength: number;
}

/** A file of named tensors, read on demand. */
export interface WeightSource {
  /** The file path. */
  readonly path: string;
  /** Detected format. */
  readonly format: "safetensors" | "torch";
  /** safetensors `__metadata__` (empty for torch files). */
  readonly metadata: Record<string, string>;
  /** Tensor names in file order. */
  names(): string[];
  /** True when the file holds `name`. */
  has(name: string): boolean;
  /** Type and shape of one tensor; throws a RangeError naming the file when absent. */
  info(name: string): WeightInfo;
  /** One tensor's contiguous bytes. */
  read(name: string): Promise<Tensor>;
  /** One tensor converted to float32. */
  readFloat32(name: string): Promise<Float32Array>;
  /** Where the tensor's bytes can be used in place, or undefined when they must be copied. */
  location(name: string): Promise<WeightLocation | undefined>;
  /** Releases the file. */
  close(): void;
}

function missing(path: string, name: string, count: number): RangeError {
  return new RangeError(`Tensor "${name}" is not in "${path}" (it has ${count} tensors)`);
}

class SafetensorsSource implements WeightSource {
  readonly path: string;
  readonly format = "safetensors" as const;
  readonly metadata: Record<string, string>;
  #file: SafetensorsFile;

  constructor(path: string, file: SafetensorsFile) {
    this.path = path;
    this.#file = file;
    this.metadata = file.metadata;
  }
  names(): string[] {
    return [...this.#file.tensors.keys()];
  }
  has(name: string): boolean {
    return this.#file.tensors.has(name);
  }
  info(name: string): WeightInfo {
    const t = this.#file.info(name);
    return { dtype: t.dtype, shape: [...t.shape] };
  }
  async read(name: string): Promise<Tensor> {
    const t = this.#file.info(name);
    return { dtype: t.dtype, shape: [...t.shape], data: await this.#file.read(name) };
  }
  readFloat32(name: string): Promise<Float32Array> {
    return this.#file.readFloat32(name);
  }
  location(name: string): Promise<WeightLocation | undefined> {
    try {
      const t = this.#file.info(name);
      return Promise.resolve({
        path: this.path,
        byteOffset: t.byteOffset,
        byteLength: t.byteLength,
      });
    } catch (error) {
      return Promise.reject(error);
    }
  }
  close(): void {
    this.#file.close();
  }
}

class TorchSource implements WeightSource {
  readonly path: string;
  readonly format = "torch" as const;
  readonly metadata: Record<string, string> = {};
  #archive: TorchArchive;
  #refs: Map<string, TensorRef>;

  constructor(path: string, archive: TorchArchive) {
    this.path = path;
    this.#archive = archive;
    this.#refs = archive.tensorRefs();
  }
  #ref(name: string): TensorRef {
    const ref = this.#refs.get(name);
    if (!ref) throw missing(this.path, name, this.#refs.size);
    return ref;
  }
  names(): string[] {
    return [...this.#refs.keys()];
  }
  has(name: string): boolean {
    return this.#refs.has(name);
  }
  info(name: string): WeightInfo {
    const ref = this.#ref(name);
    return { dtype: ref.dtype, shape: [...ref.shape] };
  }
  async read(name: string): Promise<Tensor> {
    return await this.#archive.readTensor(this.#ref(name));
  }
  async readFloat32(name: string): Promise<Float32Array> {
    const t = await this.read(name);
    return bytesToFloat32(t.data, t.dtype);
  }
  async location(name: string): Promise<WeightLocation | undefined> {
    const range = await this.#archive.byteRange(this.#ref(name));
    return range && { path: this.path, ...range };
  }
  close(): void {
    this.#archive.close();
  }
}

/** Options of {@linkcode openWeights}. */
export type OpenWeightsOptions = TorchLoadOptions;

/**
 * Opens a weight file, detecting its format from its first bytes: a ZIP signature means
 * torch.save; an 8-byte length followed by "{" means safetensors. The old (pre-1.6) torch.save
 * format is recognised and refused with a hint.
 *
 * @example
 * ```ts ignore
 * import { openWeights } from "./weight_source.ts";
 * const w = await openWeights("v1-5-pruned-emaonly.ckpt");
 * console.log(w.format, w.names().length, w.info("model.diffusion_model.out.2.weight"));
 * w.close();
 * ```
 */
export async function openWeights(
  path: string,
  options: OpenWeightsOptions = {},
): Promise<WeightSource> {
  const head = new Uint8Array(9);
  let got = 0;
  const file = await Deno.open(path, { read: true });
  try {
    while (got < head.length) {
      const n = await file.read(head.subarray(got));
      if (n === null) break;
      got += n;
    }
  } finally {
    file.close();
  }
  if (got >= 4 && head[0] === 0x50 && head[1] === 0x4b && head[2] === 0x03 && head[3] === 0x04) {
    return new TorchSource(path, await TorchArchive.open(path, options));
  }
  if (got === 9 && head[8] === 0x7b) {
    return new SafetensorsSource(path, await SafetensorsFile.open(path));
  }
  if (got >= 2 && head[0] === 0x80 && head[1]! <= 5) {
    throw new RangeError(
      `"${path}" is in the legacy (before PyTorch 1.6) torch.save format, which is not supported; ` +
        `re-save it with a recent PyTorch or convert it to .safetensors`,
    );
  }
  throw new RangeError(
    `"${path}" is neither safetensors nor a torch.save checkpoint (unrecognised first bytes)`,
  );
}

/** Bytes of a tensor with this info, for callers planning reads. */
export function weightByteLength(info: WeightInfo): number {
  return dtypeByteLength(info.dtype, shapeSize(info.shape));
}
