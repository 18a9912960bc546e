"""Compute per-query nDCG@10 (and r@2) for many configs on one collection; cache to results/<name>.pkl"""

import sys, os, pickle, time

from cands import *

name = sys.argv[1]
os.makedirs(f"{E}/results", exist_ok=True)
out_path = f"{E}/results/{name}.pkl"
done = pickle.load(open(out_path, "rb")) if os.path.exists(out_path) else {}
c = Col(name)
S = c.base_scores()
cfgs = {}
cfgs["ch:dense"] = ("single", "dense")
cfgs["ch:splade"] = ("single", "splade")
cfgs["ch:bm25"] = ("single", "bm25")
for wd, ws, wb in itertools.product([0.5, 1.0, 1.5], [0.0, 0.5, 1.0], [0.5, 1.0, 1.5]):
    cfgs[f"dbsf w={wd},{ws},{wb}"] = {"weights": {"dense": wd, "splade": ws, "bm25": wb}}
for P in (50, 200, 300):
    cfgs[f"dbsf P={P}"] = {"prefetch": P}
for qa in ("ztop", "gap"):
    for wd, ws, wb in [(1, 1, 1), (1, 0.5, 1), (1.0, 0.5, 1.5), (1, 0, 1)]:
        cfgs[f"qa-{qa} w={wd},{ws},{wb}"] = {
            "qaware": qa,
            "weights": {"dense": wd, "splade": ws, "bm25": wb},
        }
for m in (3, 5, 10):
    for bd in (0.0, 0.3, 0.6):
        for bb, T in ((0.0, 0), (0.3, 10), (0.6, 20)):
            if bd == 0 and bb == 0:
                continue
            for interp in (None, 0.5):
                prf = {"m": m, "dense": bd, "bm25": bb, "terms": T}
                if interp:
                    prf["interp"] = interp
                cfgs[f"prf m={m} d={bd} b={bb} T={T} int={interp}"] = {"prf": prf}
t0 = time.time()
for k, cfg in cfgs.items():
    if k in done:
        continue
    if isinstance(cfg, tuple):
        runs = [topk(S[cfg[1]][i], 300, cfg[1] != "dense")[0] for i in range(len(c.qids))]
    else:
        runs = run(c, S, cfg)
    done[k] = c.evaluate(runs, per_query=True)
pickle.dump(done, open(out_path, "wb"))
print(name, len(done), "configs", round(time.time() - t0), "s")
