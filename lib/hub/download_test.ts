import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { InputError, ModelNotFoundError, NetworkError } from "../errors.ts";
import { downloadFile } from "./download.ts";
import { parseLock } from "./lock.ts";
import { fileUrl, modelStatus, pullModel, verifyModel } from "./pull.ts";

const PAYLOAD = new Uint8Array(200_000).map((_, i) => (i * 31 + 7) & 0xff);
const SHA = createHash("sha256").update(PAYLOAD).digest("hex");

interface Behaviour {
  /** Drop the connection after this many bytes on the first request. */
  dropAfter?: number;
  /** Ignore Range headers. */
  ignoreRange?: boolean;
  /** Flip a byte in the body. */
  corrupt?: boolean;
  /** Status to answer with. */
  status?: number;
}

async function withServer(
  behaviour: Behaviour,
  fn: (
    url: string,
    requests: Array<{ range: string | null; auth: string | null }>,
  ) => Promise<void>,
) {
  const requests: Array<{ range: string | null; auth: string | null }> = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    const range = req.headers.get("range");
    requests.push({ range, auth: req.headers.get("authorization") });
    if (behaviour.status) return new Response("no", { status: behaviour.status });
    let start = 0;
    const m = range ? /^bytes=(\d+)-$/.exec(range) : null;
    if (m && !behaviour.ignoreRange) start = Number(m[1]);
    let body = PAYLOAD.slice(start);
    if (behaviour.corrupt) {
      body = body.slice();
      body[body.length - 1] = body[body.length - 1]! ^ 0xff;
    }
    const drop = requests.length === 1 ? behaviour.dropAfter : undefined;
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        if (drop !== undefined) {
          controller.enqueue(body.slice(0, drop));
          // Let the first bytes reach the client before the connection breaks.
          // End early: the body is shorter than its content-length, as when a connection drops.
          setTimeout(() => controller.close(), 100);
        } else {
          controller.enqueue(body);
          controller.close();
        }
      },
    });
    const headers = new Headers({ "content-length": String(body.length) });
    if (start > 0) {
      headers.set("content-range", `bytes ${start}-${PAYLOAD.length - 1}/${PAYLOAD.length}`);
    }
    return new Response(stream, { status: start > 0 ? 206 : 200, headers });
  });
  try {
    await fn(`http://127.0.0.1:${server.addr.port}/file.bin`, requests);
  } finally {
    await server.shutdown();
  }
}

async function tempDir(): Promise<string> {
  return await Deno.makeTempDir({ prefix: "denoise-hub-" });
}

Deno.test("downloadFile() fetches, verifies and renames into place", async () => {
  const dir = await tempDir();
  await withServer({}, async (url) => {
    const dest = join(dir, "a", "file.bin");
    const result = await downloadFile(url, dest, { size: PAYLOAD.length, sha256: SHA });
    assert.equal(result.sha256, SHA);
    assert.deepEqual(await Deno.readFile(dest), PAYLOAD);
    assert.deepEqual([...Deno.readDirSync(join(dir, "a"))].map((e) => e.name), ["file.bin"]);
  });
  await Deno.remove(dir, { recursive: true });
});

Deno.test("downloadFile() resumes with a Range request after a dropped connection", async () => {
  const dir = await tempDir();
  await withServer({ dropAfter: 70_000 }, async (url, requests) => {
    const dest = join(dir, "file.bin");
    await downloadFile(url, dest, { size: PAYLOAD.length, sha256: SHA });
    assert.deepEqual(await Deno.readFile(dest), PAYLOAD);
    assert.equal(requests.length, 2);
    assert.equal(requests[0]!.range, null);
    assert.match(requests[1]!.range ?? "", /^bytes=\d+-$/);
    assert.ok(Number(/\d+/.exec(requests[1]!.range!)![0]) > 0, "resumed past zero");
  });
  await Deno.remove(dir, { recursive: true });
});

Deno.test("downloadFile() resumes a .part left by an earlier run", async () => {
  const dir = await tempDir();
  const dest = join(dir, "file.bin");
  await Deno.writeFile(`${dest}.part`, PAYLOAD.slice(0, 12_345));
  await withServer({}, async (url, requests) => {
    const result = await downloadFile(url, dest, { size: PAYLOAD.length, sha256: SHA });
    assert.equal(result.resumedFrom, 12_345);
    assert.equal(requests[0]!.range, "bytes=12345-");
    assert.deepEqual(await Deno.readFile(dest), PAYLOAD);
  });
  await Deno.remove(dir, { recursive: true });
});

Deno.test("downloadFile() starts over when the server ignores Range", async () => {
  const dir = await tempDir();
  const dest = join(dir, "file.bin");
  await Deno.writeFile(`${dest}.part`, PAYLOAD.slice(0, 5_000));
  await withServer({ ignoreRange: true }, async (url) => {
    await downloadFile(url, dest, { size: PAYLOAD.length, sha256: SHA });
    assert.deepEqual(await Deno.readFile(dest), PAYLOAD);
  });
  await Deno.remove(dir, { recursive: true });
});

Deno.test("downloadFile() rejects a corrupt file and leaves nothing behind", async () => {
  const dir = await tempDir();
  await withServer({ corrupt: true }, async (url) => {
    const dest = join(dir, "file.bin");
    await assert.rejects(
      () => downloadFile(url, dest, { size: PAYLOAD.length, sha256: SHA }),
      (e: unknown) => e instanceof InputError && /corrupt/.test(e.message),
    );
    assert.deepEqual([...Deno.readDirSync(dir)], []);
  });
  await Deno.remove(dir, { recursive: true });
});

