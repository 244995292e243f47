"""Environment and code capture: what a rebuild needs to know about the machine and the source."""

from __future__ import annotations

import csv
import email
import functools
import importlib.metadata
import io
import os
import platform
import re
import subprocess
import sys
import tokenize
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from seedline.core.fingerprint import fingerprint_bytes, fingerprint_file, fingerprint_value

# environment variables that change numerical results or their determinism
_ENV_PATTERNS = re.compile(
    r"^(PYTHONHASHSEED|OMP_.*|MKL_.*|OPENBLAS_.*|BLIS_.*|VECLIB_.*|NUMEXPR_.*|KMP_.*|GOTO_NUM_THREADS"
    r"|CUBLAS_WORKSPACE_CONFIG|CUDA_VISIBLE_DEVICES|CUDA_LAUNCH_BLOCKING|TF_DETERMINISTIC_OPS|TF_CUDNN_DETERMINISTIC"
    r"|TF_ENABLE_ONEDNN_OPTS|TF_NUM_INTRAOP_THREADS|TF_NUM_INTEROP_THREADS|XLA_FLAGS|JAX_.*"
    r"|KERAS_BACKEND|PYTORCH_.*|SKLEARN_.*|JOBLIB_.*|LOKY_.*|SEEDLINE_.*)$"
)
_SECRET = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|KEY|CREDENTIAL|AUTH)", re.IGNORECASE)
# where the store lives is not part of a run: moving a store must not change a fingerprint,
# and these URLs may hold a password (the test suite's service locations are the same kind);
# nor is the load memo's folder or bound (execution/loadmemo.py), which changes no result
_NOT_RECORDED = re.compile(
    r"^SEEDLINE_(DATABASE_URL|OBJECTS_URL|TEST_PG_URL|TEST_S3_.*|LOAD_MEMO|LOAD_MEMO_MAX_MB)$"
)


