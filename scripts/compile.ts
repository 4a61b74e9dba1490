/**
 * `deno task compile`: builds dist/denoise, one executable for linux-x64 with the native addons
 * it needs (onnxruntime-node's CPU binding and sharp's libvips), and without the other
 * platforms' binaries. See docs/distribution.md.
 *
 * `deno compile` embeds a runtime (`denort`) that it normally downloads; where downloads are
 * impossible, point DENORT_BIN at a local denort binary of the same Deno version.
 */
import { join } from "node:path";

const ORT = "node_modules/.deno/onnxruntime-node@1.30.0/node_modules/onnxruntime-node";

/** Native files and folders that linux-x64 needs no copy of. */
export const EXCLUDES: readonly string[] = [
  `${ORT}/bin/napi-v6/darwin`,
  `${ORT}/bin/napi-v6/win32`,
  `${ORT}/bin/napi-v6/linux/arm64`,
  "node_modules/.deno/@img+sharp-linuxmusl-x64@0.35.5",
  "node_modules/.deno/@img+sharp-libvips-linuxmusl-x64@1.3.4",
];

/** Files loaded dynamically at run time, which `deno compile` cannot find on its own. */
export const INCLUDES: readonly string[] = [
  `${ORT}/bin/napi-v6/linux/x64`,
  "node_modules/.deno/@img+sharp-linux-x64@0.35.5",
  "node_modules/.deno/@img+sharp-libvips-linux-x64@1.3.4",
];

/** The permissions the binary runs with (the same as `deno task denoise`). */
export const PERMISSIONS: readonly string[] = [
  "--allow-read",
  "--allow-write",
  "--allow-env",
  "--allow-ffi",
  "--allow-sys",
  "--allow-net",
  "--allow-run",
];

/** The full `deno compile` argument list. */
export function compileArgs(output: string): string[] {
  return [
    "compile",
    ...PERMISSIONS,
    "--target",
    "x86_64-unknown-linux-gnu",
    ...INCLUDES.flatMap((path) => ["--include", path]),
    ...EXCLUDES.flatMap((path) => ["--exclude", path]),
    "--output",
    output,
    "main.ts",
  ];
}

if (import.meta.main) {
  const output = Deno.args[0] ?? join("dist", "denoise");
  await Deno.mkdir("dist", { recursive: true });
  const args = compileArgs(output);
  console.error(`deno ${args.join(" ")}`);
  const status = await new Deno.Command(Deno.execPath(), { args, stdin: "null" }).spawn().status;
  if (!status.success) {
    console.error(
      "deno compile failed. Without network access it needs DENORT_BIN=/path/to/denort " +
        "(the denort binary of the same Deno version); see docs/distribution.md.",
    );
  }
  Deno.exit(status.code);
}
