#!/bin/sh
# Check the packaging in fresh virtualenvs (slow: minutes; uses the package registry):
#
#   1. the full install (`pip install '.[all]'` after a CPU torch, as `make install` does)
#      resolves with every dependency declared: `pip check` is clean;
#   2. the core install (`pip install .`) is lean (no torch, unstructured, Qdrant, Celery)
#      and `pip check` is clean;
#   3. the core's `tribrid search` and `tribrid status` work against a `tribrid serve`
#      of the full install, and its other commands name the extra they need.
#
# Usage: sh scripts/check-install.sh [WORK_DIR]   (default: a new /tmp/tribrid-install-*)
# Environment: PYTHON (default python3), TORCH_SPEC (default: the Makefile's).
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${1:-$(mktemp -d /tmp/tribrid-install-XXXXXX)}
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0 torchvision==0.28.0}
export DO_NOT_TRACK=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PIP_DISABLE_PIP_VERSION_CHECK=1
mkdir -p "$WORK"
echo "== work dir $WORK"

step() { echo "== $*"; }
fail() { echo "FAILED: $*" >&2; exit 1; }

step "full install: $TORCH_SPEC first, then .[all]"
$PYTHON -m venv "$WORK/full"
# shellcheck disable=SC2086  # TORCH_SPEC is a list of requirements
"$WORK/full/bin/pip" install -q $TORCH_SPEC
"$WORK/full/bin/pip" install -q "$ROOT[all]"
"$WORK/full/bin/pip" check || fail "pip check of the full install"
"$WORK/full/bin/python" -c "import torch; assert '+cpu' in torch.__version__ or not torch.cuda.is_available(), torch.__version__" \
    || fail "the full install replaced the CPU torch"

step "core install: ."
$PYTHON -m venv "$WORK/core"
"$WORK/core/bin/pip" install -q "$ROOT"
"$WORK/core/bin/pip" check || fail "pip check of the core install"
for heavy in torch unstructured qdrant_edge qdrant_client celery fastapi onnxruntime; do
    if "$WORK/core/bin/python" -c "import $heavy" 2>/dev/null; then
        fail "the core install has $heavy"
    fi
done
"$WORK/core/bin/pip" list --format=freeze > "$WORK/core-packages.txt"
echo "core: $(wc -l < "$WORK/core-packages.txt") packages, $(du -sh "$WORK/core" | cut -f1)"
echo "full: $("$WORK/full/bin/pip" list --format=freeze | wc -l) packages, $(du -sh "$WORK/full" | cut -f1)"

step "the full install indexes the demo folder and serves it"
DATA="$WORK/data"
"$WORK/full/bin/tribrid" ingest "$ROOT/examples/docs" --data-dir "$DATA" --json > "$WORK/ingest.json"
"$WORK/full/bin/tribrid" serve --data-dir "$DATA" --port 0 > "$WORK/serve.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT INT TERM
i=0
until grep -q "^serving " "$WORK/serve.log"; do
    i=$((i + 1))
    [ $i -lt 300 ] || fail "tribrid serve did not start: $(cat "$WORK/serve.log")"
    kill -0 $SERVER 2>/dev/null || fail "tribrid serve exited: $(cat "$WORK/serve.log")"
    sleep 1
done

step "the core install searches through the server"
"$WORK/core/bin/tribrid" --version
"$WORK/core/bin/tribrid" search "how does reciprocal rank fusion combine rankings" -k 3 \
    --data-dir "$DATA" --json > "$WORK/search.json"
"$WORK/core/bin/python" - "$WORK/search.json" <<'PY'
import json, sys
hits = json.load(open(sys.argv[1]))
assert hits and hits[0]["path"].endswith("rank-fusion.md"), hits
print(f"core search: {len(hits)} hits, first {hits[0]['path']}")
PY
"$WORK/core/bin/tribrid" status --data-dir "$DATA" --json > /dev/null

step "the core install's other commands name their extra"
expect_extra() {  # expect_extra EXTRA COMMAND...
    extra=$1
    shift
    if out=$("$WORK/core/bin/tribrid" "$@" 2>&1); then
        fail "tribrid $* succeeded in the core install"
    fi
    echo "$out" | grep -q "tribrid\[$extra\]" || fail "tribrid $* did not name tribrid[$extra]: $out"
    echo "tribrid $1: $(echo "$out" | tail -1)"
}
expect_extra index ingest "$ROOT/examples/docs" --data-dir "$WORK/other"
expect_extra server serve --data-dir "$WORK/other"
expect_extra celery worker --data-dir "$WORK/other"
expect_extra watch watch "$ROOT/examples/docs" --data-dir "$WORK/other"
expect_extra eval eval "$ROOT/examples/docs" --data-dir "$WORK/other"

kill $SERVER
echo "== all install checks passed ($WORK)"
