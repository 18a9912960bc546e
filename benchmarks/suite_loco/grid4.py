import sys, os, pickle, time, json

from cands import *

name = sys.argv[1]
pool = sys.argv[2].split(",")  # collections REF is computed from
out_path = f"{E}/results/{name}.pkl"
done = pickle.load(open(out_path, "rb")) if os.path.exists(out_path) else {}
stats = json.load(open(f"{E}/zstats.json"))


def ref(excl):
    use = [n for n in pool if n != excl]
    return {ch: float(np.mean([stats[n][ch] for n in use])) for ch in ("dense", "splade", "bm25")}


c = Col(name)
S = c.base_scores()
cfgs = {}
for excl in pool + ["none"]:
    R = ref(excl)
    for pw in (1, 2, 3):
        for wd, ws, wb in [(1, 0.5, 1), (1.5, 0.5, 1), (1, 1, 1), (1, 0.5, 1.5)]:
            cfgs[f"zr{pw} w={wd},{ws},{wb} ref-{excl}"] = {
                "qaware": ("zp", pw, R),
                "weights": {"dense": wd, "splade": ws, "bm25": wb},
            }
t0 = time.time()
for k, cfg in cfgs.items():
    if k in done:
        continue
    done[k] = c.evaluate(run(c, S, cfg), per_query=True)
pickle.dump(done, open(out_path, "wb"))
print(name, len(done), "configs", round(time.time() - t0), "s")
