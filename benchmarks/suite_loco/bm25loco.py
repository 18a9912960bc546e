"""Leave-one-collection-out over the BM25 grid of bm25grid.py (the objective of loco.py).

    python bm25loco.py adi,medline,time,cacm,lisa,scifact,limit-small [--avg 150,60] [--md]
    python bm25loco.py ... --roots 1200=/tmp/q17/cache,600=/tmp/q17/cache-c600   # chunk sizes too
    python bm25loco.py ... --roots ... --today-only   # chunk sizes alone, today's BM25
    python bm25loco.py ... --grid splade     # the same over spladegrid.py's SPLADE pruning

For each held-out collection, the setting with the best objective on the others (mean gain
over each collection's best single channel of today, plus the mean of the losses, so a loss
counts twice) is picked and scored on the held-out one. Only the fused default (DBSF, equal
weights) is a candidate. ``--avg`` limits the avg_len values that may be picked (``own``,
a collection's own mean, is shown per collection but is not a default one can ship).
``--roots`` adds other indexes of the same collections (other chunk sizes, each dumped and
gridded under its own $LOCO_CACHE): the candidates are then (index, k, b, avg_len), and the
reference (today) is the first root's channels and default.
"""

import os
import pickle
import sys

import numpy as np

from lib import E

names = sys.argv[1].split(",")
avgs = None
if "--avg" in sys.argv:
    avgs = sys.argv[sys.argv.index("--avg") + 1].split(",")
MD = "--md" in sys.argv
GRID = sys.argv[sys.argv.index("--grid") + 1] if "--grid" in sys.argv else "bm25"
VARIED, FIXED = ("bm25", "splade") if GRID == "bm25" else ("splade", "bm25")
FIRST_TAG = "k=" if GRID == "bm25" else "sd="
roots = [("", os.path.dirname(E))]
if "--roots" in sys.argv:
    roots = [
        (f"c{lab} ", path)
        for lab, path in (r.split("=") for r in sys.argv[sys.argv.index("--roots") + 1].split(","))
    ]
# res[n][key]: per-query metrics; keys "ch:dense <root>", "ch:bm25 <root>k=.. b=.. avg=..",
# "dbsf <root>k=.. b=.. avg=..", and the first root's "ch:bm25 stored".
res, meta = {}, {}
for n in names:
    res[n] = {}
    for i, (lab, path) in enumerate(roots):
        got = pickle.load(open(os.path.join(path, "exp", f"results-{GRID}", f"{n}.pkl"), "rb"))
        for key, v in got.items():
            if key == "meta":
                meta.setdefault(n, {})[lab] = v
            elif key in ("ch:dense", f"ch:{FIXED}"):
                res[n][f"{key} {lab}"] = v
            elif key == "ch:bm25 stored" and i == 0:
                res[n][key] = v
            elif key.startswith((f"dbsf {FIRST_TAG}", f"ch:{VARIED} {FIRST_TAG}")):
                head, tag = key.split(" ", 1)
                res[n][f"{head} {lab}{tag}"] = v
first = roots[0][0]
TODAY = first + ("k=1.2 b=0.75 avg=150" if GRID == "bm25" else "sd=None sq=None")


def mean(n, key, m="ndcg@10"):
    return float(np.mean([v[m] for v in res[n][key].values()]))


best_today = {
    n: max(
        mean(n, f"ch:dense {first}"),
        mean(n, f"ch:{FIXED} {first}"),
        mean(n, f"ch:{VARIED} {TODAY}"),
    )
    for n in names
}
tags = sorted(
    {k[5:] for k in set.intersection(*[set(r) for r in res.values()]) if k.startswith("dbsf ")}
)
if "--today-only" in sys.argv:  # only the roots (chunk sizes) vary, with today's BM25
    tags = [t for t in tags if t.endswith(TODAY[len(first) :])]
if avgs and GRID == "bm25":
    tags = [t for t in tags if t.split("avg=")[1] in avgs]


