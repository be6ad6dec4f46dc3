"""Peer of `dagger bench sort`: numpy.sort of the same f64 data.

    python3 -I benches/peers/sort.py --data a.npy --repeat 2

Loads the 1-D array dagger wrote (`--data`, a .npy file), then times `numpy.sort` of it
(the default kind: numpy's introsort, or its SIMD sort where the CPU has one) --repeat
times. numpy sorts on one thread.

Prints one JSON object: peer, n and secs (the best run).
"""

import argparse
import json
import time


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--repeat", type=int, default=2)
    a = p.parse_args()
    import numpy as np

    x = np.load(a.data)
    secs = float("inf")
    for _ in range(max(a.repeat, 1)):
        t0 = time.perf_counter()
        s = np.sort(x)
        secs = min(secs, time.perf_counter() - t0)
        del s
    print(json.dumps({"peer": "numpy.sort", "n": int(x.size), "secs": secs}))


if __name__ == "__main__":
    main()
