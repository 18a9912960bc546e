import sys

from lib import *
import itertools


def rocchio_dense(c, qi, fb, beta):
    q = c.Qd[qi] + beta * c.D[fb].mean(0)
    q = q / np.linalg.norm(q)
    return c.D @ q


def bm25_expand(c, qi, fb, beta, terms, use_idf=False, fbw=None):
    rows = c.Db[fb]
    rows = sp.diags(1.0 / np.maximum(np.asarray(rows.sum(1)).ravel(), 1e-9)) @ rows  # P(t|d)
    if fbw is not None:
        rows = sp.diags(fbw) @ rows
    w = np.asarray(rows.sum(0)).ravel()
    if use_idf:
        w = w * c.idf
    q = np.asarray(c.Qb[qi].todense()).ravel().astype(float)
    top = np.argsort(-w)[:terms]
    top = top[w[top] > 0]
    e = np.zeros_like(q)
    if len(top):
        e[top] = w[top] / w[top].max()
    q2 = q + beta * e
    return c.Db @ (q2 * c.idf)


def splade_expand(c, qi, fb, beta, terms):
    rows = c.Ds[fb]
    w = np.asarray(rows.mean(0)).ravel()
    q = np.asarray(c.Qs[qi].todense()).ravel().astype(float)
    top = np.argsort(-w)[:terms]
    e = np.zeros_like(q)
    e[top] = w[top]
    q2 = q + beta * e
    return c.Ds @ q2


def run(c, S, cfg):
    """cfg: dict with weights, prefetch, prf params"""
    W = cfg.get("weights", {})
    P = cfg.get("prefetch", 100)
    runs = []
    for i in range(len(c.qids)):
        L = channel_lists(S, i, P)
        w = dict(W)
        if cfg.get("qaware"):
            w = qaware(L, W, cfg["qaware"])
        idx, sc = fuse(L, w)
        prf = cfg.get("prf")
        if prf:
            m = prf["m"]
            # feedback: best chunks of top m documents
            fb, seen = [], set()
            for ch in idx:
                d = c.cdoc[ch]
                if d not in seen:
                    seen.add(d)
                    fb.append(ch)
                    if len(fb) >= m:
                        break
            fb = np.array(fb)
            L2 = {}
            if prf.get("dense"):
                L2["dense"] = topk(rocchio_dense(c, i, fb, prf["dense"]), P)
            else:
                L2["dense"] = L["dense"]
            if prf.get("bm25"):
                L2["bm25"] = topk(
                    bm25_expand(c, i, fb, prf["bm25"], prf.get("terms", 10), prf.get("idf", False)),
                    P,
                    True,
                )
            else:
                L2["bm25"] = L["bm25"]
            if prf.get("splade"):
                L2["splade"] = topk(
                    splade_expand(c, i, fb, prf["splade"], prf.get("sterms", 50)), P, True
                )
            else:
                L2["splade"] = L["splade"]
            w2 = dict(W)
            if cfg.get("qaware"):
                w2 = qaware(L2, W, cfg["qaware"])
            if prf.get("interp"):
                a = prf["interp"]
                both = {**{k + "0": v for k, v in L.items()}, **L2}
                ww = {
                    **{k + "0": a * w.get(k, 1.0) for k in L},
                    **{k: (1 - a) * w2.get(k, 1.0) for k in L2},
                }
                idx, sc = fuse(both, ww)
            else:
                idx, sc = fuse(L2, w2)
        runs.append(idx)
    return runs


def qaware(L, W, kind):
    w = {ch: W.get(ch, 1.0) for ch in L}
    z = {}
    for ch, (idx, s) in L.items():
        if w[ch] == 0 or len(s) < 3:
            z[ch] = None
            continue
        sd = s.std()
        if kind == "ztop":
            z[ch] = (s.max() - s.mean()) / sd if sd > 0 else None
        elif isinstance(kind, tuple) and kind[0] == "zp":
            _, pw, refs = kind
            z[ch] = (((s.max() - s.mean()) / sd) / refs.get(ch, 1.0)) ** pw if sd > 0 else None
        elif isinstance(kind, tuple) and kind[0] == "agree":
            _, pw, n = kind
            mine = set(idx[:n].tolist())
            others = set()
            for o, (oi, _) in L.items():
                if o != ch and W.get(o, 1.0) > 0:
                    others |= set(oi[:n].tolist())
            z[ch] = (0.1 + len(mine & others) / n) ** pw
        elif kind == "gap":
            n = dbsf_norm(s)
            z[ch] = n[0] - n[min(9, len(n) - 1)]
    known = [v for v in z.values() if v is not None]
    if not known:
        return w
    fb = sum(known) / len(known)
    raw = {c: w[c] * (z[c] if z[c] is not None else fb) for c in w}
    tot, sc = sum(w.values()), sum(raw.values())
    if sc <= 0:
        return w
    return {c: v * tot / sc for c, v in raw.items()}
