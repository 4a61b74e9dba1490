/**
 * The denoise command line: builds the program from commands/, runs it, and maps errors to exit
 * codes (docs/exit-codes.md). Nothing else lives here.
 *
 * @module
 */
import { Command, CommanderError } from "@commander-js/extra-typings";
import denoConfig from "./deno.json" with { type: "json" };
import { type AnyCommand, examples, progressOption, writeStderr } from "./commands/common.ts";
import { controlnetCommand } from "./commands/controlnet.ts";
import { captionCommand } from "./commands/caption.ts";
import { animateCommand } from "./commands/animate.ts";
import { convertCkptCommand } from "./commands/convert_ckpt.ts";
import { generateCommand } from "./commands/generate.ts";
import { img2imgCommand } from "./commands/img2img.ts";
import { loraTrainCommand } from "./commands/lora_train.ts";
import { metaCommand } from "./commands/meta.ts";
import { modelsCommand } from "./commands/models.ts";
import { preprocessCommand } from "./commands/preprocess.ts";
import { samplersCommand } from "./commands/samplers.ts";
import { exitWithParent, restoreCallerDirectory, startedByDenoTask } from "./commands/process.ts";
import { upscaleCommand } from "./commands/upscale.ts";
import { ExitCode, exitCodeFor, formatError } from "./lib/errors.ts";

/** The denoise version, from deno.json. */
export const VERSION: string = denoConfig.version;

/** Subcommand factories, in the order `denoise --help` lists them. Only working ones. */
const COMMANDS: Array<() => AnyCommand> = [
  generateCommand,
  img2imgCommand,
  controlnetCommand,
  upscaleCommand,
  preprocessCommand,
  animateCommand,
  convertCkptCommand,
  captionCommand,
  loraTrainCommand,
  metaCommand,
  modelsCommand,
  samplersCommand,
];

/** Builds the root command with every registered subcommand. */
export function buildProgram(): Command<[], { debug?: true; quiet?: true; progress: string }> {
  const program = new Command()
    .name("denoise")
    .description(
      "Stable Diffusion from the command line, with no Python.\n" +
        "Images and JSON in on stdin, images and JSON out on stdout, progress and errors on stderr.",
    )
    .version(`denoise ${VERSION}`, "-V, --version", "print the version")
    .option("--debug", "print stack traces and debug details on errors")
    .option("-q, --quiet", "print nothing on stderr but errors and warnings")
    .addOption(progressOption())
    .helpCommand("help [command]", "show help for a command")
    .showSuggestionAfterError(true)
    .addHelpText(
      "after",
      examples([
        [
          'denoise generate "a red fox in snow, (golden hour:1.2)" -m sd15 --seed 7 -o fox.png',
          "make an image (denoise models pull sd15 first)",
        ],
        [
          'denoise generate "a castle" -m sd15 | denoise img2img "a castle at night" -m sd15 | denoise meta read',
          "chain commands in a pipe",
        ],
        ["denoise meta read photo.png", "print the generation metadata of an image as JSON"],
        [
          "cat a.png | denoise meta write --set note=hello | denoise meta read",
          "edit metadata in a pipe",
        ],
      ]) + "\nExit codes: 0 ok, 1 failure, 2 usage, 3 bad input, 4 missing model, 5 I/O, " +
        "6 network, 7 some of many inputs failed (docs/exit-codes.md).\n",
    );
  for (const factory of COMMANDS) program.addCommand(factory());
  configureRecursively(program);
  return program;
}

function configureRecursively(command: AnyCommand): void {
  command.exitOverride();
  command.configureOutput({
    writeOut: (text) => writeStdout(text),
    writeErr: (text) => writeStderr(text),
    outputError: (text, write) => write(`denoise: ${text.replace(/^error: /, "")}`),
  });
  for (const sub of command.commands) configureRecursively(sub);
}

function writeStdout(text: string): void {
  const bytes = new TextEncoder().encode(text);
  let written = 0;
  while (written < bytes.length) written += Deno.stdout.writeSync(bytes.subarray(written));
}

/** The deepest (sub)command the arguments name, as `denoise generate` or `denoise meta read`. */
function helpFor(program: AnyCommand, args: readonly string[]): string {
  const words = ["denoise"];
  let command = program;
  for (const arg of args) {
    if (arg.startsWith("-")) continue;
    const sub = command.commands.find((c) => c.name() === arg || c.aliases().includes(arg));
    if (sub === undefined) break;
    words.push(sub.name());
    command = sub;
  }
  return words.join(" ");
}

/**
 * The first argument that is neither a global option nor its value, when it names no command:
 * commander would show the top-level help for `denoise upscale --help` and exit 0.
 */
function unknownCommand(program: AnyCommand, args: readonly string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === "--progress") {
      i++;
      continue;
    }
    if (arg.startsWith("-")) continue;
    const known = arg === "help" ||
      program.commands.some((c) => c.name() === arg || c.aliases().includes(arg));
    return known ? undefined : arg;
  }
  return undefined;
}

/** Runs the CLI with the given arguments and returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const program = buildProgram();
  const debug = args.includes("--debug");
  const unknown = unknownCommand(program, args);
  if (unknown !== undefined) {
    const names = program.commands.map((c) => c.name());
    writeStderr(
      `denoise: unknown command "${unknown}"\nhint: the commands are ${names.join(", ")}; ` +
        `see "denoise --help"\n`,
    );
    return ExitCode.usage;
  }
  try {
    await program.parseAsync(args, { from: "user" });
    return ExitCode.ok;
  } catch (error) {
    if (error instanceof CommanderError) {
      if (
        error.code === "commander.helpDisplayed" || error.code === "commander.version" ||
        error.code === "commander.help"
      ) {
        return ExitCode.ok;
      }
      if (error.code === "commander.executeSubCommandAsync") return ExitCode.failure;
      // Commander has already printed its one-line message; point at the right help.
      writeStderr(`hint: see "${helpFor(program, args)} --help"\n`);
      return ExitCode.usage;
    }
    const code = exitCodeFor(error);
    writeStderr(formatError(error, { debug }) + "\n");
    return code;
  }
}

if (import.meta.main) {
  if (startedByDenoTask()) {
    restoreCallerDirectory();
    exitWithParent();
  }
  Deno.addSignalListener("SIGINT", () => {
    writeStderr("\ndenoise: interrupted\n");
    Deno.exit(ExitCode.interrupted);
  });
  const code = await main(Deno.args);
  Deno.exit(code);
}
