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

Deno.test("writeFileAtomic() writes a device or FIFO in place; /dev/full fails as one IoError line", async () => {
  // A device: renaming a temp file over it would replace it (as root) or fail. /dev/full is
  // written in place and says it is full. (/dev/null is not used: the machine is shared.)
  const error = await writeFileAtomic("/dev/full", new Uint8Array(10)).then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.ok(error instanceof IoError, String(error));
  assert.equal(error.message, 'Cannot write "/dev/full": no space left on device');
  const dir = await Deno.makeTempDir();
  try {
    const fifo = join(dir, "pipe");
    const made = await new Deno.Command("mkfifo", { args: [fifo] }).output();
    assert.equal(made.code, 0);
    const reader = Deno.readFile(fifo);
    await writeFileAtomic(fifo, "through the pipe");
    assert.equal(new TextDecoder().decode(await reader), "through the pipe");
    assert.ok(Deno.lstatSync(fifo).isFifo, "still a FIFO");
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["pipe"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "writeFileAtomic() into a read-only folder fails as one IoError line",
  ignore: Deno.uid() === 0, // root writes into read-only folders anyway
  fn: async () => {
    const dir = await Deno.makeTempDir();
    try {
      await Deno.chmod(dir, 0o555);
      await assert.rejects(
        () => writeFileAtomic(join(dir, "x.png"), "x"),
        (e: unknown) => e instanceof IoError && /: permission denied$/.test(e.message),
      );
    } finally {
      await Deno.chmod(dir, 0o755);
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("writeOutput() to a full stdout fails as one IoError line", async () => {
  const full = {
    writable: new WritableStream<Uint8Array>({
      write() {
        throw Object.assign(new Error("No space left on device (os error 28)"), {
          code: "ENOSPC",
        });
      },
    }),
    isTerminal: () => false,
  };
  await assert.rejects(
    () => writeOutput(new Uint8Array([1]), { binary: true, stdout: full }),
    (e: unknown) =>
      e instanceof IoError && e.message === "Cannot write to stdout: no space left on device",
  );
});
