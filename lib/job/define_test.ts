import assert from "node:assert/strict";
import { z } from "zod";
import { InputError, UsageError } from "../errors.ts";
import { defineJob, resolveJob } from "./define.ts";
import { unwrapJob } from "./load.ts";

const EchoJob = defineJob("echo", {
  text: z.string().default("hi"),
  times: z.number().int().positive().default(1),
});

Deno.test("resolveJob() applies defaults, then the job document, then flags", () => {
  assert.deepEqual(resolveJob(EchoJob, "echo"), {
    command: "echo",
    version: 1,
    text: "hi",
    times: 1,
  });
  const job = resolveJob(EchoJob, "echo", {
    document: { command: "echo", text: "from file", times: 3 },
    flags: { times: 5 },
  });
  assert.deepEqual(job, { command: "echo", version: 1, text: "from file", times: 5 });
});

Deno.test("resolveJob() names bad fields; flags give UsageError, documents InputError", () => {
  assert.throws(
    () => resolveJob(EchoJob, "echo", { flags: { times: -1 } }),
    (e: unknown) => e instanceof UsageError && /"times"/.test(e.message),
  );
  assert.throws(
    () => resolveJob(EchoJob, "echo", { document: { text: 3 }, documentLabel: "job.json" }),
    (e: unknown) => e instanceof InputError && /job\.json.*"text"/.test(e.message),
  );
  assert.throws(
    () => resolveJob(EchoJob, "echo", { document: { txet: "typo" } }),
    (e: unknown) => e instanceof InputError && /unknown field "txet"/.test(e.message),
  );
});

Deno.test("resolveJob() refuses a job made for another command", () => {
  assert.throws(
    () => resolveJob(EchoJob, "echo", { document: { command: "generate" } }),
    (e: unknown) => e instanceof UsageError && /denoise generate/.test(e.message),
  );
});

Deno.test("unwrapJob() accepts a Job or a meta read document", () => {
  assert.deepEqual(unwrapJob({ command: "echo" }), { command: "echo" });
  assert.deepEqual(unwrapJob({ format: "png", job: { command: "echo" } }), { command: "echo" });
  assert.equal(unwrapJob([1]), undefined);
  assert.equal(unwrapJob("x"), undefined);
});
