"""Writes pil_resample.json: Pillow's Image.resize on small noise images, the reference for
lib/image/pil_resample_test.ts. Run with Debian bookworm's python3-pil (Pillow 9.4.0, the version
of ../shared/golden) and python3-numpy:  /usr/bin/python3 make_pil_resample.py

Inputs are made from a 32-bit xorshift generator that the test reproduces, so only the outputs
are stored (base64 of the RGB bytes, row-major HWC)."""
import base64, json
import PIL
from PIL import Image

def noise(width, height, seed):
    # xorshift32, one byte per draw (low 8 bits), RGB interleaved
    state = seed & 0xFFFFFFFF
    out = bytearray()
    for _ in range(width * height * 3):
        state ^= (state << 13) & 0xFFFFFFFF
        state ^= state >> 17
        state ^= (state << 5) & 0xFFFFFFFF
        out.append(state & 0xFF)
    return bytes(out)

def smooth(width, height, seed):
    # a gradient plus mild noise: closer to photographs than pure noise
    n = noise(width, height, seed)
    out = bytearray()
    for y in range(height):
        for x in range(width):
            for c in range(3):
                base = (x * 255 // max(width - 1, 1) + y * 255 // max(height - 1, 1) * (c + 1)) // 2
                out.append((base + n[(y * width + x) * 3 + c] // 8) & 0xFF)
    return bytes(out)

FILTERS = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "lanczos": Image.LANCZOS,
           "box": Image.BOX, "hamming": Image.HAMMING}
CASES = [
    # (kind, in_w, in_h, out_w, out_h, filters)
    ("noise", 64, 64, 32, 32, list(FILTERS)),
    ("smooth", 128, 128, 32, 32, ["bicubic"]),
    ("noise", 19, 13, 32, 32, list(FILTERS)),
    ("smooth", 150, 97, 32, 24, ["bicubic"]),
    ("noise", 97, 150, 20, 32, ["bicubic"]),
    ("noise", 32, 20, 32, 32, ["bicubic"]),
    ("noise", 25, 32, 32, 32, ["bicubic"]),
    ("smooth", 301, 203, 24, 24, ["bicubic"]),
    ("noise", 7, 5, 3, 2, ["bicubic", "lanczos"]),
]

cases = []
for i, (kind, w, h, ow, oh, filters) in enumerate(CASES):
    seed = 1000 + i
    data = (noise if kind == "noise" else smooth)(w, h, seed)
    im = Image.frombytes("RGB", (w, h), data)
    for name in filters:
        out = im.resize((ow, oh), resample=FILTERS[name])
        cases.append({"input": {"kind": kind, "width": w, "height": h, "seed": seed},
                      "filter": name, "width": ow, "height": oh,
                      "output_b64": base64.b64encode(out.tobytes()).decode()})

json.dump({"how": "PIL.Image.frombytes('RGB', (w, h), input).resize((width, height), resample=filter); "
                  "inputs from make_pil_resample.py noise()/smooth() with the given seed",
           "versions": {"PIL": PIL.__version__}, "cases": cases},
          open("pil_resample.json", "w"), indent=1)
