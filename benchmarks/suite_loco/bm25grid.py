"""BM25 parameters (issue 17): BM25 vectors recomputed per (k, b, avg_len), dense and SPLADE kept.

The BM25 document weight is tf·(k+1) / (tf + k·(1 − b + b·len/avg_len)), len the number of
tokens left after stop words (Qdrant Edge's ``Bm25``; the store applies IDF). Each chunk is
tokenized once by that same ``Bm25`` (with b=0 its weights give back tf exactly), so every
setting is a numpy computation; the queries (weight 1 per term) do not depend on k, b,
avg_len. Scored per setting: the BM25 channel alone (top 300) and the default fusion (DBSF,
equal weights, prefetch 100), per query, as lib.py scores everything else.

    python bm25grid.py adi [--avg 150,own,110]   # -> <cache>/exp/results-bm25/adi.pkl

``own`` is this collection's own mean chunk length (what a textbook BM25 would use;
informative only: a default cannot know it). Also prints the mean chunk length in tokens.
"""

import itertools
import os
import pickle
import sys
import time

import numpy as np
import scipy.sparse as sp
from qdrant_edge import Bm25, Bm25Config

from lib import E, Col, channel_lists, fuse, topk

KS = (0.9, 1.2, 1.5, 2.0)
BS = (0.4, 0.6, 0.75, 0.9)
TOKENIZE_K = 1.2


def tokenized(texts, qtexts, language="english"):
    """Term frequencies of the chunks (csr), their lengths, and the query term matrix."""
    model = Bm25(Bm25Config(k=TOKENIZE_K, b=0.0, avg_len=150.0, language=language))
    vocab, rows, cols, vals = {}, [], [], []
    for r, text in enumerate(texts):
        v = model.embed_document(text)
        merged = {}
        for i, x in zip(v.indices, v.values):
            # b = 0: x = tf·(k+1)/(tf+k)  ->  tf = x·k/(k+1−x)
            tf = round(x * TOKENIZE_K / (TOKENIZE_K + 1 - x))
            merged[int(i)] = merged.get(int(i), 0) + tf
        for i, tf in merged.items():
            rows.append(r)
            cols.append(vocab.setdefault(i, len(vocab)))
            vals.append(tf)
    TF = sp.csr_matrix((np.array(vals, float), (rows, cols)), shape=(len(texts), len(vocab)))
    lens = np.asarray(TF.sum(1)).ravel()
    qrows, qcols = [], []
    for r, text in enumerate(qtexts):
        for i in set(int(i) for i in model.embed_query(text).indices):
            if i in vocab:  # a term no chunk has scores nothing (IDF over the chunks)
                qrows.append(r)
                qcols.append(vocab[i])
    Q = sp.csr_matrix((np.ones(len(qrows)), (qrows, qcols)), shape=(len(qtexts), len(vocab)))
    return TF, lens, Q


def bm25_docs(TF, lens, k, b, avg_len):
    """The stored document vectors for one setting."""
    TF = TF.tocoo()
    norm = k * (1 - b + b * lens[TF.row] / avg_len)
    vals = TF.data * (k + 1) / (TF.data + norm)
    return sp.csr_matrix((vals, (TF.row, TF.col)), shape=TF.shape)


def bm25_scores(Q, D):
    N = D.shape[0]
    df = np.asarray((D > 0).sum(0)).ravel()
    idf = np.log(1 + (N - df + 0.5) / (df + 0.5))
    return (Q.multiply(idf[None, :]).tocsr() @ D.T).toarray()


def main():
    name = sys.argv[1]
    avgs = ["150", "own"]
    if "--avg" in sys.argv:
        avgs = sys.argv[sys.argv.index("--avg") + 1].split(",")
    out_dir = os.path.join(E, "results-bm25")
    os.makedirs(out_dir, exist_ok=True)
    out_path = os.path.join(out_dir, f"{name}.pkl")
    done = pickle.load(open(out_path, "rb")) if os.path.exists(out_path) else {}
    dump = pickle.load(open(os.path.join(E, f"{name}.pkl"), "rb"))
    c = Col(name)
    t0 = time.time()
    TF, lens, Q = tokenized(dump["texts"], dump["test_qtexts"])
    own = float(lens.mean())
    done["meta"] = {
        "mean_len": own,
        "median_len": float(np.median(lens)),
        "chunks": int(TF.shape[0]),
        "docs": int(len(c.udocs)),
    }
    print(
        f"{name}: {TF.shape[0]} chunks, mean length {own:.1f} tokens "
        f"(median {np.median(lens):.0f}), tokenized in {time.time() - t0:.1f} s"
    )
    fixed = c.base_scores()
    n = len(c.qids)
    for ch in ("dense", "splade", "bm25"):
        key = f"ch:{ch}" if ch != "bm25" else "ch:bm25 stored"
        if key not in done:
            done[key] = c.evaluate(
                [topk(fixed[ch][i], 300, ch != "dense")[0] for i in range(n)], per_query=True
            )
    if "dbsf stored" not in done:
        runs = [fuse(channel_lists(fixed, i, 100), {})[0] for i in range(n)]
        done["dbsf stored"] = c.evaluate(runs, per_query=True)
    for k, b, a in itertools.product(KS, BS, avgs):
        tag = f"k={k:g} b={b:g} avg={a}"
        if f"dbsf {tag}" in done:
            continue
        avg_len = own if a == "own" else float(a)
        sb = bm25_scores(Q, bm25_docs(TF, lens, k, b, avg_len))
        done[f"ch:bm25 {tag}"] = c.evaluate(
            [topk(sb[i], 300, True)[0] for i in range(n)], per_query=True
        )
        S = {"dense": fixed["dense"], "splade": fixed["splade"], "bm25": sb}
        runs = [fuse(channel_lists(S, i, 100), {})[0] for i in range(n)]
        done[f"dbsf {tag}"] = c.evaluate(runs, per_query=True)
    pickle.dump(done, open(out_path, "wb"))

    def m(key):
        return np.mean([v["ndcg@10"] for v in done[key].values()])

    print(
        f"  stored: bm25 {m('ch:bm25 stored'):.4f} dbsf {m('dbsf stored'):.4f};"
        f" recomputed k=1.2 b=0.75 avg=150: bm25 {m('ch:bm25 k=1.2 b=0.75 avg=150'):.4f}"
        f" dbsf {m('dbsf k=1.2 b=0.75 avg=150'):.4f}  ({time.time() - t0:.0f} s)"
    )


if __name__ == "__main__":
    main()
