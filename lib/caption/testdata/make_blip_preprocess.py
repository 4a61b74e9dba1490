"""Writes blip_preprocess.json and the PNG inputs beside it: BlipImageProcessor's pixel_values
(transformers 4.30 image_processing_blip.py) recomputed from its primitives, the reference for
lib/caption/blip_image_processor_test.ts. Run with Debian bookworm's python3-pil (Pillow 9.4.0)
and python3-numpy (1.24.2), the versions of ../shared/golden:  /usr/bin/python3 make_blip_preprocess.py

The steps are transformers 4.30's, written out because transformers itself is not installed
here: PIL.Image.open(f).convert("RGB") (convert_rgb), np.array, Image.fromarray + resize((w, h),
BICUBIC) + np.array (image_transforms.resize), (x * 1/255).astype(float32) (rescale),
(x - mean32) / std32 (normalize, channels last), HWC -> CHW."""
import hashlib, json
import numpy as np
import PIL
from PIL import Image

MEAN = [0.48145466, 0.4578275, 0.40821073]
STD = [0.26862954, 0.26130258, 0.27577711]
SIZE = 64

def xorshift_bytes(n, seed):
    state = seed & 0xFFFFFFFF
    out = bytearray()
    for _ in range(n):
        state ^= (state << 13) & 0xFFFFFFFF
        state ^= state >> 17
        state ^= (state << 5) & 0xFFFFFFFF
        out.append(state & 0xFF)
    return bytes(out)

def gradient(w, h):
    a = np.zeros((h, w, 3), np.uint8)
    for y in range(h):
        for x in range(w):
            a[y, x] = (x * 255 // (w - 1), y * 255 // (h - 1), (x + y) * 255 // (w + h - 2))
    return a

# Inputs: what the held-back golden cases look like (a 128x128 gradient), plus the conversions
# convert("RGB") does (alpha dropped without compositing, gray replicated) and a non-square photo-like
# image that is upscaled in one axis and downscaled in the other.
noise = np.frombuffer(xorshift_bytes(90 * 40 * 3, 7), np.uint8).reshape(40, 90, 3)
smooth = (gradient(90, 40).astype(np.int32) * 3 // 4 + noise // 4).astype(np.uint8)
rgba = np.concatenate([gradient(80, 50), np.frombuffer(xorshift_bytes(80 * 50, 9), np.uint8).reshape(50, 80, 1)], axis=2)
gray = gradient(70, 90)[:, :, 0]
inputs = {
    "gradient_128.png": Image.fromarray(gradient(128, 128), "RGB"),
    "smooth_90x40.png": Image.fromarray(smooth, "RGB"),
    "rgba_80x50.png": Image.fromarray(rgba, "RGBA"),
    "gray_70x90.png": Image.fromarray(gray, "L"),
}
cases = []
for name, im in inputs.items():
    im.save(name)
    image = np.array(Image.open(name).convert("RGB"))
    image = np.array(Image.fromarray(image).resize((SIZE, SIZE), resample=Image.BICUBIC))
    image = (image * 0.00392156862745098).astype(np.float32)
    image = (image - np.array(MEAN, np.float32)) / np.array(STD, np.float32)
    chw = np.ascontiguousarray(image.transpose(2, 0, 1)).astype("<f4")
    flat = chw.reshape(-1)
    idx = list(range(0, flat.size, 389))
    cases.append({"file": name, "shape": [1, 3, SIZE, SIZE], "sha256_f32": hashlib.sha256(flat.tobytes()).hexdigest(),
                  "sample_index": idx, "sample_values": [float(flat[i]) for i in idx]})

json.dump({"how": __doc__.split("\n\n")[0] + " See make_blip_preprocess.py.",
           "versions": {"PIL": PIL.__version__, "numpy": np.__version__}, "size": SIZE,
           "image_mean": MEAN, "image_std": STD, "cases": cases}, open("blip_preprocess.json", "w"), indent=1)