def relevant_env_vars(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Thread and determinism variables only; anything that looks secret is never recorded."""
    env = os.environ if environ is None else environ
    return {
        k: env[k]
        for k in sorted(env)
        if _ENV_PATTERNS.match(k) and not _SECRET.search(k) and not _NOT_RECORDED.match(k)
    }


def _cpu() -> dict[str, Any]:
    info: dict[str, Any] = {"machine": platform.machine(), "count": os.cpu_count()}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        info["model"] = platform.processor() or None
        return info
    model = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    flags = re.search(r"^(?:flags|Features)\s*:\s*(.+)$", text, re.M)
    info["model"] = model.group(1).strip() if model else platform.processor() or None
    # SIMD extensions decide which kernels BLAS picks, so they can change the last bits
    simd = sorted(
        f
        for f in (flags.group(1).split() if flags else [])
        if re.match(r"^(sse\d.*|avx.*|fma.*|neon|asimd.*|sve.*|amx.*)$", f)
    )
    info["simd"] = simd
    return info


# the end of a metadata file's headers: its long description follows, often most of the file
_HEADERS_END = re.compile(r"\r?\n\r?\n")
# a header line the email parser reads as "field: value" (its field-name characters: no space, no colon)
_FIELD_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+")


def _name_and_version(dist: importlib.metadata.Distribution) -> tuple[str | None, str | None]:
    """``dist.metadata["Name"]`` and ``dist.version``, parsing the headers only.

    ``Distribution.metadata`` parses the whole file, description included, and
    ``.version`` parses it again: about a millisecond per distribution, a second for an
    environment with deep-learning frameworks. The header block alone holds both fields;
    ``_plain_fields`` reads them in one pass (the email parser itself took 0.25 ms a
    distribution, 50 ms for 200), and any block it cannot read exactly as the parser does
    goes to the parser; a file without a header block is read as the library reads it.
    """
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or dist.read_text("")
    if text is None:
        meta = dist.metadata
        return meta["Name"], meta["Version"]
    end = _HEADERS_END.search(text)
    block = text[: end.start()] if end else text
    plain = _plain_fields(block)
    if plain is not None:
        return plain
    message = email.message_from_string(block)
    return message["Name"], message["Version"]


def _plain_fields(block: str) -> tuple[str | None, str | None] | None:
    """The first ``Name`` and ``Version`` of a header block, as ``email`` reads them, or None
    where the block holds anything that parser could read differently.

    The parser (compat32 policy) matches field names without regard to case, answers the
    first occurrence, and gives the value with the blanks after the colon and the line end
    removed. Handed back to it: a carriage return without its line feed, text it would
    decode with surrogates, a line that is no plain ``field: value`` (a ``From `` line, a
    defect), and a folded Name or Version.
    """
    if "\r" in block.replace("\r\n", "") or (not block.isascii() and not _encodable(block)):
        return None
    name: str | None = None
    version: str | None = None
    field = ""
    for line in block.split("\n"):
        line = line.removesuffix("\r")
        if not line:  # the headers end here (a block that ends with its line break)
            break
        if line[:1] in (" ", "\t"):  # continues the field before it
            if field in ("name", "version"):
                return None
            continue
        key, colon, value = line.partition(":")
        if not colon or not _FIELD_NAME.fullmatch(key):
            return None
        field = key.lower()
        if field == "name" and name is None:
            name = value.lstrip(" \t")
        elif field == "version" and version is None:
            version = value.lstrip(" \t")
    return name, version


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: the parser answers a Header object for them
        return False
    return True


def _inferred_top_level(dist: importlib.metadata.Distribution) -> set[str]:
    """``importlib.metadata._top_level_inferred(dist)``: the top-level names of its ``.py`` files.

    The library makes a ``PackagePath`` of every line of RECORD (tens of thousands for
    the deep-learning frameworks); a plain relative path is split here instead, which is
    what ``pathlib`` does with it, and any other path still goes through ``pathlib``.
    """
    text = dist.read_text("RECORD")
    if text:
        rows: Iterable[list[str]] = csv.reader(text.splitlines())
    else:
        egg = dist.read_text("SOURCES.txt")
        if not egg:
            return set()
        rows = csv.reader(f'"{line}"' for line in egg.splitlines())
    names: set[str] = set()
    for row in rows:
        if not row:
            continue  # a blank line (the library itself fails on one)
        path = row[0]
        if not path.endswith(".py") or path == ".py":
            continue
        parts = path.split("/")
        if path.startswith("/") or "" in parts or "." in parts:
            pure = importlib.metadata.PackagePath(path)
            if pure.suffix == ".py":
                names.add(pure.parts[0] if len(pure.parts) > 1 else pure.with_suffix("").name)
            continue
        names.add(parts[0] if len(parts) > 1 else parts[0][: -len(".py")])
    return names


@functools.cache
def packages_distributions() -> dict[str, list[str | None]]:
    """``importlib.metadata.packages_distributions()``, read the cheap way; once per process.

    The same mapping (top-level module -> names of the distributions that provide it, in
    the same order): ``top_level.txt`` where a distribution has one, else the top-level
    names of the ``.py`` files in its RECORD. The library parses each distribution's whole
    metadata once per module it provides and makes a path object of every RECORD line,
    seconds in an environment with deep-learning frameworks.
    """
    out: dict[str, list[str | None]] = {}
    for dist, name, _ in _distributions(_path_key()):
        for top in _top_level(dist):
            out.setdefault(top, []).append(name)
    return out


def _top_level(dist: importlib.metadata.Distribution) -> Iterable[str]:
    """The top-level modules a distribution provides: its ``top_level.txt``, else its RECORD's."""
    declared = (dist.read_text("top_level.txt") or "").split()
    return declared or _inferred_top_level(dist)


@functools.cache
def first_distribution(top: str) -> str | None:
    """``packages_distributions().get(top)[0]`` (None where no distribution provides ``top``),
    read only as far as that first distribution: most of the map's cost is parsing the RECORD
    of distributions without a ``top_level.txt``, and a step's key needs one module's provider."""
    return next(
        (name for dist, name, _ in _distributions(_path_key()) if top in _top_level(dist)), None
    )


def _path_key() -> tuple[str, ...]:
    """The import path with each folder's modification time: an install or uninstall changes it."""
    key = []
    for entry in sys.path:
        try:
            key.append(f"{entry}@{os.stat(entry or '.').st_mtime_ns}")
        except OSError:
            key.append(entry)
    return tuple(key)


@functools.cache
def _distributions(
    path_key: tuple[str, ...],
) -> tuple[tuple[importlib.metadata.Distribution, str | None, str | None], ...]:
    """Every installed distribution with its name and version, in the library's order; one walk
    per state of the import path serves both the environment record and the module map."""
    return tuple((dist, *_name_and_version(dist)) for dist in importlib.metadata.distributions())


def distribution_version(name: str) -> str:
    """``importlib.metadata.version(name)`` from the one walk of the installed distributions.

    The library finds and parses the distribution's metadata again on every call (about a
    millisecond; the step cache asks once per class of every step it looks up). The same
    answer: the first distribution of that (normalised) name on the import path; raises
    ``importlib.metadata.PackageNotFoundError`` like the library when there is none.
    """
    found = _first_versions(_path_key()).get(_normalised(name))
    if found is not None:
        return found
    return importlib.metadata.version(name)  # not in the walk: the library says why


@functools.cache
def _first_versions(path_key: tuple[str, ...]) -> dict[str, str]:
    """Normalised name -> version of the first distribution of that name on the import path."""
    out: dict[str, str] = {}
    for _, name, version in _distributions(path_key):
        if name and version is not None:
            out.setdefault(_normalised(name), str(version))
    return out


def _normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_distributions() -> dict[str, str]:
    """Every installed distribution, name (normalised) -> version, sorted by name.

    Read once per state of the import path (``_path_key``).
    """
    out: dict[str, str] = {}
    for _, name, version in _distributions(_path_key()):
        if name:
            out[_normalised(name)] = str(version)
    return dict(sorted(out.items()))


def thread_pools() -> list[dict[str, Any]]:
    """BLAS/OpenMP libraries loaded in this process and their thread counts (threadpoolctl)."""
    from threadpoolctl import threadpool_info

    keep = (
        "user_api",
        "internal_api",
        "prefix",
        "version",
        "num_threads",
        "architecture",
        "threading_layer",
    )
    pools = [{k: p.get(k) for k in keep} for p in threadpool_info()]
    # every field in the key: two copies of one library (NumPy's and SciPy's OpenBLAS) must not
    # swap places with import order
    return sorted(pools, key=lambda p: tuple(str(p[k]) for k in keep))


def capture_environment() -> dict[str, Any]:
    """Interpreter, platform, CPU, packages, thread pools and relevant environment variables."""
    env: dict[str, Any] = {
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "compiler": platform.python_compiler(),
            "executable": sys.executable,
        },
        "platform": {
            "system": platform.system(),
            "release": platform.release(),
            "platform": platform.platform(),
            "libc": "-".join(platform.libc_ver()),
        },
        "cpu": _cpu(),
        "packages": installed_distributions(),
        "thread_pools": thread_pools(),
        "env_vars": relevant_env_vars(),
    }
    env["fingerprint"] = environment_fingerprint(env)
    return env


