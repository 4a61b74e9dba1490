/**
 * `denoise models list|pull|verify|where`: the models named in models.lock.json, fetched into the
 * cache with resumable, SHA-256-verified downloads.
 *
 * @module
 */
import { Command } from "@commander-js/extra-typings";
import builtinLock from "../models.lock.json" with { type: "json" };
import { existsSync } from "node:fs";
import { InputError, ModelNotFoundError, UsageError } from "../lib/errors.ts";
import { createRandomModel, type RandomModelConfigs } from "../lib/models/random.ts";
import {
  cacheRoot,
  lockedModel,
  modelDir,
  type ModelsLock,
  modelStatus,
  parseLock,
  pullModel,
  sourceRevision,
  verifyModel,
} from "../lib/hub/mod.ts";
import { readFileChecked } from "../lib/io/input.ts";
import { writeOutput } from "../lib/io/output.ts";
import { commandJob, examples, nonNegativeInt, runContext, withJobOptions } from "./common.ts";
import {
  ModelsCreateRandomJob,
  ModelsListJob,
  ModelsPullJob,
  ModelsVerifyJob,
  ModelsWhereJob,
} from "../lib/job/mod.ts";

async function loadLock(path: string | undefined): Promise<ModelsLock> {
  const file = path ?? Deno.env.get("DENOISE_MODELS_LOCK");
  if (file === undefined) {
    return parseLock(JSON.stringify(builtinLock), "the built-in models.lock.json");
  }
  return parseLock(new TextDecoder().decode(await readFileChecked(file)), file);
}

function root(): string {
  return cacheRoot({
    DENOISE_HOME: Deno.env.get("DENOISE_HOME"),
    XDG_CACHE_HOME: Deno.env.get("XDG_CACHE_HOME"),
    HOME: Deno.env.get("HOME"),
  });
}

function offline(): boolean {
  const value = Deno.env.get("DENOISE_OFFLINE");
  return value !== undefined && value !== "" && value !== "0" && value !== "false";
}

async function printJson(value: unknown): Promise<void> {
  await writeOutput(JSON.stringify(value, null, 2) + "\n", { binary: false });
}

