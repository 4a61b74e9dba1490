"""Writes depth_post.json: the depth-estimation post-processing on small random depth maps, the
reference for lib/preprocess/depth_test.ts (and lib/image/torch_bicubic_test.ts):
torch.nn.functional.interpolate(d[None, None], size, mode="bicubic", align_corners=False), then
the transformers depth-estimation pipeline's (d - min) / (max - min) * 255 cast to uint8.
Run with torch 2.14.1 (CPU) and numpy:  python make_depth_post.py

Depth maps come from the xorshift32 generator of ../../image/testdata/make_opencv_ops.py
(value / 255 * 4, as float32), so only outputs are stored (base64 of little-endian float32 and
of the uint8 image)."""
import base64, json
import numpy as np
import torch


def noise(n, seed):
    state = seed & 0xFFFFFFFF
    out = np.empty(n, np.float32)
    for i in range(n):
        state ^= (state << 13) & 0xFFFFFFFF
        state ^= state >> 17
        state ^= (state << 5) & 0xFFFFFFFF
        out[i] = np.float32((state & 0xFF) / 255 * 4)
    return out


cases = []
for (w, h, seed), (ow, oh) in [((37, 37, 1), (60, 50)), ((28, 14, 2), (100, 47)), ((50, 40, 3), (23, 17)),
                               ((14, 14, 4), (14, 14)), ((42, 28, 5), (200, 133))]:
    d = torch.from_numpy(noise(w * h, seed).reshape(h, w))
    up = torch.nn.functional.interpolate(d[None, None], size=(oh, ow), mode="bicubic", align_corners=False)[0, 0]
    depth = up.numpy()
    image = ((depth - depth.min()) / (depth.max() - depth.min()) * 255).astype("uint8")
    cases.append({"input": [w, h, seed], "size": [ow, oh],
                  "interpolated": base64.b64encode(depth.astype("<f4").tobytes()).decode() if ow * oh <= 5000 else None,
                  "image": base64.b64encode(image.tobytes()).decode()})

with open("depth_post.json", "w") as f:
    json.dump({"how": __doc__.split("\n")[0], "versions": {"torch": torch.__version__, "numpy": np.__version__},
               "cases": cases}, f, indent=1)
    f.write("\n")