def obj(tag, subset):
    g = [mean(n, f"dbsf {tag}") - best_today[n] for n in subset]
    return np.mean(g) + np.mean([min(0, x) for x in g])


def own_best(n, tag):
    lab = tag[: tag.index(FIRST_TAG)]
    return max(
        mean(n, f"ch:dense {lab}"), mean(n, f"ch:{FIXED} {lab}"), mean(n, f"ch:{VARIED} {tag}")
    )


def row(label, vals, extra=""):
    if MD:
        print(f"| {label} | " + " | ".join(vals) + f" | {extra} |")
    else:
        print(f"{label:34s} " + " ".join(f"{v:>8s}" for v in vals) + f"  {extra}")


for lab, _ in roots if GRID == "bm25" else ():
    print(
        f"mean chunk length {lab}(tokens):", {n: round(meta[n][lab]["mean_len"], 1) for n in names}
    )
if len(roots) > 1:
    for lab, _ in roots:
        row(f"dense {lab}", [f"{mean(n, f'ch:dense {lab}'):.4f}" for n in names])
        row(f"{FIXED} {lab}", [f"{mean(n, f'ch:{FIXED} {lab}'):.4f}" for n in names])
        row(
            f"{VARIED} {lab}",
            [f"{mean(n, f'ch:{VARIED} {lab}' + TODAY[len(first) :]):.4f}" for n in names],
        )
    print()
if MD:
    print(
        "| setting (fused default) | "
        + " | ".join(names)
        + " | mean | objective, ≥ own best channel |"
    )
    print("|---|" + "---:|" * (len(names) + 2))
row("best channel today", [f"{best_today[n]:.4f}" for n in names])
ranked = sorted(tags, key=lambda t: -obj(t, names))
for t in [TODAY] + [t for t in ranked if t != TODAY]:
    vals = [mean(n, f"dbsf {t}") for n in names]
    wins = sum(mean(n, f"dbsf {t}") >= own_best(n, t) for n in names)
    row(
        ("**today** " if t == TODAY else "") + t,
        [f"{v:.4f}" for v in vals],
        f"{np.mean(vals):.4f} | {obj(t, names):+.4f}, {wins}/{len(names)}"
        if MD
        else f"mean {np.mean(vals):.4f} obj {obj(t, names):+.4f} >=own-best {wins}/{len(names)}",
    )
print()
if MD:
    print(f"| setting ({VARIED} alone) | " + " | ".join(names) + " | mean |")
    print("|---|" + "---:|" * (len(names) + 1))
for t in [TODAY] + [t for t in ranked if t != TODAY]:
    vals = [mean(n, f"ch:{VARIED} {t}") for n in names]
    row(
        t, [f"{v:.4f}" for v in vals], f"{np.mean(vals):.4f}" if MD else f"mean {np.mean(vals):.4f}"
    )
print()
print("LOCO (the setting picked on the other collections, scored on the held-out one):")
if MD:
    print(
        "| held out | picked on the others | held-out nDCG@10 | today's default | best channel today |"
    )
    print("|---|---|---:|---:|---:|")
held, base = [], []
for H in names:
    train = [n for n in names if n != H]
    pick = max(tags, key=lambda t: obj(t, train))
    held.append(mean(H, f"dbsf {pick}"))
    base.append(mean(H, f"dbsf {TODAY}"))
    if MD:
        print(f"| {H} | {pick} | {held[-1]:.4f} | {base[-1]:.4f} | {best_today[H]:.4f} |")
    else:
        print(
            f"  {H:12s} pick {pick:30s} held-out {held[-1]:.4f} today {base[-1]:.4f}"
            f" best channel {best_today[H]:.4f}"
        )
if MD:
    print(f"| **mean** |  | **{np.mean(held):.4f}** | **{np.mean(base):.4f}** |  |")
else:
    print(f"LOCO mean {np.mean(held):.4f}  today {np.mean(base):.4f}")
if "limit-small" in names:
    for t in (TODAY, ranked[0]):
        print(f"limit-small recall@2 {t}: {mean('limit-small', f'dbsf {t}', 'r@2'):.4f}")
