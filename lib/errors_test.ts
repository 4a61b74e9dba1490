import assert from "node:assert/strict";
import {
  ExitCode,
  exitCodeFor,
  formatError,
  InputError,
  IoError,
  toIoError,
  UsageError,
  WeightsError,
} from "./errors.ts";

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

Deno.test("exitCodeFor()/formatError(): file-system errors nobody wrapped are I/O, in plain words", () => {
  const sandbox = new Deno.errors.NotCapable(
    'Requires all access to "/proc/x/graphs", run again with the --allow-all flag',
  );
  const full = Object.assign(new Error("No space left on device (os error 28)"), {
    code: "ENOSPC",
  });
  const readOnly = Object.assign(
    new Error("Read-only file system (os error 30): open '/mnt/ro/x.png'"),
    { code: "EROFS" },
  );
  for (const e of [sandbox, full, readOnly]) assert.equal(exitCodeFor(e), ExitCode.io);
  assert.equal(
    formatError(sandbox),
    'denoise: Cannot use "/proc/x/graphs": denoise does not read or write system paths such as ' +
      "/dev, /proc and /sys",
  );
  assert.equal(formatError(full), "denoise: No space left on device");
  assert.equal(formatError(readOnly), 'denoise: Cannot use "/mnt/ro/x.png": read-only file system');
  // A code alone is not enough: only errno-style errors from the OS count.
  assert.equal(exitCodeFor(Object.assign(new Error("x"), { code: "EWHATEVER" })), 1);
  const wrapped = toIoError(full, 'Cannot write "/dev/full"');
  assert.ok(wrapped instanceof IoError);
  assert.equal(formatError(wrapped), 'denoise: Cannot write "/dev/full": no space left on device');
});

Deno.test("WeightsError is a TypeError that exits 3 without the bug hint", () => {
  const e = new WeightsError('Cannot build X: misshapen "w" [2] (expected [3])', { hint: "h" });
  assert.ok(e instanceof TypeError);
  assert.equal(exitCodeFor(e), ExitCode.badInput);
  assert.equal(
    formatError(e),
    'denoise: Cannot build X: misshapen "w" [2] (expected [3])\nhint: h',
  );
});
