"""BM25 alone (the `bm25` mode): leave-one-collection-out choice of (k, b, avg_len) by mean nDCG@10.

python bm25alone.py adi,medline,time,cacm,lisa,scifact,limit-small [--avg 150,60,90]
"""

import os
import pickle
import sys

import numpy as np

from lib import E

names = sys.argv[1].split(",")
avgs = sys.argv[sys.argv.index("--avg") + 1].split(",") if "--avg" in sys.argv else None
res = {n: pickle.load(open(os.path.join(E, "results-bm25", f"{n}.pkl"), "rb")) for n in names}
TODAY = "k=1.2 b=0.75 avg=150"


def mean(n, tag):
    return float(np.mean([v["ndcg@10"] for v in res[n][f"ch:bm25 {tag}"].values()]))


tags = sorted({k[8:] for k in res[names[0]] if k.startswith("ch:bm25 k=")})
tags = [t for t in tags if not avgs or t.split("avg=")[1] in avgs]
held, base = [], []
for H in names:
    train = [n for n in names if n != H]
    pick = max(tags, key=lambda t: np.mean([mean(n, t) for n in train]))
    held.append(mean(H, pick))
    base.append(mean(H, TODAY))
    print(f"| {H} | {pick} | {held[-1]:.4f} | {base[-1]:.4f} |")
print(f"| **mean** |  | **{np.mean(held):.4f}** | **{np.mean(base):.4f}** |")
