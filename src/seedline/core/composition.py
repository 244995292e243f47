"""Spec composition: ``extends`` (a spec inherits another) and ``use`` (reusable step blocks).

A spec file may say ``extends: base.yaml``: the base is read first (it may extend another
in turn) and the file's own keys are merged over it. Mappings merge key by key; lists of
named items (pipeline steps, column groups, a group's steps) merge by name, items of the
base keeping their place and new names being appended; any other value replaces the
base's. A step or column group written as ``use: blocks.yaml#name`` is taken from a block
file (a YAML mapping of name -> step or column group), and the keys written beside ``use``
are merged over it (``name`` renames it).

The result is one plain spec dict (the spec's fingerprint is that of the resolved spec, so
moving a value between files changes nothing), the files it came from with their
fingerprints, and for every value that came from a file other than the spec itself, which
file that was: ``seedline diff`` names it when an inherited value changed.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from seedline.core.errors import SpecError

Role = Literal["spec", "extends", "blocks"]
# a spec that nests deeper than this is a mistake (or a cycle the path check missed)
_MAX_DEPTH = 32


@dataclass(frozen=True)
class SpecFile:
    """A file a resolved spec came from: its path relative to the spec's folder, role and fingerprint."""

    path: str
    role: Role
    fingerprint: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "role": self.role, "fingerprint": self.fingerprint}


@dataclass
class ComposedSpec:
    """A spec dict with ``extends`` and ``use`` resolved, and where its values came from."""

    data: dict[str, Any]
    files: list[SpecFile] = field(default_factory=list)
    # flattened key path (see flatten_spec) -> path of the file that set it, for values that
    # came from a file other than the spec itself
    origin: dict[str, str] = field(default_factory=dict)

    @property
    def composed(self) -> bool:
        """True when the spec used ``extends`` or ``use`` (a plain spec records nothing extra)."""
        return len(self.files) > 1


def flatten_spec(node: Any, prefix: str = "") -> dict[str, Any]:
    """``{'pipeline.clf.params.C': 1.0, ...}``: named list items are addressed by name, other lists are values."""
    out: dict[str, Any] = {}
    _flatten_into(node, prefix, out)
    return out


