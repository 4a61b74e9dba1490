import assert from "node:assert/strict";
import { join } from "node:path";
import { IoError, UsageError } from "../errors.ts";
import { writeFileAtomic, writeOutput } from "./output.ts";

function sinkStream(terminal: boolean) {
  const chunks: Uint8Array[] = [];
  return {
    chunks,
    stream: {
      writable: new WritableStream<Uint8Array>({ write: (c) => void chunks.push(c) }),
      isTerminal: () => terminal,
    },
  };
}

Deno.test("writeFileAtomic() replaces the file and leaves no temp file", async () => {
  const dir = await Deno.makeTempDir();
  const path = join(dir, "out.png");
  await Deno.writeTextFile(path, "old");
  await writeFileAtomic(path, new Uint8Array([1, 2, 3]));
  assert.deepEqual(await Deno.readFile(path), new Uint8Array([1, 2, 3]));
  assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["out.png"]);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("writeFileAtomic() into a missing folder fails with IoError and writes nothing", async () => {
  const dir = await Deno.makeTempDir();
  await assert.rejects(
    () => writeFileAtomic(join(dir, "missing", "out.png"), "x"),
    IoError,
  );
  assert.deepEqual([...Deno.readDirSync(dir)], []);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("writeFileAtomic() refuses a directory as the target", async () => {
  const dir = await Deno.makeTempDir();
  await assert.rejects(() => writeFileAtomic(dir, "x"), UsageError);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("writeOutput() refuses binary on a terminal but writes text", async () => {
  const tty = sinkStream(true);
  await assert.rejects(
    () => writeOutput(new Uint8Array([0x89]), { binary: true, stdout: tty.stream }),
    /Refusing to write binary/,
  );
  assert.equal(tty.chunks.length, 0);
  await writeOutput("{}\n", { binary: false, stdout: tty.stream });
  assert.equal(tty.chunks.length, 1);
  const pipe = sinkStream(false);
  await writeOutput(new Uint8Array([1]), { binary: true, stdout: pipe.stream });
  assert.deepEqual(pipe.chunks[0], new Uint8Array([1]));
});