def distinct_pools(env: dict[str, Any]) -> list[dict[str, Any]]:
    """Each BLAS/OpenMP library once (kind, version, kernel, threads), in a stable order.

    Which copies of a library are loaded depends on what was imported before (a second
    libgomp, NumPy's and SciPy's OpenBLAS); what can change results is which libraries,
    versions, kernels and thread counts are in play.
    """
    keys = ("internal_api", "version", "architecture", "num_threads")
    seen = {
        tuple(str(p.get(k)) for k in keys): {k: p.get(k) for k in keys}
        for p in env.get("thread_pools", [])
    }
    return [seen[k] for k in sorted(seen)]


def environment_fingerprint(env: dict[str, Any]) -> str:
    """Fingerprint of the parts that can change results (not paths or the executable's location)."""
    essential = {
        "python": {k: env["python"][k] for k in ("version", "implementation")},
        "system": env["platform"]["system"],
        "cpu": {k: env["cpu"].get(k) for k in ("machine", "simd")},
        "packages": env["packages"],
        "thread_pools": distinct_pools(env),
        # the hash seed is a seed (recorded under seeds), derived from the master seed
        "env_vars": {k: v for k, v in env["env_vars"].items() if k != "PYTHONHASHSEED"},
    }
    return fingerprint_value(essential, kind="env")


# -- code ------------------------------------------------------------------------------------
_MAX_LISTED = 200  # a manifest lists at most this many file names per kind; counts are exact


def _generated(path: str) -> bool:
    parts = path.split("/")
    return ".seedline" in parts or "__pycache__" in parts or path.endswith((".pyc", ".pyo"))


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, check=False, timeout=60)


_MAX_UNTRACKED_BYTES = 10 << 20  # larger untracked files are named, not copied into the diff


