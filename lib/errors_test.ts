import assert from "node:assert/strict";
import { ExitCode, exitCodeFor, formatError, InputError, IoError, UsageError } from "./errors.ts";

Deno.test("exitCodeFor() maps typed and built-in errors to documented codes", () => {
  assert.equal(exitCodeFor(new UsageError("x")), 2);
  assert.equal(exitCodeFor(new InputError("x")), 3);
  assert.equal(exitCodeFor(new IoError("x")), 5);
  assert.equal(exitCodeFor(new RangeError("x")), ExitCode.badInput);
  assert.equal(exitCodeFor(new SyntaxError("x")), ExitCode.badInput);
  assert.equal(exitCodeFor(new Deno.errors.NotFound("x")), ExitCode.io);
  assert.equal(exitCodeFor(new Error("bug")), ExitCode.failure);
});

Deno.test("formatError() is one line plus hint, stack only with debug", () => {
  const err = new InputError("The image is truncated\nmore detail", { hint: "re-export it" });
  assert.equal(formatError(err), "denoise: The image is truncated\nhint: re-export it");
  assert.match(formatError(err, { debug: true }), /at .*errors_test\.ts/);
  assert.match(formatError(new Error("boom")), /--debug/);
});
