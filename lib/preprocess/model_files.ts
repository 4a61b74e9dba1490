/**
 * Finding the model files of a model-based preprocessor from `--model`: an alias from
 * models.lock.json (pulled into the cache), a folder holding the files under their published
 * names, or a single file (an `.onnx` file for a preprocessor with one ONNX model; any weight file
 * for one whose network is built from weights).
 *
 * @module
 */
import { existsSync, statSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { ModelNotFoundError, UsageError } from "../errors.ts";
import { type ModelsLock, modelStatus } from "../hub/mod.ts";
import type { Preprocessor } from "./preprocessor.ts";

/** Role -> absolute path of its model file. */
export type ResolvedModelFiles = Record<string, string>;

/** Where aliases are looked up, and what the run needs. */
export interface ResolvePreprocessorModelOptions {
  /** Model aliases (models.lock.json). */
  lock?: ModelsLock | undefined;
  /** The cache root models are pulled into. */
  cacheDir?: string | undefined;
  /**
   * The run's resolved options: a preprocessor whose `model.roles` depends on them needs only
   * those roles' files (default: every role).
   */
  options?: Readonly<Record<string, unknown>> | undefined;
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
  const needed = model.roles?.(options.options ?? {});
  const roles = Object.entries(model.files).filter(([role]) =>
    needed === undefined || needed.includes(role)
  );
  const expected = roles.map(([, names]) => names[0]!).join(" and ");
  const given = spec ?? model.defaultAlias;
  if (existsSync(given)) {
    const path = resolve(given);
    if (statSync(path).isDirectory()) return filesInFolder(kind, path, roles, expected);
    // A weight file holds one network, which serves whichever role the run needs.
    if (model.format === "weights") return Object.fromEntries(roles.map(([role]) => [role, path]));
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
    const all = await modelStatus(options.cacheDir, given, locked);
    const wanted = roles.flatMap(([, names]) => names);
    // Only the files this run needs must be there (an alias may hold a file for each option).
    const status = all.some((s) => wanted.includes(basename(s.path)))
      ? all.filter((s) => wanted.includes(basename(s.path)))
      : all;
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
