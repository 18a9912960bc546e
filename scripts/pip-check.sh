#!/bin/sh
# `pip check`, allowing exactly one known gap: unstructured-inference goes in without its
# dependencies (see tribrid/errors.py NO_DEPS_WHEELS and README "Installing"). Its import,
# which unstructured's `fast` PDF path needs, needs only what tribrid's parse extra
# declares; the models it declares dependencies for (timm's, hence torchvision, which
# pip can only install here as a CUDA build that does not load beside a CPU torch) are
# never used. Any other unmet requirement fails.
#
# Usage: sh scripts/pip-check.sh PYTHON
set -u
PY=${1:?usage: pip-check.sh PYTHON}
out=$("$PY" -m pip check 2>&1) && { echo "$out"; exit 0; }
allowed='^unstructured-inference [^ ]+ requires (timm|accelerate|opencv-python|rapidfuzz|transformers|torch), which is not installed\.$'
unexpected=$(printf '%s\n' "$out" | grep -Ev "$allowed")
if [ -n "$unexpected" ]; then
    printf '%s\n' "$unexpected" >&2
    exit 1
fi
echo "pip check: clean but for unstructured-inference's model dependencies (installed without them on purpose)"
