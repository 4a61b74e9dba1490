/**
 * Finding the ONNX files of a model-based preprocessor from `--model`: an alias from
 * models.lock.json (pulled into the cache), a folder holding the files under their published
 * names, or, for a preprocessor with one file, that `.onnx` file itself.
 *
 * @module
 */
import { existsSync, statSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { ModelNotFoundError, UsageError } from "../errors.ts";
import { type ModelsLock, modelStatus } from "../hub/mod.ts";
import type { Preprocessor } from "./preprocessor.ts";

/** Role -> absolute path of its ONNX file. */
export type ResolvedModelFiles = Record<string, string>;

/** Where aliases are looked up. */
export interface ResolvePreprocessorModelOptions {
  /** Model aliases (models.lock.json). */
  lock?: ModelsLock | undefined;
  /** The cache root models are pulled into. */
  cacheDir?: string | undefined;
}

/**
 * The files `preprocessor` runs, from `spec` (default: its lock alias). Throws
 * ModelNotFoundError (exit 4) naming what is missing and how to get it, UsageError for a file
 * where a folder is needed.
 *
 * @example
 * ```ts ignore
 * const files = await resolvePreprocessorModel(getPreprocessor("openpose"), "./dwpose", {});
 * files.detector; // ".../dwpose/yolox_l.onnx"
 * ```
 */
export async function resolvePreprocessorModel(
  preprocessor: Preprocessor,
  spec: string | undefined,
  options: ResolvePreprocessorModelOptions = {},
): Promise<ResolvedModelFiles> {
  const model = preprocessor.model;
  const kind = preprocessor.kind;
  if (model === undefined) {
    throw new UsageError(`The ${kind} preprocessor runs no model`, {
      hint: "drop --model",
    });
  }
  const roles = Object.entries(model.files);
  const expected = roles.map(([, names]) => names[0]!).join(" and ");
  const given = spec ?? model.defaultAlias;
  if (existsSync(given)) {
    const path = resolve(given);
    if (statSync(path).isDirectory()) return filesInFolder(kind, path, roles, expected);
    if (roles.length === 1 && /\.onnx$/i.test(path)) return { [roles[0]![0]]: path };
    throw new UsageError(
      roles.length === 1
        ? `"--model ${given}" is not an .onnx file`
        : `The ${kind} preprocessor needs ${roles.length} files (${expected}); "${given}" is one file`,
      { hint: `pass a folder holding ${expected}, or the alias ${model.defaultAlias}` },
    );
  }
  const locked = options.lock?.models[given];
  if (locked !== undefined && options.cacheDir !== undefined) {
    const status = await modelStatus(options.cacheDir, given, locked);
    if (status.some((s) => !s.present)) {
      throw new ModelNotFoundError(`The ${kind} model "${given}" is not downloaded`, {
        hint:
          `run "denoise models pull ${given}", or pass --model with a folder holding ${expected}`,
      });
    }
    const out: ResolvedModelFiles = {};
    for (const [role, names] of roles) {
      const file = status.find((s) => names.includes(basename(s.path)));
      if (file === undefined) {
        throw new ModelNotFoundError(
          `The model "${given}" in models.lock.json lists no ${names[0]} for ${kind}`,
          { hint: `use an alias made for ${kind} (default ${model.defaultAlias})` },
        );
      }
      out[role] = file.localPath;
    }
    return out;
  }
  throw new ModelNotFoundError(
    spec === undefined
      ? `The ${kind} model "${given}" is not in models.lock.json`
      : `The ${kind} model "${given}" is neither a file, a folder nor a known alias`,
    {
      hint:
        `pass --model with a folder holding ${expected}, or run "denoise models pull ${model.defaultAlias}"`,
    },
  );
}

function filesInFolder(
  kind: string,
  folder: string,
  roles: ReadonlyArray<[string, readonly string[]]>,
  expected: string,
): ResolvedModelFiles {
  const out: ResolvedModelFiles = {};
  for (const [role, names] of roles) {
    const found = names
      .flatMap((name) => [join(folder, name), join(folder, "onnx", name)])
      .find((p) => existsSync(p));
    if (found === undefined) {
      throw new ModelNotFoundError(
        `The folder "${folder}" holds no ${names.join(" or ")} (the ${kind} ${role} model)`,
        { hint: `put ${expected} there, or pass the alias with --model` },
      );
    }
    out[role] = found;
  }
  return out;
}
