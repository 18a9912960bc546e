"""The extras of the package: what each command needs is named when it is missing.

The core install's behaviour end to end (a venv without the extras) is checked by
``scripts/check-install.sh``; here the registry is checked against pyproject.toml and
against this (full) install.
"""

from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path

import pytest

from tribrid import errors
from tribrid.errors import EXTRAS, MissingDependencyError, missing_extra, require_extras

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_every_extra_named_in_errors_exists_in_pyproject() -> None:
    declared = set(PROJECT["optional-dependencies"])
    assert set(EXTRAS) <= declared
    # `all` installs every role; the core installs none of them.
    (everything,) = PROJECT["optional-dependencies"]["all"]
    roles = set(everything.removeprefix("tribrid[").removesuffix("]").split(","))
    assert set(EXTRAS) - {"torch"} <= roles  # torch comes with index
    assert "tribrid[torch]" in PROJECT["optional-dependencies"]["index"]


def test_the_full_install_has_every_module_of_every_extra() -> None:
    missing = [m for mods in EXTRAS.values() for m in mods if importlib.util.find_spec(m) is None]
    assert missing == []


def test_the_core_dependencies_hold_no_extras_module() -> None:
    core = " ".join(PROJECT["dependencies"]).lower()
    for heavy in ("torch", "unstructured", "qdrant", "celery", "fastapi", "onnxruntime"):
        assert heavy not in core


def test_a_missing_module_names_the_command_the_extra_and_the_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(errors.EXTRAS, "parse", ("unstructured", "tribrid_no_such_module"))
    with pytest.raises(MissingDependencyError) as caught:
        require_extras("`tribrid ingest`", "parse")
    assert str(caught.value) == (
        "`tribrid ingest` needs the parse extra (tribrid_no_such_module is not installed): "
        "pip install 'tribrid[parse]'"
    )
    assert isinstance(caught.value, ImportError)
    require_extras("`tribrid ingest`", "index")  # installed here: no error


def test_an_unknown_extra_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown extra 'gpu'"):
        missing_extra("x", "gpu")
