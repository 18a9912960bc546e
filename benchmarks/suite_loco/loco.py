import sys, pickle, os, numpy as np, re

from lib import E

R = f"{E}/results"
names = [n for n in sys.argv[1].split(",")]
# --fallback-none: a fold without a spread reference of its own (a collection indexed
# last) uses the reference-free variant instead of dropping the family.
FALLBACK = "--fallback-none" in sys.argv[2:]
res = {n: pickle.load(open(f"{R}/{n}.pkl", "rb")) for n in names}


def mean(n, k, m="ndcg@10"):
    return float(np.mean([v[m] for v in res[n][k].values()]))


common = set.intersection(*[set(r) for r in res.values()])
best_ch = {n: max(mean(n, f"ch:{c}") for c in ("dense", "splade", "bm25")) for n in names}
base = "dbsf w=1.0,1.0,1.0"


def obj(k, subset):
    g = [mean(n, k) - best_ch[n] for n in subset]
    return np.mean(g) + np.mean([min(0, x) for x in g])


def family(k):
    return re.sub(r" ref-\S+", "", k)


plain = [
    k
    for k in common
    if not k.startswith("ch:") and " ref-" not in k and not k.startswith("qa-zpref")
]
fams = sorted({family(k) for k in common if " ref-" in k})
print("collections:", names)
print("best channel:", {n: round(v, 4) for n, v in best_ch.items()})
print(
    f"{'today':40s}",
    " ".join(f"{mean(n, base):.4f}" for n in names),
    f"mean {np.mean([mean(n, base) for n in names]):.4f}",
)
allk = plain + [f + " ref-none" for f in fams]
for k in sorted(allk, key=lambda k: -obj(k, names))[:12]:
    print(
        f"{k:40s}",
        " ".join(f"{mean(n, k):.4f}" for n in names),
        f"mean {np.mean([mean(n, k) for n in names]):.4f} obj {obj(k, names):+.4f}",
    )
print("LOCO (held-out collection: choice made on the others; spread reference from the others):")
held_scores = []
for H in names:
    train = [n for n in names if n != H]
    if FALLBACK:
        cands = plain + [
            f + (f" ref-{H}" if f + f" ref-{H}" in common else " ref-none") for f in fams
        ]
    else:
        cands = plain + [f + f" ref-{H}" for f in fams if f + f" ref-{H}" in common]
    pick = max(cands, key=lambda k: obj(k, train))
    held_scores.append(mean(H, pick))
    print(
        f"  {H:12s} pick {pick:45s} held-out {mean(H, pick):.4f}  today {mean(H, base):.4f}  best channel {best_ch[H]:.4f}"
    )
print(f"LOCO mean {np.mean(held_scores):.4f}  today {np.mean([mean(n, base) for n in names]):.4f}")
