import sys, pickle, numpy as np

from lib import E

R = f"{E}/results"
names = sys.argv[1].split(",")
res = {n: pickle.load(open(f"{R}/{n}.pkl", "rb")) for n in names}
common = set.intersection(*[set(r) for r in res.values()])


def mean(n, k):
    return float(np.mean([v["ndcg@10"] for v in res[n][k].values()]))


base = "dbsf w=1.0,1.0,1.0"
rows = []
for k in common:
    if (
        k.startswith("ch:")
        or (" ref-" in k and not k.endswith("ref-none"))
        or k.startswith("qa-zpref")
    ):
        continue
    d = [mean(n, k) - mean(n, base) for n in names]
    rows.append((min(d), np.mean(d), sum(x >= 0 for x in d), k, d))
rows.sort(key=lambda r: -r[0])
for r in rows[:15]:
    print(
        f"{r[3]:42s} min {r[0]:+.4f} mean {r[1]:+.4f} wins {r[2]}/{len(names)}  "
        + " ".join(f"{x:+.4f}" for x in r[4])
    )
