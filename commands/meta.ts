/**
 * `denoise meta read [FILE|-]` and `denoise meta write [FILE|-] --set K=V ...`: print an image's
 * generation metadata as JSON, or rewrite its text metadata without re-encoding the pixels.
 * All logic lives in lib/meta; this file turns flags into a Job and errors into exit codes.
 *
 * @module
 */
import { Command } from "@commander-js/extra-typings";
import { DenoiseError, InputError, UsageError } from "../lib/errors.ts";
import { readFileChecked, readInput } from "../lib/io/input.ts";
import { writeOutput } from "../lib/io/output.ts";
import { resolveJob } from "../lib/job/mod.ts";
import { MetaReadJob, MetaWriteJob } from "../lib/job/mod.ts";
import { checkKeyword } from "../lib/meta/png.ts";
import { readMetadata } from "../lib/meta/read.ts";
import { addStealthInfo } from "../lib/meta/read.ts";
import { writeMetadata } from "../lib/meta/write.ts";
import { examples, explicitOptions, loadJobOption, runContext, withJobOptions } from "./common.ts";

function jobSource(loaded: { document: Record<string, unknown>; label: string } | undefined) {
  return loaded === undefined ? {} : { document: loaded.document, documentLabel: loaded.label };
}

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Parses `--set KEY=VALUE` flags into an object (the first "=" splits). */
function parseSetFlags(pairs: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf("=");
    if (eq <= 0) {
      throw new UsageError(`"--set ${pair}" must have the form KEY=VALUE`, {
        hint: 'e.g. --set parameters="a fox\\nSteps: 20" (use --set-json for long texts)',
      });
    }
    out[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return out;
}

/** Reads `--set-json FILE`: a JSON object whose values are all strings. */
async function readSetJson(path: string): Promise<Record<string, string>> {
  const input = path === "-"
    ? await readInput("-", { what: "--set-json object" })
    : { bytes: await readFileChecked(path), label: path };
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder().decode(input.bytes));
  } catch (error) {
    throw new InputError(`--set-json ${input.label} is not valid JSON: ${message(error)}`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new InputError(`--set-json ${input.label} must hold a JSON object of key -> text`);
  }
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(parsed)) {
    if (typeof value !== "string") {
      throw new InputError(
        `--set-json ${input.label}: "${key}" is ${
          JSON.stringify(value)?.slice(0, 30)
        }, not a string`,
        { hint: "store JSON values as strings, e.g. JSON.stringify(obj)" },
      );
    }
    out[key] = value;
  }
  return out;
}

/** Wraps the library's built-in errors with the input's name and the exit code they mean. */
function inputFailure(error: unknown, source: string, action: string): unknown {
  if (error instanceof DenoiseError) return error;
  const label = source === "stdin" ? "stdin" : `"${source}"`;
  const text = message(error);
  const damaged = /CRC check|truncated|claims \d+ bytes|invalid type|IEND/.test(text);
  if (error instanceof RangeError) {
    return new UsageError(`Cannot ${action} ${label}: ${text}`, { cause: error });
  }
  if (error instanceof SyntaxError || error instanceof TypeError) {
    const hint = action === "read metadata from" && damaged
      ? "pass --lenient to read what is there"
      : damaged
      ? "the file is damaged; the writer never copies corrupt data (re-save it, or use meta read --lenient)"
      : undefined;
    return new InputError(
      `Cannot ${action} ${label}: ${text}`,
      hint === undefined ? { cause: error } : { cause: error, hint },
    );
  }
  return error;
}

function metaRead() {
  return withJobOptions(
    new Command("read")
      .description(
        "print an image's metadata (text chunks, A1111, ComfyUI, EXIF, denoise job) as JSON",
      )
      .argument("[file]", 'image file (PNG, JPEG, WebP, GIF); "-" or absent for stdin')
      .option("--lenient", "read what can be read from a damaged file (bad CRC, truncated)"),
  ).action(async (file, options, command) => {
    const ctx = runContext(command);
    const loaded = await loadJobOption(options.job);
    const flags: Record<string, unknown> = {};
    if (file !== undefined) flags.input = file;
    if (explicitOptions(command).lenient !== undefined) flags.lenient = true;
    const job = resolveJob(MetaReadJob, "meta read", {
      ...jobSource(loaded),
      flags,
    });
    if (options.dryRun) {
      await writeOutput(JSON.stringify(job, null, 2) + "\n", { binary: false });
      return;
    }
    const input = await readInput(job.input, { what: "image" });
    let meta;
    try {
      meta = readMetadata(input.bytes, { lenient: job.lenient });
    } catch (error) {
      throw inputFailure(error, input.label, "read metadata from");
    }
    await addStealthInfo(input.bytes, meta);
    for (const warning of meta.warnings.slice(0, 5)) ctx.warn(`${input.label}: ${warning}`);
    if (meta.warnings.length > 5) {
      ctx.warn(`${input.label}: ${meta.warnings.length - 5} more warnings in "warnings"`);
    }
    await writeOutput(JSON.stringify(meta, null, 2) + "\n", { binary: false });
  });
}

