"""Peer of `dagger bench ooc`: numpy's memmap doing the same map and sum out of core.

    python3 -I benches/peers/ooc.py --dir DIR --n 1073741824 --chunk 16777216

In DIR (a directory the caller created for it) it writes x.f32, n float32 values, chunk by
chunk (not timed); then, timed, maps y = 2x + 1 into y.f32 chunk by chunk through two
memmaps, flushes it, and sums y chunk by chunk (in float64). Whole-array expressions would
allocate the full array in memory; chunks keep numpy out of core as dagger is. Both files
are removed at the end.

Prints one JSON object: peer, n, chunk, secs (map and sum) and sum.
"""

import argparse
import json
import os
import time


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dir", required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--chunk", type=int, required=True)
    a = p.parse_args()
    import numpy as np

    xp = os.path.join(a.dir, "x.f32")
    yp = os.path.join(a.dir, "y.f32")
    for path in (xp, yp):
        # Never write over a file that is there already.
        with open(path, "xb") as f:
            f.truncate(a.n * 4)
    try:
        rng = np.random.default_rng(7)
        x = np.memmap(xp, dtype=np.float32, mode="r+", shape=(a.n,))
        for i in range(0, a.n, a.chunk):
            j = min(i + a.chunk, a.n)
            x[i:j] = rng.random(j - i, dtype=np.float32)
        x.flush()
        del x

        t0 = time.perf_counter()
        x = np.memmap(xp, dtype=np.float32, mode="r", shape=(a.n,))
        y = np.memmap(yp, dtype=np.float32, mode="r+", shape=(a.n,))
        for i in range(0, a.n, a.chunk):
            j = min(i + a.chunk, a.n)
            np.multiply(x[i:j], np.float32(2), out=y[i:j])
            y[i:j] += np.float32(1)
        y.flush()
        total = 0.0
        for i in range(0, a.n, a.chunk):
            j = min(i + a.chunk, a.n)
            total += float(y[i:j].sum(dtype=np.float64))
        secs = time.perf_counter() - t0
        del x, y
    finally:
        for path in (xp, yp):
            try:
                os.remove(path)
            except FileNotFoundError:
                pass
    print(json.dumps({"peer": "numpy-memmap", "n": a.n, "chunk": a.chunk, "secs": secs, "sum": total}))


if __name__ == "__main__":
    main()
