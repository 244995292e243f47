"""The README's CLI tour is true: every documented ``$ seedline ...`` command runs and its output has the documented shape.

Each fenced block of README.md that starts with ``$ seedline`` is a piece of a terminal
session. The test replays them in order in a fresh project made by the tour's own
``seedline init`` (committed to git, as the quickstart suggests) and compares the *shape*
of each output with the documented one: JSON by its keys at every level, text line by line
(in order, documented lines being a subsequence of the real ones) with ids, fingerprints,
numbers and paths made generic; a ``key: value`` line is compared by its key, since values
such as the CPU model belong to the machine that wrote the README. ``...`` lines and ``…``
mark what the README left out.

A documented command that the CLI does not have fails the test; commands that only make
sense interactively (a server started with ``&``, curl, kill, head, ls) are not run.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .conftest import REPO, clean_env, git

README = REPO / "README.md"
# run ids are 13 characters of Crockford base32 (lower case), time first
_ID = re.compile(r"\b[0-9][0-9a-hjkmnp-tv-z]{12}\b")
_ID_ARG = re.compile(r"^[0-9][0-9a-hjkmnp-tv-z]{5,12}$")
_FP = re.compile(r"\b([a-z_]+):(?:[0-9a-f]{6,}…?|[0-9a-f]*…)")
# content hashes: 32+ hex digits, or a shorter key (cache keys) mixing digits and letters
_HEX = re.compile(r"\b(?:[0-9a-f]{32,}|(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{8,31})\b")
_SWEEP_ID = re.compile(r"\bsweep (" + _ID.pattern[2:-2] + r")\b")
_BOX = re.compile(r"[┏┓┗┛┃━┳┻╋┣┫┡┩╇│─┬┴┼├┤└┘┌┐╭╮╰╯]")
_KEY_LINE = re.compile(r"^\s*([A-Za-z_][\w .()/-]*?):(\s|$)")


# Commands that only read or label what is stored: replayed in this process, which spares an
# interpreter start (a second or more of imports) each. Whatever computes (run, reproduce,
# sweep, check, serve, predict, export, register, promote, init) or starts early (--version)
# runs in a fresh interpreter as a user's shell starts it.
IN_PROCESS = frozenset(
    {"runs", "show", "tag", "diff", "inspect", "cache", "sweeps", "alias", "models"}
    | {"fsck", "report"}
)


@dataclass
class Step:
    command: str
    expected: list[str] = field(default_factory=list)


def tour_blocks(text: str) -> list[list[Step]]:
    """The README's command blocks: fenced blocks whose first line starts with '$ seedline'."""
    blocks: list[list[Step]] = []
    for body in re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.S | re.M):
        lines = body.rstrip("\n").split("\n")
        if not lines or not lines[0].startswith("$ seedline"):
            continue
        steps: list[Step] = []
        for line in lines:
            if line.startswith("$ "):
                steps.append(Step(line[2:]))
            else:
                steps[-1].expected.append(line)
        blocks.append(steps)
    return blocks


def cli_commands() -> set[str]:
    """Every command path the CLI has: 'run', 'cache ls', 'models show', ..."""
    import typer

    from seedline.cli.main import app

    root = typer.main.get_command(app)
    found: set[str] = set()

    def walk(cmd: Any, prefix: str) -> None:
        for name, sub in getattr(cmd, "commands", {}).items():
            path = f"{prefix} {name}".strip()
            found.add(path)
            walk(sub, path)

    walk(root, "")
    return found


def command_path(argv: list[str], known: set[str]) -> str:
    """The documented command's path ('cache prune'); options and arguments are left out."""
    words = [w for w in argv[1:] if not w.startswith("-")]
    if not words:
        return ""
    two = " ".join(words[:2])
    return two if two in known else words[0]


# -- shapes -------------------------------------------------------------------------------------
def _generic(line: str) -> str:
    line = _BOX.sub(" ", line)
    line = _ID.sub("ID", line)
    line = _FP.sub(lambda m: f"{m.group(1)}:H", line)
    line = _HEX.sub("H", line)
    line = re.sub(r"(?<![\w])/[^\s,;)]*", "PATH", line)
    line = re.sub(r"\b(?:B|KiB|MiB|GiB|TiB)\b", "UNIT", line)
    line = re.sub(r"\d+", "0", line)
    return " ".join(line.split())


