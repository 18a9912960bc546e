import sys, json, os

from cands import *

path = f"{E}/zstats.json"
stats = json.load(open(path)) if os.path.exists(path) else {}
for name in sys.argv[1:]:
    c = Col(name)
    S = c.base_scores()
    zs = {ch: [] for ch in S}
    for i in range(len(c.qids)):
        L = channel_lists(S, i, 100)
        for ch, (idx, s) in L.items():
            if len(s) >= 3 and s.std() > 0:
                zs[ch].append(float((s.max() - s.mean()) / s.std()))
    stats[name] = {ch: float(np.mean(v)) for ch, v in zs.items()}
    print(name, {k: round(v, 2) for k, v in stats[name].items()})
json.dump(stats, open(path, "w"))
