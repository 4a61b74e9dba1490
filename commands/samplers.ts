/**
 * `denoise samplers`: the sampler table — denoise names, A1111 labels, Diffusers classes and
 * the schedules each accepts — from lib/schedulers/names.ts, the one place it lives.
 *
 * @module
 */
import { Command } from "@commander-js/extra-typings";
import { UsageError } from "../lib/errors.ts";
import { writeOutput } from "../lib/io/output.ts";
import { resolveSampler, samplerTable } from "../lib/schedulers/mod.ts";
import { SamplersJob } from "../lib/job/mod.ts";
import { commandJob, examples, withJobOptions } from "./common.ts";

/** The `samplers` command. */
export function samplersCommand() {
  return withJobOptions(
    new Command("samplers")
      .description("list the samplers, their A1111 labels and Diffusers classes")
      .argument("[label]", 'resolve one name or A1111 label (e.g. "DPM++ 2M Karras")')
      .option("--schedule-type <type>", 'A1111\'s separate "Schedule type" for the label')
      .option("--json", "print JSON"),
  )
    .addHelpText(
      "after",
      examples([
        ["denoise samplers", "the table"],
        ['denoise samplers "DPM++ 2M Karras" --json', "what an A1111 label means here"],
        ['denoise samplers "DPM++ 2M" --schedule-type Karras', "label plus schedule type"],
      ]) + "\nUse the names with generate --sampler NAME --schedule SCHEDULE.\n",
    )
    .action(async (labelArg, _options, command) => {
      const options = await commandJob(command, SamplersJob, "samplers", { label: labelArg });
      if (options === undefined) return;
      const label = options.label;
      if (label !== undefined) {
        let resolved;
        try {
          resolved = resolveSampler(label, options.scheduleType);
        } catch (error) {
          throw new UsageError((error as Error).message);
        }
        const text = options.json
          ? JSON.stringify(resolved, null, 2)
          : `${label} -> --sampler ${resolved.sampler} --schedule ${resolved.schedule} ` +
            `(${resolved.diffusersClass})`;
        await writeOutput(text + "\n", { binary: false });
        return;
      }
      const rows = samplerTable();
      if (options.json) {
        await writeOutput(JSON.stringify(rows, null, 2) + "\n", { binary: false });
        return;
      }
      const lines = [
        `${"sampler".padEnd(13)}${"A1111 label".padEnd(15)}${
          "Diffusers class".padEnd(34)
        }schedules`,
        ...rows.map((r) =>
          `${r.sampler.padEnd(13)}${r.a1111.padEnd(15)}${r.diffusersClass.padEnd(34)}${
            r.schedules.join(", ")
          }`
        ),
      ];
      await writeOutput(lines.join("\n") + "\n", { binary: false });
    });
}
