"""ONNX Runtime backend: export a model once, cache the export, run it without torch.

An export is made offline from the model torch already loads (the local folder), into
``<cache_dir>/<model>/<backend>-v<format>/``:

- ``model.onnx``: the network, fp32 (``onnx``) or with int8 weights (``onnx-int8``);
- ``projection.onnx``: SPLADE only, the vocabulary projection of one document's tokens,
  max-pooled (see :mod:`tribrid.encoders.splade`);
- ``tokenizer.json``: the model's fast tokenizer, so running needs no ``transformers``;
- ``manifest.json``: what the runtime needs to know, written last;
- ``optimized/``: added on first load, the graphs ONNX Runtime optimized for this CPU
  (see :func:`session`), which later processes load without optimizing again.

Exports are published atomically: written to a private temp folder next to the target
and renamed into place, under a file lock so that concurrent processes (Celery workers)
export once and the others wait and reuse it. A folder that has a manifest is complete.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tribrid.encoders.base import EncoderBackend
from tribrid.encoders.models import ResolvedModel, file_sha256
from tribrid.errors import EncoderError, MissingDependencyError, missing_extra

# Bump when the files or the graphs an export contains change: old exports are then ignored.
# 2: manifests record the digests of the export's files and of the model it came from.
EXPORT_FORMAT = 2
OPSET = 17
MANIFEST = "manifest.json"
INSTALL_HINT = "install the index extra: pip install 'tribrid[index]'"

#: Whether sessions use ONNX Runtime's growing CPU memory arena (see :func:`session`).
CPU_MEM_ARENA = False
#: Whether a session's threads spin after a run, waiting for the next one (ONNX Runtime's
#: default, kept: off saves CPU but costs encoding and ingestion throughput and query
#: latency under load; benchmarks/results/onnx-spinning.md).
SPINNING = True

_lock = threading.Lock()
_sessions: dict[tuple[str, int | None], Any] = {}


def default_cache_dir() -> Path:
    """Where exports go when no cache folder is given: the user's cache folder."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tribrid" / "models"


def import_onnxruntime() -> Any:
    """``onnxruntime``, or an error saying how to install it."""
    try:
        import onnxruntime
    except ImportError as e:
        raise MissingDependencyError(
            f"the ONNX encoder backends need onnxruntime and onnx; {INSTALL_HINT}, "
            "or set TRIBRID_MODELS__BACKEND=torch"
        ) from e
    return onnxruntime


def import_onnx() -> Any:
    """``onnx`` (used to export and quantize), or an error saying how to install it."""
    try:
        import onnx
    except ImportError as e:
        raise missing_extra("exporting a model to ONNX", "torch", "onnx") from e
    return onnx


def _fingerprint(resolved: ResolvedModel) -> str:
    # Identity plus the size and time of every file of a local folder: replacing the
    # weights in place (same config, same folder name) must not reuse a stale export.
    digest = hashlib.sha256(f"{resolved.identity}\0{resolved.location}".encode())
    folder = Path(resolved.location)
    if folder.is_dir():
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                stat = path.stat()
                digest.update(
                    f"{path.relative_to(folder)}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()
                )
    return digest.hexdigest()[:12]


def export_dir(cache_dir: Path, resolved: ResolvedModel, backend: EncoderBackend) -> Path:
    """The folder an export of this model for this backend lives in."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", resolved.identity).strip("_") or "model"
    return (
        Path(cache_dir) / f"{slug}-{_fingerprint(resolved)}" / f"{backend.value}-v{EXPORT_FORMAT}"
    )


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # not POSIX: the atomic rename alone keeps exports whole
        yield
        return
    with open(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def ensure_export(target: Path, build: Callable[[Path], dict[str, Any]]) -> Path:
    """Return ``target``, building it first with ``build(temp_folder)`` if it is missing.

    ``build`` writes the model files into the folder it is given and returns the
    manifest. The folder is renamed to ``target`` only once complete, under a lock, so
    a crash leaves no half export and two processes never both export.

    Raises:
        EncoderError: The cache folder cannot be written.
    """
    if (target / MANIFEST).is_file():
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise EncoderError(
            f"cannot create the model export cache {target.parent}: {e}; "
            "set TRIBRID_MODELS__CACHE_DIR to a writable folder"
        ) from e
    with _file_lock(target.parent / f".{target.name}.lock"):
        if (target / MANIFEST).is_file():  # another process exported while we waited
            return target
        temp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            manifest = build(temp)
            manifest["format"] = EXPORT_FORMAT
            manifest["files"] = {
                item.name: file_sha256(item)
                for item in sorted(temp.iterdir())
                if item.is_file() and item.name not in (MANIFEST, VERIFIED)
            }
            (temp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
            if target.exists():  # a half folder from a process killed mid-rename
                shutil.rmtree(target)
            os.rename(temp, target)
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
    return target


def verify_export(folder: Path, *, source: dict[str, str] | None = None) -> None:
    """Check an export's files against the digests its manifest recorded, and, for a
    pinned model, that it was made from exactly the pinned files.

    Raises:
        EncoderError: A file changed, or the export was made from other model files; the
            message names it and says to delete the folder (the next use exports again).
    """
    manifest = read_manifest(folder)
    files = manifest.get("files")
    fix = f"delete {folder} and the next use exports the model again"
    if not isinstance(files, dict) or not files:
        raise EncoderError(f"the ONNX export {folder} records no file digests; {fix}")
    stamps = _stamps(folder, files)
    if stamps is None or _verified_stamps(folder, files) != stamps:
        for name, expected in files.items():
            path = folder / name
            actual = file_sha256(path) if path.is_file() else "missing"
            if actual != expected:
                raise EncoderError(
                    f"the ONNX export file {path} has SHA-256 {actual[:16]}, not the "
                    f"{str(expected)[:16]} recorded when it was made: it changed; {fix}"
                )
        if stamps is not None:
            _record_verified(folder, files, stamps)
    if source and manifest.get("source_sha256") != source:
        raise EncoderError(
            f"the ONNX export {folder} was not made from the pinned files of this model; {fix}"
        )


# Beside a manifest: the files' stat when their digests last matched it. A file whose
# size, inode, mtime and ctime are unchanged is not hashed again on every load (a search
# process loads the models each time); any write to a file changes its ctime, which no
# user call can set back.
VERIFIED = "verified.json"


def _stamps(folder: Path, files: dict[str, Any]) -> dict[str, list[int]] | None:
    stamps = {}
    for name in files:
        stamp = _stamp(folder / name)
        if stamp is None:
            return None
        stamps[name] = stamp
    return stamps


def _stamp(path: Path) -> list[int] | None:
    """A file's size, inode, mtime and ctime, or ``None`` if it cannot be read."""
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns]


