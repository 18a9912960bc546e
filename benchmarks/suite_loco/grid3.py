import sys, os, pickle, time

from cands import *

name = sys.argv[1]
out_path = f"{E}/results/{name}.pkl"
done = pickle.load(open(out_path, "rb")) if os.path.exists(out_path) else {}
c = Col(name)
S = c.base_scores()
cfgs = {}
REF = {"dense": 2.8, "splade": 3.5, "bm25": 3.9}
for wd, ws, wb in [(1, 0.5, 1), (1.5, 0.5, 1)]:
    w = {"dense": wd, "splade": ws, "bm25": wb}
    for m, bd, bb, T in [
        (3, 0.3, 0.3, 10),
        (5, 0.3, 0.3, 10),
        (5, 0.0, 0.5, 20),
        (5, 0.3, 0.5, 20),
        (3, 0.5, 0.0, 0),
        (5, 0.6, 0.6, 20),
        (10, 0.3, 0.3, 10),
    ]:
        cfgs[f"combo zpref2 w={wd},{ws},{wb} prf m={m} d={bd} b={bb} T={T}"] = {
            "qaware": ("zp", 2, REF),
            "weights": w,
            "prf": {"m": m, "dense": bd, "bm25": bb, "terms": T},
        }
t0 = time.time()
for k, cfg in cfgs.items():
    if k in done:
        continue
    done[k] = c.evaluate(run(c, S, cfg), per_query=True)
pickle.dump(done, open(out_path, "wb"))
print(name, len(done), "configs", round(time.time() - t0), "s")