/** The `models` command and its subcommands. */
export function modelsCommand() {
  const models = new Command("models")
    .description("list, download, verify and locate the models named in models.lock.json")
    .addHelpText(
      "after",
      examples([
        ["denoise models list", "show every alias and whether it is downloaded"],
        ["denoise models pull sd15", "download a model (resumable, SHA-256 verified)"],
        ["denoise models verify sd15", "re-hash a downloaded model against the lock"],
        ["denoise models where sd15", "print the folder to pass as --model"],
      ]) +
        "\nEnvironment: DENOISE_HOME (cache folder), HF_ENDPOINT, HF_TOKEN, DENOISE_OFFLINE=1,\n" +
        "DENOISE_MODELS_LOCK (a lock file to use instead of the built-in one).\n",
    );

  withJobOptions(
    models.command("list")
      .description("list the locked models and their download state")
      .option("--lock <file>", "use this lock file instead of the built-in one")
      .option("--json", "print JSON instead of a table"),
  )
    .action(async (_options, command) => {
      const options = await commandJob(command, ModelsListJob, "models list");
      if (options === undefined) return;
      const lock = await loadLock(options.lock);
      const cache = root();
      const rows = [];
      for (const [alias, model] of Object.entries(lock.models)) {
        const status = await modelStatus(cache, alias, model);
        const present = status.filter((s) => s.present).length;
        rows.push({
          alias,
          family: model.family,
          description: model.description,
          repo: model.source.repo,
          revision: sourceRevision(model),
          files: model.files.length,
          bytes: model.files.every((f) => f.size !== null)
            ? model.files.reduce((sum, f) => sum + (f.size ?? 0), 0)
            : null,
          downloaded: present === status.length,
          filesPresent: present,
          verified: model.verified,
        });
      }
      if (options.json) return await printJson(rows);
      const lines = rows.length === 0
        ? ["(the lock file names no models yet)"]
        : rows.map((r) =>
          `${r.alias.padEnd(20)} ${r.family.padEnd(13)} ${
            (r.downloaded ? "downloaded" : `${r.filesPresent}/${r.files} files`).padEnd(12)
          } ${r.bytes === null ? "   ? GB" : `${(r.bytes / 1e9).toFixed(2)} GB`}  ${r.description}${
            r.verified ? "" : " (unverified)"
          }`
        );
      await writeOutput(lines.join("\n") + "\n", { binary: false });
    });

  withJobOptions(
    models.command("pull")
      .description("download a model into the cache (resumes partial downloads)")
      .argument("[alias]", "a model alias from the lock file")
      .option("--lock <file>", "use this lock file instead of the built-in one"),
  )
    .action(async (aliasArg, _options, command) => {
      const options = await commandJob(command, ModelsPullJob, "models pull", { alias: aliasArg });
      if (options === undefined) return;
      const alias = options.alias;
      const ctx = runContext(command);
      const lock = await loadLock(options.lock);
      const model = lockedModel(lock, alias);
      const dir = await pullModel(alias, model, {
        root: root(),
        endpoint: Deno.env.get("HF_ENDPOINT"),
        token: Deno.env.get("HF_TOKEN"),
        offline: offline(),
        onProgress: ctx.progress.report,
      });
      ctx.progress.finish();
      ctx.info(`${alias}: ${dir}`);
    });

  withJobOptions(
    models.command("verify")
      .description("re-hash downloaded files against the lock (all models when no alias is given)")
      .argument("[alias]", "a model alias")
      .option("--lock <file>", "use this lock file instead of the built-in one")
      .option("--json", "print JSON results"),
  )
    .action(async (aliasArg, _options, command) => {
      const options = await commandJob(command, ModelsVerifyJob, "models verify", {
        alias: aliasArg,
      });
      if (options === undefined) return;
      const alias = options.alias;
      const lock = await loadLock(options.lock);
      const aliases = alias === undefined ? Object.keys(lock.models) : [alias];
      const results = [];
      for (const name of aliases) {
        const model = lockedModel(lock, name);
        for (const r of await verifyModel(root(), name, model)) results.push({ alias: name, ...r });
      }
      if (options.json) await printJson(results);
      else {
        await writeOutput(
          results.map((r) =>
            `${r.ok ? "ok  " : "BAD "} ${r.alias}/${r.path}${r.reason ? `  (${r.reason})` : ""}`
          ).join("\n") + (results.length ? "\n" : ""),
          { binary: false },
        );
      }
      const bad = results.filter((r) => !r.ok);
      if (bad.length > 0) {
        throw new InputError(`${bad.length} file(s) failed verification`, {
          hint: `delete them and run "denoise models pull ${bad[0]!.alias}"`,
        });
      }
    });

  withJobOptions(
    models.command("where")
      .description("print the cache folder of a model (exit 4 when it is not fully downloaded)")
      .argument("[alias]", "a model alias")
      .option("--lock <file>", "use this lock file instead of the built-in one"),
  )
    .action(async (aliasArg, _options, command) => {
      const options = await commandJob(command, ModelsWhereJob, "models where", {
        alias: aliasArg,
      });
      if (options === undefined) return;
      const alias = options.alias;
      const lock = await loadLock(options.lock);
      const model = lockedModel(lock, alias);
      const status = await modelStatus(root(), alias, model);
      await writeOutput(modelDir(root(), alias, model) + "\n", { binary: false });
      if (status.some((s) => !s.present)) {
        throw new ModelNotFoundError(`Model "${alias}" is not fully downloaded`, {
          hint: `run "denoise models pull ${alias}"`,
        });
      }
    });

  withJobOptions(
    models.command("create-random")
      .description("write a Diffusers-layout model with random weights (for tests and benchmarks)")
      .option(
        "--config <file>",
        'JSON {"unet": {...}, "vae": {...}, "textEncoder"?: {...}, "textEncoder2"?: {...}, "scheduler"?: {...}} (required)',
      )
      .option("-o, --output <dir>", "the model folder to create, must not exist (required)")
      .option("--seed <n>", "seed of the random weights", nonNegativeInt("--seed"))
      .option("--tokenizer <dir>", "a tokenizer folder (vocab.json, merges.txt) to copy in"),
  )
    .addHelpText(
      "after",
      examples([[
        "denoise models create-random --config tiny.json -o ./tiny --tokenizer ./sd15/tokenizer",
        "a tiny model that generate can run",
      ]]),
    )
    .action(async (_options, command) => {
      const options = await commandJob(command, ModelsCreateRandomJob, "models create-random");
      if (options === undefined) return;
      const text = new TextDecoder().decode(await readFileChecked(options.config));
      let configs: unknown;
      try {
        configs = JSON.parse(text);
      } catch (error) {
        throw new InputError(`${options.config} is not valid JSON: ${(error as Error).message}`);
      }
      if (
        typeof configs !== "object" || configs === null || !("unet" in configs) ||
        !("vae" in configs)
      ) {
        throw new InputError(`${options.config} must be an object with "unet" and "vae" configs`);
      }
      if (existsSync(options.output)) {
        throw new UsageError(`"${options.output}" already exists`, {
          hint: "pass a new folder name",
        });
      }
      // Written beside the target and renamed, so a failure leaves no half-written model.
      const temp = `${options.output}.tmp-${crypto.randomUUID().slice(0, 8)}`;
      try {
        await createRandomModel(configs as RandomModelConfigs, temp, {
          seed: options.seed,
          ...(options.tokenizer !== undefined ? { tokenizerDir: options.tokenizer } : {}),
        });
        await Deno.rename(temp, options.output);
      } catch (error) {
        await Deno.remove(temp, { recursive: true }).catch(() => {});
        if (error instanceof RangeError || error instanceof TypeError) {
          throw new InputError(`Cannot create the model: ${error.message}`, { cause: error });
        }
        throw error;
      }
    });

  return models;
}
