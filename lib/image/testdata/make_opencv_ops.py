"""Writes opencv_ops.json: OpenCV's drawing (ellipse2Poly, fillConvexPoly, filled circle, thick
line), resizing (INTER_LINEAR, INTER_AREA when enlarging, INTER_LANCZOS4) and affine warping
(getAffineTransform, warpAffine INTER_LINEAR) on small images, the reference for
lib/image/draw_test.ts, resize_linear_test.ts, resize_lanczos4_test.ts and warp_affine_test.ts.
Run with opencv-python-headless 4.14.0.94 and numpy (x86-64 wheels):  python make_opencv_ops.py

Inputs are made from the same xorshift32 generator as make_pil_resample.py (the tests reproduce
it), so only outputs are stored (base64 of the bytes, row-major HWC)."""
import base64, json, math
import cv2
import numpy as np


def noise(width, height, channels, seed):
    state = seed & 0xFFFFFFFF
    out = bytearray()
    for _ in range(width * height * channels):
        state ^= (state << 13) & 0xFFFFFFFF
        state ^= state >> 17
        state ^= (state << 5) & 0xFFFFFFFF
        out.append(state & 0xFF)
    return np.frombuffer(bytes(out), np.uint8).reshape(height, width, channels).copy()


def b64(a):
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode()


out = {"how": __doc__.split("\n")[0], "versions": {"opencv": cv2.__version__, "numpy": np.__version__}}

# ellipse2Poly as the pose drawing calls it: (int centre, (int half length, 4), int angle, 0, 360, 1)
ellipses = []
for center, axes, angle in [((20, 15), (12, 4), 0), ((20, 15), (12, 4), 37), ((31, 7), (9, 4), -63),
                            ((2, 28), (20, 4), 171), ((40, 40), (0, 4), 90), ((10, 10), (1, 4), 359),
                            ((25, 20), (30, 4), 212), ((5, 5), (3, 2), 45)]:
    pts = cv2.ellipse2Poly(center, axes, angle, 0, 360, 1)
    canvas = np.zeros((32, 48, 3), np.uint8)
    cv2.fillConvexPoly(canvas, pts, (255, 85, 0))
    ellipses.append({"center": center, "axes": axes, "angle": angle,
                     "points": pts.tolist(), "filled": b64(canvas)})
out["ellipses"] = ellipses

circles = []
for center, radius in [((10, 10), 4), ((0, 5), 4), ((47, 31), 4), ((20, 3), 3), ((-2, 10), 3), ((24, 16), 0), ((24, 16), 1), ((30, 20), 7)]:
    canvas = np.zeros((32, 48, 3), np.uint8)
    cv2.circle(canvas, center, radius, (0, 0, 255), thickness=-1)
    circles.append({"center": center, "radius": radius, "image": b64(canvas)})
out["circles"] = circles

lines = []
for p1, p2, thickness, color in [((3, 4), (40, 25), 2, (255, 76.5, 0)), ((40, 2), (5, 30), 2, (0, 229.5, 255)),
                                 ((10, 10), (10, 25), 2, (12.75, 0, 255)), ((2, 16), (45, 16), 2, (255, 0, 127.5)),
                                 ((-5, -3), (20, 40), 2, (255, 255, 255)), ((3, 4), (40, 25), 1, (9, 9, 9)),
                                 ((30, 5), (31, 29), 3, (200, 100, 50)), ((7, 7), (7, 7), 2, (1, 2, 3))]:
    canvas = np.zeros((32, 48, 3), np.uint8)
    cv2.line(canvas, p1, p2, color, thickness=thickness)
    lines.append({"p1": p1, "p2": p2, "thickness": thickness, "color": color, "image": b64(canvas)})
# Random lines, many crossing the border (OpenCV 4.x clips thick lines to the image grown by
# the thickness before drawing them).
state = 12345
def rand(n):
    global state
    state = (state * 1103515245 + 12345) & 0x7FFFFFFF
    return state % n
for _ in range(40):
    p1 = (rand(160) - 60, rand(150) - 60)
    p2 = (rand(160) - 60, rand(150) - 60)
    thickness = 1 + rand(5)
    canvas = np.zeros((32, 48), np.uint8)
    cv2.line(canvas, p1, p2, 255, thickness=thickness)
    lines.append({"p1": p1, "p2": p2, "thickness": thickness, "color": [255], "image": b64(canvas)})
out["lines"] = lines

resizes = []
for (w, h, c, seed), (ow, oh), mode in [((17, 13, 3, 1), (29, 31), "linear"), ((50, 40, 3, 2), (23, 17), "linear"),
                                         ((64, 48, 3, 3), (32, 24), "linear"), ((33, 20, 3, 4), (100, 61), "linear"),
                                         ((40, 30, 1, 5), (40, 7), "linear"), ((123, 77, 3, 6), (151, 95), "linear"),
                                         ((10, 8, 3, 7), (23, 5), "area"), ((7, 7, 1, 8), (15, 15), "area"),
                                         ((20, 16, 3, 9), (45, 37), "lanczos4"), ((9, 9, 1, 10), (64, 64), "lanczos4"),
                                         ((30, 20, 3, 11), (31, 64), "lanczos4")]:
    src = noise(w, h, c, seed)
    flag = {"linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA, "lanczos4": cv2.INTER_LANCZOS4}[mode]
    dst = cv2.resize(src, (ow, oh), interpolation=flag)
    resizes.append({"input": [w, h, c, seed], "size": [ow, oh], "mode": mode, "output": b64(dst)})
out["resizes"] = resizes

warps = []
for (w, h, seed), src_pts, dst_pts, (ow, oh) in [
    ((60, 50, 12), [[30.5, 25.25], [30.5, 5.0], [10.25, 5.0]], [[18, 24], [18, 6], [0, 6]], (36, 48)),
    ((60, 50, 13), [[12.3, 40.7], [12.3, -3.1], [-31.1, -3.1]], [[18, 24], [18, 6], [0, 6]], (36, 48)),
    ((40, 40, 14), [[0, 0], [39, 5], [3, 39]], [[2, 1], [30, 9], [5, 33]], (35, 35)),
]:
    src = noise(w, h, 3, seed)
    m = cv2.getAffineTransform(np.float32(src_pts), np.float32(dst_pts))
    dst = cv2.warpAffine(src, m, (ow, oh), flags=cv2.INTER_LINEAR)
    warps.append({"input": [w, h, seed], "src": src_pts, "dst": dst_pts, "size": [ow, oh],
                  "matrix": [float(v) for v in m.reshape(-1)], "output": b64(dst)})
out["warps"] = warps

with open("opencv_ops.json", "w") as f:
    json.dump(out, f, indent=1)
    f.write("\n")