def _verified_stamps(folder: Path, files: dict[str, Any]) -> dict[str, list[int]] | None:
    try:
        record = json.loads((folder / VERIFIED).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("files") != files:
        return None  # verified against another manifest
    stamps = record.get("stamps")
    return stamps if isinstance(stamps, dict) else None


def _record_verified(folder: Path, files: dict[str, Any], stamps: dict[str, list[int]]) -> None:
    """Remember the stat of files that matched their digests (best effort: a read-only
    cache folder is hashed on every load, as before)."""
    with contextlib.suppress(OSError):
        temp = folder / f".{VERIFIED}.{os.getpid()}.tmp"
        temp.write_text(json.dumps({"files": files, "stamps": stamps}))
        os.replace(temp, folder / VERIFIED)


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of a complete export."""
    result: dict[str, Any] = json.loads((folder / MANIFEST).read_text())
    return result


def quantize(source: Path, target: Path) -> None:
    """Dynamic int8 quantization of the weights of ``source``'s matrix products.

    Weights are quantized per output channel: per-tensor scales cost MiniLM a cosine of
    about 0.94 with its fp32 vectors, per-channel ones about 0.99.
    """
    import_onnx()
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with warnings.catch_warnings(), _quiet_root_logger():
        warnings.simplefilter("ignore")
        quantize_dynamic(
            source,
            target,
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul"],
            # Shape inference cannot type every intermediate of an exported graph; they are floats.
            extra_options={"DefaultTensorType": 1},
        )


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    # onnxruntime.quantization logs an advice to pre-process on the root logger.
    import logging

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def export_torch(
    module: Any,
    folder: Path,
    *,
    input_names: list[str],
    output_name: str,
    output_axes: dict[int, str],
) -> Path:
    """Trace a torch module taking ``(batch, seq)`` integer inputs into ``folder/model.onnx``.

    The example batch has padding, so that the traced graph keeps the attention mask (an
    all-ones mask would let the model take a mask-free branch while tracing).
    """
    import_onnx()
    import torch

    ids = torch.tensor([[101, 2023, 2003, 1037, 102], [101, 2460, 102, 0, 0]], dtype=torch.long)
    mask = (ids != 0).long()
    inputs = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
    axes = {name: {0: "batch", 1: "sequence"} for name in input_names}
    axes[output_name] = output_axes
    path = folder / "model.onnx"
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        # The TorchScript exporter warns that it is legacy and about traced branches; the
        # dynamo exporter would need onnxscript. Exports are checked against torch in tests.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            tuple(inputs[name] for name in input_names),
            str(path),
            input_names=input_names,
            output_names=[output_name],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )
    return path


def session(path: Path, threads: int | None) -> Any:
    """An ONNX Runtime session for ``path``, created once per process and thread count.

    The graph ONNX Runtime optimizes at load is kept beside the export (see
    :func:`_optimized_graph`), so later processes skip the optimization.
    """
    ort = import_onnxruntime()
    if threads is None and "torch" in sys.modules:
        # Worker bootstraps cap torch's threads per process (cores / concurrency); follow
        # that cap rather than ONNX Runtime's default of every core in every process.
        threads = int(sys.modules["torch"].get_num_threads())
    key = (str(path), threads)
    with _lock:
        if key not in _sessions:
            try:
                _sessions[key] = _load_session(ort, path, threads)
            except Exception as e:  # onnxruntime raises its own exception types
                raise EncoderError(
                    f"cannot load the ONNX export {path}: {e}; delete its folder to export again"
                ) from e
        return _sessions[key]


def _session_options(ort: Any, threads: int | None) -> Any:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.inter_op_num_threads = 1
    if threads is not None:
        options.intra_op_num_threads = threads
    options.log_severity_level = 3
    # ONNX Runtime's CPU arena keeps the largest buffers any batch shape needed and
    # never gives them back; with inputs of every length that is most of a long
    # run's memory. Plain allocations keep the process flat (benchmarks/results/
    # example-docs.md).
    options.enable_cpu_mem_arena = CPU_MEM_ARENA
    options.enable_mem_pattern = CPU_MEM_ARENA
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if SPINNING else "0")
    return options


def _load_session(ort: Any, path: Path, threads: int | None) -> Any:
    providers = ["CPUExecutionProvider"]
    optimized = _optimized_graph(ort, path)
    if optimized is None:
        return ort.InferenceSession(str(path), _session_options(ort, threads), providers=providers)
    if (ready := _open_optimized(ort, optimized, threads)) is not None:
        return ready
    with _writable_lock(optimized.parent) as writable:
        # Another process may have written it while this one waited for the lock.
        if writable and (ready := _open_optimized(ort, optimized, threads)) is not None:
            return ready
        options = _session_options(ort, threads)
        temp = optimized.with_name(f".{optimized.name}.{os.getpid()}.tmp")
        if writable:
            options.optimized_model_filepath = str(temp)
        try:
            result = ort.InferenceSession(str(path), options, providers=providers)
            if writable:
                _publish_optimized(temp, optimized)
        finally:
            with contextlib.suppress(OSError):
                temp.unlink()  # left only if the load failed after writing it
        return result


def _open_optimized(ort: Any, optimized: Path, threads: int | None) -> Any:
    """A session of the kept optimized graph, or ``None`` if there is none to trust (a
    graph that fails to load is removed, to be made again)."""
    if not _is_current(optimized):
        return None
    options = _session_options(ort, threads)
    # Already optimized at ORT_ENABLE_ALL by this ONNX Runtime on this CPU: the same
    # graph, the same outputs, without the optimizer's time at every start.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        return ort.InferenceSession(str(optimized), options, providers=["CPUExecutionProvider"])
    except Exception:  # onnxruntime raises its own exception types
        _discard(optimized)
        return None


# The optimized graphs of an export's networks, in ``<export>/optimized/``. ONNX Runtime's
# ORT_ENABLE_ALL graph may hold kernels chosen for this CPU and version of ONNX Runtime,
# so the file's name carries a digest of both and of the network it came from; a record
# beside it keeps the file's stat when it was written, and a file whose stat changed since
# is made again rather than trusted. A read-only cache folder loads as before.
OPTIMIZED = "optimized"


def _optimized_graph(ort: Any, path: Path) -> Path | None:
    """Where the optimized graph of ``path`` is kept, or ``None`` if it is not an export's."""
    try:
        digest = read_manifest(path.parent)["files"][path.name]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    tag = hashlib.sha256(
        "\0".join([str(digest), str(ort.__version__), _cpu_signature()]).encode()
    ).hexdigest()[:16]
    return path.parent / OPTIMIZED / f"{path.stem}-{tag}.onnx"


@functools.cache
def _cpu_signature() -> str:
    """The machine and its instruction-set flags (what ONNX Runtime picks kernels by)."""
    import platform

    flags = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith(("flags", "Features")):
                flags = " ".join(sorted(line.partition(":")[2].split()))
                break
    return f"{platform.machine()} {platform.processor()} {flags}"


def _is_current(optimized: Path) -> bool:
    try:
        recorded = json.loads(optimized.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return False
    stamp = _stamp(optimized)
    return stamp is not None and recorded == {"stamp": stamp}


def _publish_optimized(temp: Path, optimized: Path) -> None:
    """Move a freshly written optimized graph into place and record its stat (best
    effort), removing the graphs of other versions of ONNX Runtime or other CPUs."""
    if not temp.is_file():
        return
    try:
        os.replace(temp, optimized)
        stamp = _stamp(optimized)
        record = optimized.with_name(f".{optimized.stem}.{os.getpid()}.json.tmp")
        record.write_text(json.dumps({"stamp": stamp}))
        os.replace(record, optimized.with_suffix(".json"))
    except OSError:
        _discard(temp)
        return
    prefix = optimized.stem.rpartition("-")[0] + "-"
    for other in optimized.parent.iterdir():
        if other.name.startswith(prefix) and other.stem != optimized.stem:
            _discard(other)


def _discard(path: Path) -> None:
    for item in (path, path.with_suffix(".json")):
        with contextlib.suppress(OSError):
            item.unlink()


@contextlib.contextmanager
def _writable_lock(folder: Path) -> Iterator[bool]:
    """Hold ``folder``'s lock if the folder can be made and written; say whether."""
    try:
        folder.mkdir(exist_ok=True)
        lock = contextlib.ExitStack()
        lock.enter_context(_file_lock(folder / ".lock"))
    except OSError:
        yield False
        return
    with lock:
        yield True
