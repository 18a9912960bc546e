#!/bin/sh
# Check the packaging in fresh virtualenvs (slow: minutes; uses the package registry):
#
#   1. the full install (`make install`'s steps: a CPU torch, `pip install '.[all]'`, then
#      unstructured-inference without its dependencies) passes scripts/pip-check.sh (pip
#      check, allowing only that wheel's model dependencies) and parses a PDF;
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
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
export DO_NOT_TRACK=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PIP_DISABLE_PIP_VERSION_CHECK=1
mkdir -p "$WORK"
echo "== work dir $WORK"

step() { echo "== $*"; }
fail() { echo "FAILED: $*" >&2; exit 1; }

step "full install: $TORCH_SPEC first, then .[all], then unstructured-inference --no-deps"
NO_DEPS=$(sed -n 's/.*--no-deps \(unstructured-inference==[^ ]*\).*/\1/p' "$ROOT/Makefile")
[ -n "$NO_DEPS" ] || fail "no --no-deps wheel found in the Makefile"
$PYTHON -m venv "$WORK/full"
"$WORK/full/bin/pip" install -q "$TORCH_SPEC"
"$WORK/full/bin/pip" install -q "$ROOT[all]"
"$WORK/full/bin/pip" install -q --no-deps "$NO_DEPS"
sh "$ROOT/scripts/pip-check.sh" "$WORK/full/bin/python" || fail "pip check of the full install"
"$WORK/full/bin/python" -c "import torch; assert '+cpu' in torch.__version__ or not torch.cuda.is_available(), torch.__version__" \
    || fail "the full install replaced the CPU torch"

step "core install: ."
$PYTHON -m venv "$WORK/core"
"$WORK/core/bin/pip" install -q "$ROOT"
"$WORK/core/bin/pip" check || fail "pip check of the core install (it must be clean)"
for heavy in torch unstructured qdrant_edge qdrant_client celery fastapi onnxruntime; do
    if "$WORK/core/bin/python" -c "import $heavy" 2>/dev/null; then
        fail "the core install has $heavy"
    fi
done
"$WORK/core/bin/pip" list --format=freeze > "$WORK/core-packages.txt"
echo "core: $(wc -l < "$WORK/core-packages.txt") packages, $(du -sh "$WORK/core" | cut -f1)"
echo "full: $("$WORK/full/bin/pip" list --format=freeze | wc -l) packages, $(du -sh "$WORK/full" | cut -f1)"

step "the full install indexes the demo folder and a PDF, and serves them"
DATA="$WORK/data"
mkdir -p "$WORK/docs"
cp -r "$ROOT/examples/docs/." "$WORK/docs/"
"$WORK/full/bin/python" - "$WORK/docs/memo.pdf" <<'PY'
import sys
from pypdf import PdfWriter
from pypdf.generic import NameObject, DecodedStreamObject, DictionaryObject, ArrayObject
# A one-page PDF with a text layer, written with pypdf (no file from outside needed).
writer = PdfWriter()
page = writer.add_blank_page(width=612, height=792)
font = DictionaryObject({NameObject("/Type"): NameObject("/Font"),
                         NameObject("/Subtype"): NameObject("/Type1"),
                         NameObject("/BaseFont"): NameObject("/Helvetica")})
page[NameObject("/Resources")] = DictionaryObject(
    {NameObject("/Font"): DictionaryObject({NameObject("/F1"): writer._add_object(font)})})
stream = DecodedStreamObject()
stream.set_data(b"BT /F1 14 Tf 72 700 Td (Quarterly memo: the lighthouse budget was approved.) Tj ET")
page[NameObject("/Contents")] = writer._add_object(stream)
with open(sys.argv[1], "wb") as f:
    writer.write(f)
PY
"$WORK/full/bin/tribrid" ingest "$WORK/docs" --data-dir "$DATA" --json > "$WORK/ingest.json"
"$WORK/full/bin/python" - "$WORK/ingest.json" <<'PY'
import json, sys
counts = json.load(open(sys.argv[1]))["counts"]
assert counts["failed"] == 0 and counts["indexed"] == 7, counts
print(f"full ingest: {counts}")
PY
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
