import sys, os, pickle, time

from cands import *

name = sys.argv[1]
out_path = f"{E}/results/{name}.pkl"
done = pickle.load(open(out_path, "rb")) if os.path.exists(out_path) else {}
for k in [k for k in done if k.startswith("qa-")]:
    del done[k]
c = Col(name)
S = c.base_scores()
cfgs = {}
REF = {"dense": 2.8, "splade": 3.5, "bm25": 3.9}
W3 = [(1, 1, 1), (1, 0.5, 1), (1, 0.5, 1.5), (1.5, 0.5, 1)]
for wd, ws, wb in W3:
    w = {"dense": wd, "splade": ws, "bm25": wb}
    cfgs[f"qa-ztop w={wd},{ws},{wb}"] = {"qaware": "ztop", "weights": w}
    for pw in (2, 3):
        cfgs[f"qa-zp{pw} w={wd},{ws},{wb}"] = {"qaware": ("zp", pw, {}), "weights": w}
    for pw in (1, 2, 3):
        cfgs[f"qa-zpref{pw} w={wd},{ws},{wb}"] = {"qaware": ("zp", pw, REF), "weights": w}
    for pw in (1, 2):
        cfgs[f"qa-agree{pw} w={wd},{ws},{wb}"] = {"qaware": ("agree", pw, 10), "weights": w}
t0 = time.time()
for k, cfg in cfgs.items():
    if k in done:
        continue
    done[k] = c.evaluate(run(c, S, cfg), per_query=True)
pickle.dump(done, open(out_path, "wb"))
print(name, len(done), "configs", round(time.time() - t0), "s")