def _flatten_into(node: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            _flatten_into(v, f"{prefix}.{k}" if prefix else str(k), out)
    elif _named_list(node):
        for item in node:
            _flatten_into(
                {k: v for k, v in item.items() if k != "name"}, f"{prefix}.{item['name']}", out
            )
    else:
        out[prefix] = node


def _named_list(node: Any) -> bool:
    return (
        isinstance(node, list)
        and bool(node)
        and all(isinstance(x, dict) and "name" in x for x in node)
    )


def merge(base: Any, over: Any) -> Any:
    """``over`` merged onto ``base``: mappings by key, named lists by name, anything else replaced."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = merge(base[k], v) if k in base else copy.deepcopy(v)
        return out
    if _named_list(base) and _named_list(over):
        items = [dict(x) for x in base]
        index = {x["name"]: i for i, x in enumerate(items)}
        for item in over:
            if item["name"] in index:
                i = index[item["name"]]
                items[i] = merge(items[i], item)
            else:
                index[item["name"]] = len(items)
                items.append(copy.deepcopy(item))
        return items
    return copy.deepcopy(over)


def compose_file(path: Path, parse: Any, fingerprint: Any) -> ComposedSpec:
    """Resolve the spec at ``path``; ``parse(text, source)`` reads YAML, ``fingerprint(path)`` hashes a file."""
    top = path.resolve().parent
    files: dict[Path, SpecFile] = {}

    def rel(p: Path) -> str:
        return Path(os.path.relpath(p, top)).as_posix()

    def note(p: Path, role: Role) -> None:
        files.setdefault(p, SpecFile(rel(p), role, fingerprint(p)))

    def read(p: Path, chain: list[Path]) -> tuple[dict[str, Any], dict[str, str]]:
        if p in chain:
            loop = " -> ".join(rel(x) for x in [*chain[chain.index(p) :], p])
            raise SpecError(
                f"'extends' makes a cycle: {loop}",
                file=str(chain[-1]),
                hint="a spec may extend another only if that one does not extend it back",
            )
        if len(chain) >= _MAX_DEPTH:
            raise SpecError(f"'extends' chains more than {_MAX_DEPTH} files deep", file=str(p))
        data = parse(p.read_text(encoding="utf-8"), str(p))
        note(p, "spec" if not chain else "extends")
        base_ref = data.pop("extends", None)
        own_origin: dict[str, str] = {}
        data = _resolve_uses(data, p, own_origin, note, parse, rel)
        for key in flatten_spec(data):
            own_origin.setdefault(key, rel(p))
        if base_ref is None:
            return data, own_origin
        if not isinstance(base_ref, str) or not base_ref:
            raise SpecError(
                f"'extends' must be the path of another spec file, relative to {rel(p)}; got {base_ref!r}",
                file=str(p),
                path="extends",
            )
        base_path = (p.parent / base_ref).resolve()
        if not base_path.is_file():
            raise SpecError(
                f"'extends: {base_ref}' names a file that does not exist (looked for {base_path})",
                file=str(p),
                path="extends",
            )
        base_data, base_origin = read(base_path, [*chain, p])
        merged = merge(base_data, data)
        keys = flatten_spec(merged)
        origin = {k: v for k, v in {**base_origin, **own_origin}.items() if k in keys}
        return merged, origin

    data, origin = read(path.resolve(), [])
    me = rel(path.resolve())
    return ComposedSpec(
        data=data,
        files=list(files.values()),
        origin={k: v for k, v in sorted(origin.items()) if v != me},
    )


def _resolve_uses(
    data: dict[str, Any],
    spec_path: Path,
    origin: dict[str, str],
    note: Any,
    parse: Any,
    rel: Any,
) -> dict[str, Any]:
    """Replace every ``use: FILE#NAME`` step or column group in ``data`` by its block."""
    cache: dict[Path, dict[str, Any]] = {}

    def block(ref: Any, where: str) -> tuple[dict[str, Any], Path]:
        if not isinstance(ref, str) or "#" not in ref:
            raise SpecError(
                f"'{where}.use' must look like 'blocks.yaml#name' (a block file and the name of a block in it); got {ref!r}",
                file=str(spec_path),
                path=f"{where}.use",
            )
        file_ref, name = ref.rsplit("#", 1)
        bpath = (spec_path.parent / file_ref).resolve()
        if bpath not in cache:
            if not bpath.is_file():
                raise SpecError(
                    f"'{where}.use: {ref}' names a block file that does not exist (looked for {bpath})",
                    file=str(spec_path),
                    path=f"{where}.use",
                )
            cache[bpath] = parse(bpath.read_text(encoding="utf-8"), str(bpath))
            note(bpath, "blocks")
        blocks = cache[bpath]
        if name not in blocks or not isinstance(blocks[name], dict):
            from seedline.core.errors import did_you_mean

            names = sorted(str(k) for k in blocks)
            raise SpecError(
                f"'{where}.use: {ref}': {rel(bpath)} has no block named {name!r}.{did_you_mean(name, names)}",
                file=str(spec_path),
                path=f"{where}.use",
                hint="blocks there: " + ", ".join(names),
            )
        return dict(blocks[name], name=name), bpath

    def walk(node: Any, prefix: str, depth: int) -> Any:
        if depth > _MAX_DEPTH:
            raise SpecError(
                f"blocks nest more than {_MAX_DEPTH} deep at {prefix!r}", file=str(spec_path)
            )
        if isinstance(node, dict):
            return {
                k: walk(v, f"{prefix}.{k}" if prefix else str(k), depth + 1)
                for k, v in node.items()
            }
        if isinstance(node, list):
            out = []
            for i, item in enumerate(node):
                if isinstance(item, dict) and "use" in item:
                    where = f"{prefix}.{item.get('name', i)}"
                    body, bpath = block(item["use"], where)
                    own = {k: v for k, v in item.items() if k != "use"}
                    resolved = merge(body, own)
                    item_prefix = f"{prefix}.{resolved['name']}"
                    for key in flatten_spec(
                        {k: v for k, v in body.items() if k != "name"}, item_prefix
                    ):
                        origin[key] = rel(bpath)
                    for key in flatten_spec(
                        {k: v for k, v in own.items() if k != "name"}, item_prefix
                    ):
                        origin[key] = rel(spec_path)
                    out.append(walk(resolved, item_prefix, depth + 1))
                else:
                    name = item.get("name", i) if isinstance(item, dict) else i
                    out.append(walk(item, f"{prefix}.{name}", depth + 1))
            return out
        return node

    return walk(data, "", 0)