Deno.test("downloadFile() maps 404 and 401 to clear errors", async () => {
  const dir = await tempDir();
  await withServer({ status: 404 }, async (url) => {
    await assert.rejects(() => downloadFile(url, join(dir, "x")), ModelNotFoundError);
  });
  await withServer({ status: 401 }, async (url) => {
    await assert.rejects(
      () => downloadFile(url, join(dir, "x")),
      (e: unknown) => e instanceof NetworkError && /HF_TOKEN/.test(e.hint ?? ""),
    );
  });
  await withServer({ dropAfter: 10 }, async (url) => {
    // Only one attempt allowed: the drop is final, and the part file stays for a later resume.
    await assert.rejects(
      () => downloadFile(url, join(dir, "y"), { size: PAYLOAD.length, retries: 0 }),
      NetworkError,
    );
    assert.ok((await Deno.stat(join(dir, "y.part"))).size > 0);
  });
  await Deno.remove(dir, { recursive: true });
});

function lockFor(sha: string | null) {
  return parseLock(JSON.stringify({
    version: 1,
    models: {
      tiny: {
        description: "test",
        family: "sd1",
        source: { hub: "huggingface", repo: "owner/tiny", revision: "a".repeat(40) },
        layout: "diffusers",
        files: [{ path: "unet/file.bin", size: PAYLOAD.length, sha256: sha }],
        verified: sha !== null,
      },
    },
  }));
}

Deno.test("pullModel() downloads into <root>/models/<alias>/<revision>, sends HF_TOKEN, verifies", async () => {
  const root = await tempDir();
  const model = lockFor(SHA).models.tiny!;
  await withServer({}, async (url, requests) => {
    const endpoint = url.replace(/\/file\.bin$/, "");
    let served = "";
    const fetchSpy: typeof fetch = (input, init) => {
      served = String(input);
      return fetch(url, init);
    };
    const dir = await pullModel("tiny", model, {
      root,
      endpoint,
      token: "secret",
      fetch: fetchSpy,
    });
    assert.equal(dir, join(root, "models", "tiny", "a".repeat(40)));
    assert.equal(served, fileUrl(endpoint, model, "unet/file.bin"));
    assert.match(served, /\/owner\/tiny\/resolve\/a{40}\/unet\/file\.bin$/);
    assert.equal(requests[0]!.auth, "Bearer secret");
    assert.ok((await modelStatus(root, "tiny", model)).every((s) => s.present));
    assert.deepEqual(await verifyModel(root, "tiny", model), [{ path: "unet/file.bin", ok: true }]);
    // A second pull touches nothing.
    await pullModel("tiny", model, {
      root,
      endpoint,
      fetch: () => Promise.reject(new Error("no")),
    });
    // Tampering is caught by verify.
    const f = join(dir, "unet", "file.bin");
    const bytes = await Deno.readFile(f);
    bytes[0] = bytes[0]! ^ 1;
    await Deno.writeFile(f, bytes);
    const [result] = await verifyModel(root, "tiny", model);
    assert.equal(result!.ok, false);
    assert.match(result!.reason ?? "", /SHA-256/);
  });
  await Deno.remove(root, { recursive: true });
});

Deno.test("pullModel() offline never touches the network", async () => {
  const root = await tempDir();
  const model = lockFor(SHA).models.tiny!;
  let calls = 0;
  await assert.rejects(
    () =>
      pullModel("tiny", model, {
        root,
        offline: true,
        fetch: () => {
          calls++;
          return Promise.reject(new Error("network"));
        },
      }),
    (e: unknown) => e instanceof ModelNotFoundError && /DENOISE_OFFLINE/.test(e.message),
  );
  assert.equal(calls, 0);
  await Deno.remove(root, { recursive: true });
});

Deno.test("parseLock() rejects branch revisions and paths that leave the repository", () => {
  const base = JSON.parse(JSON.stringify(lockFor(null)));
  base.models.tiny.source.revision = "main";
  assert.throws(() => parseLock(JSON.stringify(base)), /40-hex/);
  const evil = JSON.parse(JSON.stringify(lockFor(null)));
  evil.models.tiny.files[0].path = "../../etc/passwd";
  assert.throws(() => parseLock(JSON.stringify(evil)), /relative path/);
});

Deno.test("pullModel() with a size and hash the lock does not know: downloads, reports unverified", async () => {
  const root = await tempDir();
  const lock = parseLock(JSON.stringify({
    version: 1,
    models: {
      loose: {
        description: "test",
        family: "turbo",
        source: { hub: "huggingface", repo: "owner/loose", revision: "b".repeat(40) },
        layout: "diffusers",
        files: [{ path: "unet/file.bin", size: null, sha256: null }],
        verified: false,
      },
    },
  }));
  const model = lock.models.loose!;
  await withServer({}, async (url) => {
    const endpoint = url.replace(/\/file\.bin$/, "");
    const dir = await pullModel("loose", model, {
      root,
      endpoint,
      fetch: (_input, init) => fetch(url, init),
    });
    assert.deepEqual(await Deno.readFile(join(dir, "unet", "file.bin")), PAYLOAD);
    assert.ok((await modelStatus(root, "loose", model)).every((s) => s.present));
    const [result] = await verifyModel(root, "loose", model);
    assert.equal(result!.ok, true);
    assert.match(result!.reason ?? "", /unverified/);
  });
  await Deno.remove(root, { recursive: true });
});