def _working_tree_diff(
    toplevel: Path, commit: str | None, untracked: list[str]
) -> tuple[bytes, list[str]]:
    """Binary diff of the working tree against HEAD, untracked (non-ignored) files included.

    Untracked files become 'new file' patches via ``git diff --no-index``, so nothing is
    written into the user's repository; ``git apply`` recreates the whole tree.
    """
    parts: list[bytes] = []
    if commit:
        tracked = _git(toplevel, "diff", "HEAD", "--binary")
        parts.append(tracked.stdout if tracked.returncode == 0 else b"")
    skipped: list[str] = []
    for rel in untracked:
        path = toplevel / rel.strip('"')
        if not path.is_file() or path.stat().st_size > _MAX_UNTRACKED_BYTES:
            skipped.append(rel)
            continue
        patch = _git(toplevel, "diff", "--no-index", "--binary", "--", "/dev/null", rel.strip('"'))
        parts.append(patch.stdout)  # exit status 1 means 'differs', which is the point
    return b"".join(parts), skipped


def capture_git(root: Path) -> tuple[dict[str, Any], bytes | None]:
    """Commit, dirty flag and the uncommitted diff (returned as bytes to store as an object)."""
    try:
        top = _git(root, "rev-parse", "--show-toplevel")
    except (OSError, subprocess.TimeoutExpired):
        return {"repository": False, "reason": "git is not installed"}, None
    if top.returncode != 0:
        return {"repository": False, "reason": "not inside a git repository"}, None
    head = _git(root, "rev-parse", "HEAD")
    commit = head.stdout.decode().strip() if head.returncode == 0 else None
    status = _git(root, "status", "--porcelain", "--untracked-files=all")
    lines = [ln for ln in status.stdout.decode(errors="replace").splitlines() if ln.strip()]
    # the store is seedline's own output, and byte-code caches are Python's: neither makes a
    # tree dirty
    lines = [ln for ln in lines if not _generated(ln[3:].strip('"'))]
    toplevel = Path(top.stdout.decode().strip())
    untracked = sorted(ln[3:] for ln in lines if ln.startswith("??"))
    changed = sorted(ln[3:] for ln in lines if not ln.startswith("??"))
    diff_bytes, skipped = _working_tree_diff(toplevel, commit, untracked)
    info: dict[str, Any] = {
        "repository": True,
        "root": top.stdout.decode().strip(),
        "commit": commit,
        "dirty": bool(lines),
        "changed_files": changed[:_MAX_LISTED],
        "untracked_files": untracked[:_MAX_LISTED],
        "counts": {"changed": len(changed), "untracked": len(untracked)},
        "diff": fingerprint_bytes(diff_bytes, kind="diff") if diff_bytes else None,
        "untracked_not_captured": skipped,
    }
    return info, (diff_bytes or None)


def source_fingerprint(source: str) -> str:
    """Hash of Python source with comments, docstrings and layout removed: edits to prose don't count."""
    tokens: list[str] = []
    prev = tokenize.INDENT
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type in (tokenize.COMMENT, tokenize.NL, tokenize.ENCODING):
                continue
            if tok.type == tokenize.STRING and prev in (
                tokenize.INDENT,
                tokenize.NEWLINE,
                tokenize.DEDENT,
            ):
                prev = tok.type
                continue  # a docstring (or bare string statement)
            prev = tok.type
            tokens.append(f"{tok.type}:{tok.string}")
    except (tokenize.TokenError, IndentationError):
        return fingerprint_bytes(source.encode(), kind="source")
    return fingerprint_bytes("\n".join(tokens).encode(), kind="source")


def local_modules(module_names: list[str], root: Path) -> dict[str, dict[str, str]]:
    """Source hashes of the modules among ``module_names`` whose file lives under ``root``."""
    out: dict[str, dict[str, str]] = {}
    root = root.resolve()
    for name in sorted(set(module_names)):
        mod = sys.modules.get(name)
        file = getattr(mod, "__file__", None)
        if not file:
            continue
        path = Path(file).resolve()
        if root not in path.parents or "site-packages" in path.parts:
            continue
        src = path.read_text(encoding="utf-8", errors="replace")
        out[name] = {
            "path": str(path.relative_to(root)),
            "source": source_fingerprint(src),
            "file": fingerprint_file(path),
        }
    return out
