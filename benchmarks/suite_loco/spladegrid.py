"""SPLADE top-N pruning (issue 17): keep the N largest weights of each chunk / query vector.

Dense and BM25 are kept as stored; the SPLADE channel alone (top 300) and the default fusion
(DBSF, equal weights, prefetch 100) are scored per query for each (document N, query N).
``models.splade_top_k`` is the document side of this in tribrid; the query side has no
setting today.

    python spladegrid.py adi   # -> <cache>/exp/results-splade/adi.pkl
"""

import itertools
import os
import pickle
import sys
import time

import numpy as np
import scipy.sparse as sp

from lib import E, Col, channel_lists, fuse, topk

DOC_N = (None, 64, 128, 256)
QUERY_N = (None, 16, 32, 64)


def prune(M, n):
    """Each row's n largest values (all of them when n is None)."""
    if n is None:
        return M
    M = M.tocsr()
    rows, cols, vals = [], [], []
    for r in range(M.shape[0]):
        a, b = M.indptr[r], M.indptr[r + 1]
        v, c = M.data[a:b], M.indices[a:b]
        keep = np.argsort(-v, kind="stable")[:n]
        rows += [r] * len(keep)
        cols += c[keep].tolist()
        vals += v[keep].tolist()
    return sp.csr_matrix((vals, (rows, cols)), shape=M.shape)


def main():
    name = sys.argv[1]
    out_dir = os.path.join(E, "results-splade")
    os.makedirs(out_dir, exist_ok=True)
    out_path = os.path.join(out_dir, f"{name}.pkl")
    done = pickle.load(open(out_path, "rb")) if os.path.exists(out_path) else {}
    c = Col(name)
    t0 = time.time()
    fixed = c.base_scores()
    n = len(c.qids)
    for ch in ("dense", "bm25"):
        done.setdefault(
            f"ch:{ch}",
            c.evaluate([topk(fixed[ch][i], 300, ch != "dense")[0] for i in range(n)], True),
        )
    for dn, qn in itertools.product(DOC_N, QUERY_N):
        tag = f"sd={dn} sq={qn}"
        if f"dbsf {tag}" in done:
            continue
        ss = (prune(c.Qs, qn) @ prune(c.Ds, dn).T).toarray()
        done[f"ch:splade {tag}"] = c.evaluate(
            [topk(ss[i], 300, True)[0] for i in range(n)], per_query=True
        )
        S = {"dense": fixed["dense"], "splade": ss, "bm25": fixed["bm25"]}
        runs = [fuse(channel_lists(S, i, 100), {})[0] for i in range(n)]
        done[f"dbsf {tag}"] = c.evaluate(runs, per_query=True)
    pickle.dump(done, open(out_path, "wb"))

    def m(key):
        return np.mean([v["ndcg@10"] for v in done[key].values()])

    best = max((k for k in done if k.startswith("dbsf")), key=m)
    print(
        f"{name}: dbsf unpruned {m('dbsf sd=None sq=None'):.4f}, best {best} {m(best):.4f}"
        f" ({time.time() - t0:.0f} s)"
    )


if __name__ == "__main__":
    main()
