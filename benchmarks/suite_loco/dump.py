"""Dump one indexed collection (chunk vectors and texts, query vectors and texts, qrels) to a
pickle for numpy experiments. The cache folder is $LOCO_CACHE (default /tmp/quality-cache):
indexes in <cache>/<name>, the dump in <cache>/exp."""

import json, os, sys, time
from pathlib import Path
import numpy as np
import scipy.sparse as sp
from tribrid.settings import Settings
from tribrid.factory import build_encoders, build_ledger, build_store
from tribrid.connectors.beir import BeirCorpusConnector, read_queries, read_qrels, available_splits
from tribrid.evaluation.candidates import point_documents
from tribrid.evaluation.harness import judged_queries

name = sys.argv[1]
ds = Path("/work/shared/data") / name
CACHE = Path(os.environ.get("LOCO_CACHE", "/tmp/quality-cache"))
(CACHE / "exp").mkdir(parents=True, exist_ok=True)
settings = Settings(data_dir=CACHE / name)
enc = build_encoders(settings)
ledger = build_ledger(settings)
pd = point_documents(ledger, BeirCorpusConnector(ds).source_key)
ledger.close()
store = build_store(settings, enc)
ids, dense, spl, bm = [], [], [], []
texts = []
for p in store.points(with_payload=True):
    if p.id not in pd:
        continue
    ids.append(p.id)
    dense.append(p.dense)
    spl.append(p.splade)
    bm.append(p.bm25)
    # the whole text: BM25 vectors are recomputed from it per setting (bm25grid.py)
    texts.append(str(p.payload.get("text", "")))
store.close()


def csr(vecs, vocab):
    rows, cols, vals = [], [], []
    for r, v in enumerate(vecs):
        for i, x in zip(v.indices, v.values):
            if i not in vocab:
                vocab[i] = len(vocab)
            rows.append(r)
            cols.append(vocab[i])
            vals.append(x)
    return rows, cols, vals


out = {}
qall = read_queries(ds)
for split in [s for s in available_splits(ds) if s == "test"]:
    q, qr = judged_queries(qall, read_qrels(ds, split), source=name)
    out[split] = (q, qr)
svocab, bvocab = {}, {}
sr = csr(spl, svocab)
br = csr(bm, bvocab)
res = {
    "ids": np.array(ids),
    "docs": np.array([pd[i] for i in ids]),
    "dense": np.asarray(dense, np.float32),
    "texts": texts,
}
# queries
for split, (q, qr) in out.items():
    qids = list(q)
    qd, qs, qb, tms = [], [], [], []
    for qi in qids:
        t0 = time.perf_counter()
        qd.append(enc.dense.encode_query(q[qi]))
        t1 = time.perf_counter()
        qs.append(enc.splade.encode_query(q[qi]))
        t2 = time.perf_counter()
        qb.append(enc.bm25.encode_query(q[qi]))
        t3 = time.perf_counter()
        tms.append((t1 - t0, t2 - t1, t3 - t2))
    n = len(svocab)
    res[f"{split}_qids"] = np.array(qids)
    res[f"{split}_qtexts"] = [q[qi] for qi in qids]
    res[f"{split}_qdense"] = np.asarray(qd, np.float32)
    res[f"{split}_qs"] = csr(qs, svocab)
    res[f"{split}_qb"] = csr(qb, bvocab)
    res[f"{split}_ms"] = np.array(tms) * 1000
    (CACHE / "exp" / f"{name}-{split}-qrels.json").write_text(json.dumps(qr))
ns, nb = len(svocab), len(bvocab)
res["ds"] = sp.csr_matrix((sr[2], (sr[0], sr[1])), shape=(len(ids), ns))
res["db"] = sp.csr_matrix((br[2], (br[0], br[1])), shape=(len(ids), nb))
for split in out:
    for key, n in (("qs", ns), ("qb", nb)):
        rows, cols, vals = res[f"{split}_{key}"]
        res[f"{split}_{key}"] = sp.csr_matrix(
            (vals, (rows, cols)), shape=(len(res[f"{split}_qids"]), n)
        )
import pickle

with open(CACHE / "exp" / f"{name}.pkl", "wb") as f:
    pickle.dump(res, f)
print(name, len(ids), "chunks", len(set(res["docs"])), "docs", {s: len(out[s][0]) for s in out})
