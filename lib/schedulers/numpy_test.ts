import assert from "node:assert/strict";
import { torchLinspaceF32 } from "./numpy.ts";

Deno.test("torchLinspaceF32() counts from both ends like torch", () => {
  const v = torchLinspaceF32(0, 1, 5);
  assert.deepEqual(Array.from(v), [0, 0.25, 0.5, 0.75, 1]);
  assert.equal(torchLinspaceF32(0.1, 0.9, 3)[2], Math.fround(0.9));
});
