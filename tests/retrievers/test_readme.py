"""The README's LangChain example runs exactly as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tribrid.encoders import EncoderSet

pytestmark = pytest.mark.slow  # the real models of tests/retrievers/conftest.py

README = Path(__file__).parents[2] / "README.md"
MARKER = "<!-- tested by tests/retrievers/test_readme.py -->"


def example_code() -> str:
    """The python block that follows the marker in the README."""
    text = README.read_text()
    assert MARKER in text, f"the README lost its {MARKER!r} marker"
    match = re.search(r"```python\n(.*?)```", text[text.index(MARKER) :], re.DOTALL)
    assert match is not None
    return match.group(1)


def test_lcel_example_runs(encoders: EncoderSet, capsys: pytest.CaptureFixture[str]) -> None:
    # `encoders` only loads the models first; the example builds its own from Settings.
    namespace: dict[str, object] = {"__name__": "readme_example"}
    exec(compile(example_code(), str(README), "exec"), namespace)
    printed = capsys.readouterr().out
    assert printed.startswith("Context:\n[1.00] The ZX-9000 pump needs a new gasket")
    assert printed.rstrip().endswith("Question: How often does the pump need a new gasket?")
    namespace["vectorstore"].close()  # type: ignore[attr-defined]