def line_pattern(doc: str) -> re.Pattern[str] | None:
    """A regex matching real output lines of the same shape as a documented line; None to skip it."""
    stripped = doc.strip()
    if not stripped or stripped.startswith("..."):
        return None
    key = _KEY_LINE.match(doc)
    if key and not _BOX.search(doc):
        return re.compile(r"^\s*" + re.escape(_generic(key.group(1))) + r":(\s|$)")
    tokens = _generic(doc).split(" ")
    parts: list[str] = []
    for i, tok in enumerate(tokens):
        if tok == "…" and i == len(tokens) - 1:
            parts.append(".*")
        elif "…" in tok:
            # a value cut short: its start, then anything up to the next documented token
            parts.append(re.escape(tok.split("…", 1)[0]) + r".*?")
        else:
            parts.append(re.escape(tok))
    return re.compile("^" + r"\s*".join(parts) + r"\s*$")


def json_shape(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: json_shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_shape(value[0])] if value else []
    return None


def compare_json(doc: Any, real: Any, where: str = "$") -> list[str]:
    """Where the documented JSON's keys differ from the real output's."""
    if isinstance(doc, dict):
        if not isinstance(real, dict):
            return [f"{where}: documented an object, got {type(real).__name__}"]
        problems = []
        if set(doc) != set(real):
            problems.append(
                f"{where}: keys differ: documented only {sorted(set(doc) - set(real))}, "
                f"output only {sorted(set(real) - set(doc))}"
            )
        for k in set(doc) & set(real):
            problems += compare_json(doc[k], real[k], f"{where}.{k}")
        return problems
    if isinstance(doc, list) and doc and isinstance(real, list) and real:
        return compare_json(doc[0], real[0], f"{where}[0]")
    if isinstance(doc, dict | list) != isinstance(real, dict | list):
        return [f"{where}: documented {type(doc).__name__}, got {type(real).__name__}"]
    return []


