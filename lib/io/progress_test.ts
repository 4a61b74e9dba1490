import assert from "node:assert/strict";
import { createProgressReporter, formatBar } from "./progress.ts";

Deno.test("createProgressReporter() json mode writes one JSON line per event", () => {
  const lines: string[] = [];
  let t = 0;
  const r = createProgressReporter("json", {
    sink: { write: (s) => lines.push(s) },
    isTerminal: true,
    now: () => t,
  });
  r.report({ task: "denoise", step: 0, total: 2 });
  t = 500;
  r.report({ task: "denoise", step: 1, total: 2, detail: "t=999" });
  assert.equal(r.mode, "json");
  assert.deepEqual(lines.map((l) => JSON.parse(l)), [
    { event: "progress", task: "denoise", step: 0, total: 2, elapsed_s: 0 },
    { event: "progress", task: "denoise", step: 1, total: 2, elapsed_s: 0.5, detail: "t=999" },
  ]);
  assert.ok(lines.every((l) => l.endsWith("\n")));
});

Deno.test("createProgressReporter() auto is a bar on a terminal and silent otherwise", () => {
  const out: string[] = [];
  const silent = createProgressReporter("auto", {
    sink: { write: (s) => out.push(s) },
    isTerminal: false,
  });
  silent.report({ task: "x", step: 1, total: 2 });
  assert.equal(silent.mode, "none");
  assert.equal(out.length, 0);
  const bar = createProgressReporter("auto", {
    sink: { write: (s) => out.push(s) },
    isTerminal: true,
  });
  assert.equal(bar.mode, "bar");
  bar.report({ task: "x", step: 2, total: 2 });
  assert.match(out.join(""), /x \[#+\] 2\/2/);
  assert.ok(out.join("").endsWith("\n"), "a finished bar ends its line");
});

Deno.test("formatBar() shows counts, rate and ETA without colour codes", () => {
  const line = formatBar({ task: "denoise", step: 5, total: 10 }, 2.5, 10, false);
  assert.equal(line, "denoise [#####.....] 5/10 2.00 it/s ETA 3s");
  assert.ok(!line.includes("\x1b"), "no ANSI escapes without colour");
});
