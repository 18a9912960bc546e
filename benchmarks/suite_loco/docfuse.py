"""Fusion at the document level (issue 17, third round): each channel's chunk hits are
first reduced to documents (a document's best chunk in that channel), then fused; against
today's fusion of chunks, documents then ranked by their best fused chunk.

    LOCO_CACHE=/tmp/q17/cache python docfuse.py adi,medline,time,cacm,lisa,scifact,limit-small
"""

import sys

import numpy as np
from lib import Col, channel_lists, dbsf_norm, fuse

CHANNELS = ("dense", "splade", "bm25")


def doc_lists(col, lists, normalize_first):
    """Per channel: documents (each as one fixed chunk of it, the same in every channel,
    so that the fusion adds a document's channels up) and their best chunk's score."""
    if not hasattr(col, "rep"):
        col.rep = {}
        for i, d in enumerate(col.cdoc.tolist()):
            col.rep.setdefault(d, i)
    out = {}
    for ch, (idx, s) in lists.items():
        v = dbsf_norm(s) if normalize_first else s
        best = {}  # document -> its best chunk's score in this channel
        for i, x in zip(idx.tolist(), np.asarray(v).tolist()):
            d = col.cdoc[i]
            best[d] = max(x, best.get(d, x))
        items = sorted(((col.rep[d], x) for d, x in best.items()), key=lambda t: -t[1])
        out[ch] = (np.array([i for i, _ in items], dtype=np.int64), np.array([x for _, x in items]))
    return out


def run(col, scores, mode):
    runs = []
    for qi in range(len(col.qids)):
        lists = channel_lists(scores, qi)
        w = {ch: 1.0 for ch in CHANNELS}
        if mode == "chunks (today)":
            runs.append(fuse(lists, w)[0])
        elif mode == "documents, normalised then best chunk":
            dl = doc_lists(col, lists, True)
            runs.append(fuse(dl, w, norm=lambda s: s)[0])
        else:
            dl = doc_lists(col, lists, False)
            runs.append(fuse(dl, w)[0])
    return col.evaluate(runs)["ndcg@10"]


names = sys.argv[1].split(",")
modes = (
    "chunks (today)",
    "documents, normalised then best chunk",
    "documents, best chunk then normalised",
)
table = {m: [] for m in modes}
for n in names:
    col = Col(n)
    scores = col.base_scores()  # once per collection, for every mode
    for m in modes:
        table[m].append(run(col, scores, m))
print("| nDCG@10 | " + " | ".join(names) + " | mean |")
print("|---|" + "---:|" * (len(names) + 1))
for m, vals in table.items():
    print(f"| {m} | " + " | ".join(f"{v:.4f}" for v in vals) + f" | {np.mean(vals):.4f} |")