function metaWrite() {
  return withJobOptions(
    new Command("write")
      .description(
        "set, delete or strip text metadata without re-encoding pixels; writes the image to -o or stdout",
      )
      .argument("[file]", 'image file (PNG, JPEG, WebP); "-" or absent for stdin')
      .option(
        "--set <key=value>",
        "store a text under KEY (repeatable; replaces that key)",
        collect,
      )
      .option("--set-json <file>", 'store every key of a JSON object of strings ("-" for stdin)')
      .option("--delete <key>", "remove every text with this key (repeatable)", collect)
      .option("--strip", "remove all text, EXIF and XMP metadata first")
      .option("--compress", "PNG: store new texts compressed (zTXt / compressed iTXt)")
      .option("-o, --output <file>", "write the image here (atomically) instead of stdout"),
  ).action(async (file, options, command) => {
    const loaded = await loadJobOption(options.job);
    const given = explicitOptions(command);
    const flags: Record<string, unknown> = {};
    if (file !== undefined) flags.input = file;
    if (options.setJson !== undefined || options.set !== undefined) {
      flags.set = {
        ...(options.setJson !== undefined ? await readSetJson(options.setJson) : {}),
        ...parseSetFlags(options.set ?? []),
      };
    }
    if (options.delete !== undefined) flags.delete = options.delete;
    if (given.strip !== undefined) flags.strip = true;
    if (given.compress !== undefined) flags.compress = true;
    if (options.output !== undefined) flags.output = options.output;
    const job = resolveJob(MetaWriteJob, "meta write", {
      ...jobSource(loaded),
      flags,
    });
    for (const key of Object.keys(job.set)) {
      try {
        checkKeyword(key);
      } catch (error) {
        throw new UsageError(message(error), { hint: "PNG keys are 1-79 Latin-1 characters" });
      }
    }
    if (options.dryRun) {
      await writeOutput(JSON.stringify(job, null, 2) + "\n", { binary: false });
      return;
    }
    if (job.input === undefined && options.setJson === "-") {
      throw new UsageError("--set-json - and the image cannot both come from stdin", {
        hint: "pass the image as a FILE argument",
      });
    }
    const input = await readInput(job.input, { what: "image" });
    let bytes: Uint8Array;
    try {
      bytes = writeMetadata(input.bytes, {
        set: job.set,
        delete: job.delete,
        strip: job.strip,
      }, { compress: job.compress });
    } catch (error) {
      throw inputFailure(error, input.label, "write metadata to");
    }
    await writeOutput(bytes, { output: job.output, binary: true });
  });
}

/** The `meta` command: `meta read` and `meta write`. */
export function metaCommand() {
  return new Command("meta")
    .description("read or edit image generation metadata (PNG text, A1111, ComfyUI, EXIF)")
    .addCommand(
      metaRead().addHelpText(
        "after",
        examples([
          ["denoise meta read photo.png", "print everything as JSON"],
          ["denoise meta read photo.png | jq .a1111.summary.seed", "just the seed"],
          ["curl -s https://example.com/x.png | denoise meta read -", "read from a pipe"],
          ["denoise meta read --lenient damaged.png", "read what a damaged file still holds"],
        ]),
      ),
    )
    .addCommand(
      metaWrite().addHelpText(
        "after",
        examples([
          ["denoise meta write a.png --set note=approved -o b.png", "add a text chunk"],
          [
            "cat a.png | denoise meta write --set k=v | denoise meta read",
            "edit in a pipe (every other chunk is kept)",
          ],
          ["denoise meta write a.png --set-json texts.json --compress -o b.png", "many keys, zTXt"],
          [
            'denoise meta write a.jpg --set parameters="$(cat infotext.txt)" -o b.jpg',
            "A1111 EXIF",
          ],
          ["denoise meta write photo.png --strip -o clean.png", "remove all metadata"],
        ]) +
          "\nPNG: Latin-1 text is stored as tEXt, anything else as iTXt (UTF-8). JPEG and WebP hold\n" +
          'one key, "parameters", as an A1111-style EXIF UserComment. See docs/meta.md.\n',
      ),
    );
}
