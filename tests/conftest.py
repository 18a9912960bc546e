"""Test-wide environment: everything offline, nothing phones home."""

from __future__ import annotations

import os

# Set before any model or parser is imported: this machine has no internet, and a test
# that silently tried to download would hang until its timeout instead of failing.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
