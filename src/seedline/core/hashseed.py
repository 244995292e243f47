"""The PYTHONHASHSEED a spec pins, computed before anything heavy is imported.

``seedline run`` restarts the interpreter with the hash seed derived from the spec's master
seed (``SeedPlan.hash_seed``). The restart is cheap only if it happens before NumPy,
pydantic or scikit-learn are imported, so this module derives the same number with the
standard library, BLAKE3 and YAML alone: NumPy's ``SeedSequence`` (its documented
hash-mixing algorithm, 32-bit words) written out in Python. A test checks it against
``SeedPlan.hash_seed`` for many seeds.
"""

from __future__ import annotations

import os

import blake3

_MASK = 0xFFFFFFFF
_INIT_A = 0x43B0D7E5
_MULT_A = 0x931E8875
_INIT_B = 0x8B51F9DD
_MULT_B = 0x58F38DED
_MIX_MULT_L = 0xCA01F9DD
_MIX_MULT_R = 0x4973F715
_XSHIFT = 16
_POOL_SIZE = 4
_U32 = 2**32
_DIGITS = frozenset("0123456789")


def _words(value: int) -> list[int]:
    """An int as 32-bit words, least significant first (NumPy's ``_coerce_to_uint32_array``)."""
    if value == 0:
        return [0]
    out = []
    while value:
        out.append(value & _MASK)
        value >>= 32
    return out


def _seed_sequence_word(entropy: int, spawn_key: tuple[int, ...]) -> int:
    """``SeedSequence(entropy, spawn_key=spawn_key).generate_state(1, np.uint32)[0]``."""
    run = _words(entropy)
    spawn = [w for k in spawn_key for w in _words(k)]
    if spawn and len(run) < _POOL_SIZE:
        run = run + [0] * (_POOL_SIZE - len(run))
    entropy_words = run + spawn
    hash_const = _INIT_A

    def hashmix(value: int) -> int:
        nonlocal hash_const
        value = (value ^ hash_const) & _MASK
        hash_const = (hash_const * _MULT_A) & _MASK
        value = (value * hash_const) & _MASK
        return value ^ (value >> _XSHIFT)

    def mix(x: int, y: int) -> int:
        result = (_MIX_MULT_L * x - _MIX_MULT_R * y) & _MASK
        return result ^ (result >> _XSHIFT)

    pool = [hashmix(entropy_words[i] if i < len(entropy_words) else 0) for i in range(_POOL_SIZE)]
    for src in range(_POOL_SIZE):
        for dst in range(_POOL_SIZE):
            if src != dst:
                pool[dst] = mix(pool[dst], hashmix(pool[src]))
    for src in range(_POOL_SIZE, len(entropy_words)):
        for dst in range(_POOL_SIZE):
            pool[dst] = mix(pool[dst], hashmix(entropy_words[src]))
    value = (pool[0] ^ _INIT_B) & _MASK
    value = (value * ((_INIT_B * _MULT_B) & _MASK)) & _MASK
    return value ^ (value >> _XSHIFT)


def derive_seed(master: int, path: str) -> int:
    """``SeedPlan(master).derive(path)`` without NumPy."""
    digest = blake3.blake3(path.encode("utf-8")).digest(length=16)
    spawn_key = tuple(int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4))
    return _seed_sequence_word(master, spawn_key)


def hash_seed(master: int) -> int:
    """``SeedPlan(master).hash_seed()`` without NumPy."""
    return derive_seed(master, "python/hash_seed") % (_U32 - 1)


def spec_hash_seed(spec_path: str | os.PathLike[str], overrides: list[str]) -> int | None:
    """The hash seed of a spec file's master seed (after a ``--set seed=...``), or None when
    the file cannot be read this simply: the caller then pins it after the full load."""
    path = os.fspath(spec_path)  # os.path, not pathlib: this runs before the restart
    if os.path.isdir(path):
        path = os.path.join(path, "seedline.yaml")
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeError):
        return None
    if not any(item.partition("=")[0].strip() == "seed" for item in overrides):
        # the common spec: one plain 'seed: 123' line at the top level (no YAML import)
        quick = _plain_seed(text)
        if quick is not None:
            return hash_seed(quick)
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    if not isinstance(data, dict):
        return None
    seed = data.get("seed")
    for item in overrides:
        path, sep, raw = item.partition("=")
        if sep and path.strip() == "seed":
            try:
                seed = yaml.safe_load(raw)
            except yaml.YAMLError:
                return None
    if type(seed) is not int or not 0 <= seed < 2**63:
        return None
    return hash_seed(seed)


def _plain_seed(text: str) -> int | None:
    """The value of the one top-level ``seed: <decimal>`` line, when YAML reads it as that int.

    Without ``re`` or YAML (their import would cost more than the rest of the restart). No
    sign, no leading zero (YAML 1.1 reads 010 as octal), an optional ``# comment``; a second
    line that looks like a ``seed`` key (quoted, say) leaves the decision to YAML.
    """
    value: int | None = None
    keys = 0
    for line in text.splitlines():
        bare = line[1:] if line[:1] in ("'", '"') else line
        if not bare.startswith("seed") or bare[4:5].isalnum() or bare[4:5] == "_":
            continue
        keys += 1
        if not line.startswith("seed: "):
            continue
        raw = line[6:].split(" #", 1)[0].rstrip(" ")
        if raw and set(raw) <= _DIGITS and (raw == "0" or raw[0] != "0") and len(raw) <= 19:
            value = int(raw)
    return value if keys == 1 and value is not None and value < 2**63 else None
