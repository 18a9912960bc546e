import json, os, pickle, numpy as np, scipy.sparse as sp, pytrec_eval
from functools import lru_cache

# the dumps of dump.py: $LOCO_CACHE/exp (default /tmp/quality-cache/exp)
E = os.path.join(os.environ.get("LOCO_CACHE", "/tmp/quality-cache"), "exp")
COLS = ["adi", "medline", "time", "cacm", "lisa", "scifact", "limit-small"]


class Col:
    def __init__(self, name, split="test"):
        r = pickle.load(open(f"{E}/{name}.pkl", "rb"))
        self.name = name
        self.docs = r["docs"]
        self.D = r["dense"]
        self.Ds = r["ds"].tocsr()
        self.Db = r["db"].tocsr()
        self.qids = list(r[f"{split}_qids"])
        self.Qd = r[f"{split}_qdense"]
        self.Qs = r[f"{split}_qs"].tocsr()
        self.Qb = r[f"{split}_qb"].tocsr()
        self.qrels = json.load(open(f"{E}/{name}-{split}-qrels.json"))
        N = self.Db.shape[0]
        df = np.asarray((self.Db > 0).sum(0)).ravel()
        self.idf = np.log(1 + (N - df + 0.5) / (df + 0.5))
        self.idf[df == 0] = 0
        self.Ds_T = self.Ds.T.tocsr()
        self.DbI_T = self.Db.T.tocsr()
        # doc index per chunk
        u, inv = np.unique(self.docs, return_inverse=True)
        self.udocs = u
        self.cdoc = inv
        self.ev = pytrec_eval.RelevanceEvaluator(
            {q: {d: int(v) for d, v in x.items()} for q, x in self.qrels.items()},
            {"ndcg_cut.10", "recall.2", "recall.10", "recall.100"},
        )

    def base_scores(self):
        sd = self.Qd @ self.D.T
        ss = (self.Qs @ self.Ds.T).toarray()
        sb = (self.Qb.multiply(self.idf[None, :]).tocsr() @ self.Db.T).toarray()
        return {"dense": sd, "splade": ss, "bm25": sb}

    def evaluate(self, runs, per_query=False):
        """runs: list (per query) of chunk index arrays best first"""
        trec = {}
        for qi, r in zip(self.qids, runs):
            seen = {}
            for c in r:
                d = self.udocs[self.cdoc[c]]
                if d not in seen:
                    seen[d] = None
                    if len(seen) >= 100:
                        break
            ds = list(seen)
            trec[qi] = {d: float(len(ds) - i) for i, d in enumerate(ds)}
        res = self.ev.evaluate(trec)
        keys = {
            "ndcg@10": "ndcg_cut_10",
            "r@2": "recall_2",
            "r@10": "recall_10",
            "r@100": "recall_100",
        }
        pq = {q: {k: res.get(q, {}).get(v, 0.0) for k, v in keys.items()} for q in self.qids}
        if per_query:
            return pq
        return {k: float(np.mean([pq[q][k] for q in self.qids])) for k in keys}


def topk(scores, k, positive_only=False):
    """indices of top k (desc), scores"""
    k = min(k, scores.shape[0])
    idx = np.argpartition(-scores, k - 1)[:k]
    idx = idx[np.argsort(-scores[idx], kind="stable")]
    s = scores[idx]
    if positive_only:
        keep = s > 0
        idx, s = idx[keep], s[keep]
    return idx, s


def dbsf_norm(s):
    n = len(s)
    if n < 2:
        return np.full(n, 0.5)
    m = s.mean()
    sd = s.std(ddof=1)
    if sd == 0:
        return np.full(n, 0.5)
    return (s - (m - 3 * sd)) / (6 * sd)


def minmax(s):
    if len(s) == 0:
        return s
    lo, hi = s.min(), s.max()
    if hi == lo:
        return np.ones(len(s))
    return (s - lo) / (hi - lo)


def fuse(lists, weights, norm=dbsf_norm, rrf_k=None):
    """lists: {ch: (idx, scores)}; returns fused (idx, scores) sorted"""
    acc = {}
    for ch, (idx, s) in lists.items():
        w = weights.get(ch, 1.0)
        if w == 0 or len(idx) == 0:
            continue
        v = (1.0 / (rrf_k + np.arange(1, len(idx) + 1))) if rrf_k is not None else norm(s)
        for i, x in zip(idx.tolist(), v.tolist()):
            acc[i] = acc.get(i, 0.0) + w * x
    items = sorted(acc.items(), key=lambda t: -t[1])
    return np.array([i for i, _ in items], dtype=np.int64), np.array([x for _, x in items])


def channel_lists(scores, qi, prefetch=100):
    out = {}
    for ch, S in scores.items():
        out[ch] = topk(S[qi], prefetch, positive_only=(ch != "dense"))
    return out