def compare_text(expected: list[str], real: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Documented lines missing from the output (in order), and the (documented, real) line pairs matched."""
    missing: list[str] = []
    matched: list[tuple[str, str]] = []
    at = 0
    for doc in expected:
        pattern = line_pattern(doc)
        if pattern is None:
            continue
        for j in range(at, len(real)):
            if pattern.match(_generic(real[j])) or pattern.match(real[j]):
                matched.append((doc, real[j]))
                at = j + 1
                break
        else:
            missing.append(doc)
    return missing, matched


# -- replaying the tour ------------------------------------------------------------------------
class Session:
    """The tour's terminal: a project folder, documented ids mapped to the real ones."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cwd = root
        self.ids: dict[str, str] = {}
        self.sweep_ids: set[str] = set()
        self.env = clean_env(PYTHONUNBUFFERED="1", COLUMNS="160")

    def run(self, argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
        if argv[1] in IN_PROCESS:
            return self._run_here(argv, cwd)
        return subprocess.run(
            [sys.executable, "-m", "seedline", *argv[1:]],
            cwd=cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=600,
        )

    def _run_here(self, argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
        """The command in this process (typer's runner), stdout and stderr together as a pipe has them."""
        from typer.testing import CliRunner

        from seedline.cli.main import app

        before = Path.cwd()
        os.chdir(cwd)
        try:
            env = {"COLUMNS": "160", "LINES": None, "PYTHONUNBUFFERED": "1"}
            result = CliRunner().invoke(app, argv[1:], env=env, prog_name="seedline")
        finally:
            os.chdir(before)
        output = result.output
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            output += "".join(traceback.format_exception(result.exception))
        return subprocess.CompletedProcess(argv, result.exit_code, stdout=output)

    def _newest(self, what: str, n: int) -> list[str]:
        """The newest run or sweep ids, as ``seedline runs|sweeps --json`` lists them (read here)."""
        from seedline.records.sweeps import list_sweeps
        from seedline.records.tracking import Store

        store = Store.find(self.cwd)
        if what == "runs":
            return [r.run_id for r in store.list_runs(limit=n)]
        return [str(r["sweep_id"]) for r in list_sweeps(store)[:n]]

    def resolve_ids(self, argv: list[str]) -> list[str]:
        """Replace documented run and sweep ids (or prefixes) by real ones."""
        out: list[str] = []
        unknown: list[int] = []
        for i, word in enumerate(argv):
            if not _ID_ARG.match(word) or not re.search(r"[a-z]", word):
                out.append(word)
                continue
            # a documented prefix may match a run and a sweep: the command says which it is
            sweep_arg = argv[1] == "promote" or (i > 0 and argv[i - 1] == "--sweep")
            real = next(
                (
                    r
                    for d, r in self.ids.items()
                    if d.startswith(word) and (d in self.sweep_ids) == sweep_arg
                ),
                None,
            )
            if real is None:
                unknown.append(i)
            out.append(real or word)
        if unknown:
            sweep = argv[1] == "promote" or "--sweep" in argv
            # ids the README never showed being made: the newest, oldest first (diff A B)
            newest = self._newest("sweeps" if sweep else "runs", len(unknown) + 1)
            newest = [r for r in newest if r not in out][: len(unknown)][::-1]
            for i, real in zip(unknown, newest, strict=False):
                self.ids[argv[i]] = real
                out[i] = real
        return out

    def learn_ids(self, matched: list[tuple[str, str]]) -> None:
        for doc, real in matched:
            for d, r in zip(_ID.findall(doc), _ID.findall(real), strict=False):
                self.ids.setdefault(d, r)
            self.sweep_ids.update(_SWEEP_ID.findall(doc))


def _prepare_inputs(project: Path) -> None:
    """Files the tour's commands read: in.csv for predict (20 penguins, no species)."""
    import pandas as pd

    frame = pd.read_csv(project / "data" / "penguins.csv").drop(columns=["species"])
    frame.head(20).to_csv(project / "in.csv", index=False)


@pytest.mark.slow
def test_every_readme_command_runs_and_prints_what_the_readme_shows(tmp_path: Path) -> None:
    """Replays README.md's CLI tour in a fresh project and compares each output's shape with the documented one."""
    blocks = tour_blocks(README.read_text(encoding="utf-8"))
    assert blocks, "README.md has no '$ seedline' blocks"
    known = cli_commands()
    documented = {
        command_path(shlex.split(s.command.split(" # ")[0].split("&&")[-1]), known)
        for b in blocks
        for s in b
        if "seedline " in s.command
    }
    missing = sorted(c for c in documented if c and c not in known)
    assert not missing, f"README.md documents commands the CLI does not have: {missing}"

    session = Session(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    problems: list[str] = []
    for block in blocks:
        for step in block:
            text = step.command.split(" # ")[0].strip()
            cwd = session.cwd
            if text.startswith("cd ") and "&&" in text:
                cwd, text = outside, text.split("&&", 1)[1].strip()
            if not text.startswith("seedline ") or text.endswith("&"):
                continue  # not seedline, or a server meant for another terminal
            argv = session.resolve_ids(shlex.split(text))
            print(f"$ {' '.join(argv)}", flush=True)  # progress: this test takes minutes
            proc = session.run(argv, cwd)
            real = proc.stdout.splitlines()
            if argv[1] == "init" and proc.returncode == 0:
                session.cwd = session.root / argv[2]
                git(session.cwd, "init", "-q", "-b", "main")
                git(session.cwd, "add", "-A")
                git(session.cwd, "commit", "-q", "-m", "penguins example")
                _prepare_inputs(session.cwd)
            expected = [ln for ln in step.expected if ln.strip()]
            label = f"$ {text}"
            doc_text = "\n".join(expected)
            if doc_text.lstrip().startswith("{"):
                try:
                    doc_json = json.loads(doc_text)
                    real_json = json.loads(proc.stdout)
                except ValueError as exc:
                    problems.append(f"{label}: output is not the documented JSON ({exc})")
                    continue
                problems += [f"{label}: {p}" for p in compare_json(doc_json, real_json)]
                continue
            gone, matched = compare_text(expected, real)
            session.learn_ids(matched)
            if gone:
                problems.append(
                    f"{label}: documented lines not in the output (in order):\n    "
                    + "\n    ".join(gone)
                    + "\n  output was:\n    "
                    + "\n    ".join(real)
                )
    assert not problems, "README.md and the CLI disagree:\n" + "\n".join(problems)


def test_the_shape_rules_accept_real_variation_and_catch_a_changed_line() -> None:
    """Ids, fingerprints, numbers and key values vary; a missing column or a renamed key does not pass."""
    doc = [
        "run 1m8b83e9926ps  succeeded  spec penguins  seed 20240611  (1.83s)",
        "  split: holdout seed 3681672616: 258 train / 86 test",
        "...",
        "prep  estimator:23304ccf7579  output:78641dd60544  0.014",
        " run  spec  status  …",
    ]
    real = [
        "run 1m8n9t9jn9238  succeeded  spec penguins  seed 20240611  (12.50s)",
        "  split: kfold seed 1: 5 folds",
        "extra line",
        "prep  estimator:aaaaaaaaaaaa  output:bbbbbbbbbbbb  1.250",
        " run  spec  status  created",
    ]
    missing, matched = compare_text(doc, real)
    assert missing == [] and len(matched) == 4
    missing, _ = compare_text(["prep  estimator:23304ccf7579  -  0.014"], real)
    assert missing
    assert compare_json({"a": 1, "b": {"c": 2}}, {"a": 3, "b": {"c": None}}) == []
    assert compare_json({"a": 1}, {"a": 1, "cv": None})
