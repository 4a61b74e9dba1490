/**
 * Reading a published multi-file ONNX export of a vision-language model (the layout
 * transformers.js and the `onnx-community` repositories use: `config.json`,
 * `generation_config.json`, `preprocessor_config.json`, `tokenizer.json` at the top, the graphs
 * in `onnx/<part>.onnx`, large ones with their `<part>.onnx_data` beside): finding each part,
 * opening it as a session, and checking that it has the inputs and outputs the caller feeds
 * and reads, so a different export fails in one line that names what is missing.
 *
 * Only the fp32 files (`<part>.onnx`) are read; the quantised and fp16 variants
 * (`<part>_q4.onnx`, `<part>_fp16.onnx`, ...) have other input types.
 *
 * @module
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { ModelNotFoundError } from "../errors.ts";
import { createSession, type OnnxSession, type SessionOptions } from "../onnx/session.ts";

type Json = Record<string, unknown>;

/**
 * The path of export part `name`: `<dir>/onnx/<name>.onnx`, else `<dir>/<name>.onnx`.
 *
 * @example
 * ```ts ignore
 * exportPart("Florence-2-base", "vision_encoder"); // ".../onnx/vision_encoder.onnx"
 * ```
 */
export function exportPart(dir: string, name: string): string {
  for (const path of [join(dir, "onnx", `${name}.onnx`), join(dir, `${name}.onnx`)]) {
    if (existsSync(path)) return path;
  }
  throw new ModelNotFoundError(`Cannot find "onnx/${name}.onnx" in "${dir}"`, {
    hint: "download the fp32 ONNX files of the export (onnx/*.onnx, with any .onnx_data beside)",
  });
}

/** What a part must have. */
export interface PartSignature {
  /** Input names the caller feeds (the part may have optional others). */
  inputs: readonly string[];
  /** Output names the caller reads. */
  outputs: readonly string[];
}

/**
 * Opens export part `name` of `dir` and checks its signature; the error names the missing
 * inputs or outputs.
 */
export async function openExportPart(
  dir: string,
  name: string,
  signature: PartSignature,
  options: SessionOptions = {},
): Promise<OnnxSession> {
  const path = exportPart(dir, name);
  const session = await createSession(path, options);
  const missing = [
    ...signature.inputs.filter((n) => !session.inputNames.includes(n)).map((n) => `input "${n}"`),
    ...signature.outputs.filter((n) => !session.outputNames.includes(n)).map((n) =>
      `output "${n}"`
    ),
  ];
  if (missing.length > 0) {
    await session.release();
    throw new RangeError(
      `Cannot use "${path}": it has no ${missing.slice(0, 4).join(", ")}` +
        `${missing.length > 4 ? ` (and ${missing.length - 4} more)` : ""}; it is not the ` +
        `export layout denoise reads (see docs/caption.md)`,
    );
  }
  return session;
}

/**
 * Checks that input `name` of `session` is float32 (the fp32 export), with a hint otherwise.
 */
export function requireFloat32(session: OnnxSession, name: string, part: string): void {
  const type = session.inputType(name);
  if (type !== undefined && type !== "float32") {
    throw new RangeError(
      `Cannot use ${part}: its input "${name}" is ${type}; use the fp32 files of the export ` +
        `(onnx/${part}.onnx)`,
    );
  }
}

/** Reads a JSON file of a model folder; `undefined` when it does not exist. */
export async function readOptionalJson(dir: string, name: string): Promise<Json | undefined> {
  const path = join(dir, name);
  if (!existsSync(path)) return undefined;
  const text = await Deno.readTextFile(path);
  try {
    const value = JSON.parse(text);
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      throw new SyntaxError("expected a JSON object");
    }
    return value as Json;
  } catch (error) {
    throw new SyntaxError(`Cannot parse "${path}": ${(error as Error).message}; fix the JSON`, {
      cause: error,
    });
  }
}

/** An integer field of a config object, or `fallback`; a RangeError names a bad value. */
export function configInt(
  json: Json,
  key: string,
  fallback?: number,
  where = "config.json",
): number {
  const v = json[key] ?? fallback;
  if (typeof v !== "number" || !Number.isInteger(v)) {
    throw new RangeError(
      `Cannot use ${where}: "${key}" must be an integer, got ${JSON.stringify(v)}`,
    );
  }
  return v;
}

/**
 * The number of heads and the head width of cache input `name`: the export's fixed dimensions
 * 1 and 3 when it declares them, else `fallback` (from config.json).
 */
export function cacheGeometry(
  session: OnnxSession,
  name: string,
  fallback: { heads?: number | undefined; headDim?: number | undefined },
): { heads: number; headDim: number } {
  const shape = session.inputShape(name) ?? [];
  const heads = typeof shape[1] === "number" ? shape[1] : fallback.heads;
  const headDim = typeof shape[3] === "number" ? shape[3] : fallback.headDim;
  if (heads === undefined || headDim === undefined) {
    throw new RangeError(
      `Cannot size the cache input "${name}": the export leaves its heads and width dynamic ` +
        `and config.json does not give them; add num_key_value_heads and head_dim to config.json`,
    );
  }
  return { heads, headDim };
}
