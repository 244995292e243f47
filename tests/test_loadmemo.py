"""The per-user load memo: pickle's speed for skops files seedline loaded before, never a way in.

Each test gives the memo a folder of its own (``SEEDLINE_LOAD_MEMO``) and forgets the keys
this process read, so every folder starts without a key.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sklearn
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from seedline.execution import loadmemo
from seedline.execution.persist import UntrustedModelError, dump_model, load_model

X = np.random.default_rng(0).normal(size=(60, 4))
Y = (X[:, 0] > 0).astype(int)


class OwnScaler(StandardScaler):  # type: ignore[misc]
    """A class outside every trusted list: loading it needs --trust."""


@pytest.fixture
def memo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "memo"
    monkeypatch.setenv(loadmemo.ENV_FOLDER, str(folder))
    monkeypatch.setattr(loadmemo, "_keys", {})
    return folder


def forest(seed: int = 0) -> bytes:
    model = make_pipeline(
        StandardScaler(), RandomForestClassifier(n_estimators=5, random_state=seed)
    )
    return dump_model(model.fit(X, Y))


def skops_answer(blob: bytes) -> np.ndarray:
    """What the skops file itself predicts, memo or not."""
    from seedline.execution.skops_types import skops_io

    from_file = skops_io().loads(blob, trusted=skops_io().get_untrusted_types(data=blob))
    return np.asarray(from_file.predict_proba(X))


def memo_file(folder: Path, blob: bytes) -> Path:
    return folder / f"{loadmemo.address_of(blob)}{loadmemo.SUFFIX}"


def sign(folder: Path, body: bytes) -> bytes:
    """A memo file's bytes for ``body`` signed with the folder's key (as the user's seedline would)."""
    key = (folder / "key").read_bytes()
    return loadmemo.MAGIC + loadmemo._mac(key, body) + body


def split(raw: bytes) -> tuple[dict[str, object], bytes]:
    """(header, pickle) of a memo file."""
    start = len(loadmemo.MAGIC) + 32
    size = int.from_bytes(raw[start : start + 4], "big")
    return json.loads(raw[start + 4 : start + 4 + size]), raw[start + 4 + size :]


def body_of(header: dict[str, object], payload: bytes) -> bytes:
    encoded = json.dumps(header, sort_keys=True).encode()
    return len(encoded).to_bytes(4, "big") + encoded + payload


LOAD_IN_FRESH_PROCESS = """
import sys
from pathlib import Path
from seedline.execution.persist import load_model
model = load_model(Path(sys.argv[1]).read_bytes(), trusted_own=True)
print(int(model.predict(__import__("numpy").zeros((1, 4)))[0]), "skops.io" in sys.modules)
"""


def load_fresh(blob_path: Path, folder: Path) -> tuple[int, bool]:
    """(prediction, whether skops was imported) of a load in a fresh interpreter."""
    out = subprocess.run(
        [sys.executable, "-c", LOAD_IN_FRESH_PROCESS, str(blob_path)],
        env={**os.environ, loadmemo.ENV_FOLDER: str(folder)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return int(out[0]), out[1] == "True"


def test_a_second_load_comes_from_the_memo_without_skops(memo: Path, tmp_path: Path) -> None:
    blob = forest()
    (tmp_path / "model.skops").write_bytes(blob)
    first = load_fresh(tmp_path / "model.skops", memo)
    assert first[1] is True  # the first load reads the skops file
    assert memo_file(memo, blob).exists()
    assert (memo / "key").stat().st_mode & 0o777 == 0o600
    assert memo.stat().st_mode & 0o777 == 0o700
    second = load_fresh(tmp_path / "model.skops", memo)
    assert second == (first[0], False)  # same answer, skops never imported
    again = load_model(blob, trusted_own=True)
    np.testing.assert_array_equal(
        again.predict_proba(X), load_model(blob, trusted_own=True).predict_proba(X)
    )


def test_the_memo_predicts_exactly_as_the_skops_file(memo: Path) -> None:
    blob = forest()
    from_skops = load_model(blob, trusted_own=True)
    assert memo_file(memo, blob).exists()
    header, payload = split(memo_file(memo, blob).read_bytes())
    assert header["packages"]["sklearn"] == sklearn.__version__  # type: ignore[index]
    assert header["packages"]["numpy"] == np.__version__  # type: ignore[index]
    from_memo = pickle.loads(payload)
    np.testing.assert_array_equal(from_memo.predict_proba(X), skops_answer(blob))
    np.testing.assert_array_equal(from_skops.predict_proba(X), skops_answer(blob))


def test_a_memo_signed_with_another_key_is_never_unpickled(memo: Path, tmp_path: Path) -> None:
    """A forged memo (another user's key, or none) is ignored before anything in it runs."""
    blob = forest()
    load_model(blob, trusted_own=True)  # makes this user's key and a genuine memo
    marker = tmp_path / "pwned"

    class Hostile:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.mkdir, (str(marker),))

    genuine = memo_file(memo, blob).read_bytes()
    header, _ = split(genuine)
    forged_body = body_of(header, pickle.dumps(Hostile()))
    forged = loadmemo.MAGIC + loadmemo._mac(b"k" * 32, forged_body) + forged_body
    memo_file(memo, blob).write_bytes(forged)
    model = load_model(blob, trusted_own=True)
    assert not marker.exists()
    np.testing.assert_array_equal(model.predict_proba(X), skops_answer(blob))
    # the genuine memo is written again over the forged one
    assert split(memo_file(memo, blob).read_bytes())[1] != pickle.dumps(Hostile())
    assert not marker.exists()


def test_a_changed_byte_fails_the_signature(memo: Path) -> None:
    blob = forest()
    load_model(blob, trusted_own=True)
    path = memo_file(memo, blob)
    raw = bytearray(path.read_bytes())
    raw[-10] ^= 0xFF
    path.write_bytes(bytes(raw))
    assert loadmemo.recall(loadmemo.address_of(blob)) is None
    memo_of_other_bytes = memo_file(memo, blob).rename(memo / f"{'0' * 64}{loadmemo.SUFFIX}")
    assert memo_of_other_bytes.exists() and loadmemo.recall("0" * 64) is None


def test_a_memo_under_another_address_is_refused(memo: Path) -> None:
    """A genuine memo copied to another file's name does not stand in for that file."""
    blob, other = forest(), dump_model(StandardScaler().fit(X))
    load_model(blob, trusted_own=True)
    memo_file(memo, other).write_bytes(memo_file(memo, blob).read_bytes())
    assert loadmemo.recall(loadmemo.address_of(other)) is None
    assert type(load_model(other, trusted_own=True)) is StandardScaler


@pytest.mark.parametrize("what", ["key", "folder"])
def test_a_key_or_folder_others_can_read_turns_the_memo_off(memo: Path, what: str) -> None:
    blob = forest()
    load_model(blob, trusted_own=True)
    assert loadmemo.recall(loadmemo.address_of(blob)) is not None
    (memo / "key" if what == "key" else memo).chmod(0o644 if what == "key" else 0o755)
    loadmemo._keys.clear()
    assert loadmemo.recall(loadmemo.address_of(blob)) is None
    memo_file(memo, blob).unlink()
    load_model(blob, trusted_own=True)  # loads through skops, writes nothing
    assert not memo_file(memo, blob).exists()


def test_the_memo_keeps_the_trust_check(memo: Path) -> None:
    """A model loaded once with --trust is refused from its memo without it, as from its file."""
    blob = dump_model(make_pipeline(OwnScaler(), StandardScaler()).fit(X))
    with pytest.raises(UntrustedModelError):
        load_model(blob)
    load_model(blob, trust=True)
    header, _ = split(memo_file(memo, blob).read_bytes())
    assert header["types"], "the memo records the file's types outside skops' defaults"
    with pytest.raises(UntrustedModelError, match="OwnScaler"):
        load_model(blob)


def test_another_package_version_loads_through_skops(memo: Path) -> None:
    blob = forest()
    load_model(blob, trusted_own=True)
    path = memo_file(memo, blob)
    header, payload = split(path.read_bytes())
    header["packages"] = {**header["packages"], "sklearn": "0.0.1"}  # type: ignore[dict-item]
    path.write_bytes(sign(memo, body_of(header, payload)))
    memo_record = loadmemo.recall(loadmemo.address_of(blob))
    assert memo_record is not None and loadmemo.revive(memo_record) is None
    load_model(blob, trusted_own=True)  # through skops, and the memo is written again
    assert split(path.read_bytes())[0]["packages"]["sklearn"] == sklearn.__version__  # type: ignore[index]


def test_off_writes_nothing(memo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(loadmemo.ENV_FOLDER, "off")
    load_model(forest(), trusted_own=True)
    assert not memo.exists()


def test_the_folder_stays_within_its_bound_and_removes_only_memos(
    memo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = forest()
    load_model(first, trusted_own=True)
    stranger = memo / f"{'f' * 64}{loadmemo.SUFFIX}"
    stranger.write_bytes(b"not a memo, not ours" * 100_000)
    os.utime(stranger, (1, 1))  # the oldest file of all
    os.utime(memo_file(memo, first), (2, 2))
    size = memo_file(memo, first).stat().st_size
    monkeypatch.setenv(loadmemo.ENV_MAX_MB, str((size * 1.5 + 2_000_000) / 1024 / 1024))
    second = forest(seed=1)
    load_model(second, trusted_own=True)
    assert stranger.exists() and (memo / "key").exists()
    assert memo_file(memo, second).exists()
    assert not memo_file(memo, first).exists()  # least recently used, and a memo


def test_a_cache_entry_is_remembered_with_its_fingerprint(penguins: Path, memo: Path) -> None:
    """The step cache writes the memo of the model file its entries are steps of, with each
    step's fingerprint, which a hit checks."""
    from seedline.records.cache_index import CacheIndex
    from seedline.records.tracking import Store

    from .conftest import clean_env, run_cli

    with_memo = clean_env(**{loadmemo.ENV_FOLDER: str(memo)})
    first = json.loads(run_cli(penguins, "run", "--json", env=with_memo).stdout)
    store = Store.find(penguins)
    model = store.manifest(first["run_id"]).artifacts["model"]
    entries = CacheIndex(store).entries()
    assert entries
    found = loadmemo.recall(model)
    assert found is not None
    assert found.types is None  # not walked: a cache entry is only ever loaded as seedline's own
    for entry in entries:
        assert (entry.fitted_object, entry.fitted_step) == (model, entry.step.rpartition("/")[2])
        assert found.facts[f"fitted:{entry.fitted_step}"] == entry.fitted_fingerprint
    hit = json.loads(run_cli(penguins, "run", "--json", env=with_memo).stdout)
    assert {s.cache for s in store.manifest(hit["run_id"]).steps} == {"hit"}
    plain = run_cli(
        penguins, "run", "--json", "--no-cache", env=clean_env(**{loadmemo.ENV_FOLDER: "off"})
    )
    assert hit["metrics"] == json.loads(plain.stdout)["metrics"]


def test_a_hit_with_no_memo_loads_its_step_apart_and_writes_the_step_a_memo(
    penguins: Path, memo: Path
) -> None:
    """Entries from a run with no memo (a teammate's, or the memo off): a hit loads only its
    step's part of the model file, checks its fingerprint and writes that step a memo of its
    own, which the next hit reads. The whole model is never loaded, so it gets no memo."""
    import os

    from seedline.execution.cache import _part_memo
    from seedline.records.tracking import Store

    from .conftest import clean_env, run_cli

    first = json.loads(
        run_cli(penguins, "run", "--json", env=clean_env(**{loadmemo.ENV_FOLDER: "off"})).stdout
    )
    store = Store.find(penguins)
    model = store.manifest(first["run_id"]).artifacts["model"]
    assert loadmemo.recall(model) is None
    with_memo = clean_env(**{loadmemo.ENV_FOLDER: str(memo)})
    for attempt in range(2):
        hit = store.manifest(
            json.loads(run_cli(penguins, "run", "--json", env=with_memo).stdout)["run_id"]
        )
        assert {s.cache for s in hit.steps} == {"hit"}
        assert not loadmemo.has_memo(model)
        for step in hit.steps:
            path = memo / f"{_part_memo(model, step.name)}{loadmemo.SUFFIX}"
            if attempt == 1:  # the second run read it (a read marks it used)
                assert path.stat().st_mtime > 1_000_000
            found = loadmemo.recall(_part_memo(model, step.name))
            assert found is not None
            assert found.facts == {"fitted": step.fitted}
            os.utime(path, (1_000_000, 1_000_000))


def test_the_memo_settings_are_not_part_of_a_run() -> None:
    """Where the memo lives, or whether it is on, changes no result: runs do not record it."""
    from seedline.core.environment import relevant_env_vars

    recorded = relevant_env_vars(
        {
            loadmemo.ENV_FOLDER: "off",
            loadmemo.ENV_MAX_MB: "10",
            "SEEDLINE_SOMETHING": "1",
            "OMP_NUM_THREADS": "1",
        }
    )
    assert recorded == {"OMP_NUM_THREADS": "1", "SEEDLINE_SOMETHING": "1"}


def test_a_memo_folder_reached_through_a_link_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A symbolic link in place of the folder (someone else's, or a planted one) turns the memo off."""
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    monkeypatch.setenv(loadmemo.ENV_FOLDER, str(link))
    monkeypatch.setattr(loadmemo, "_keys", {})
    blob = forest()
    load_model(blob, trusted_own=True)
    assert list(real.iterdir()) == []  # no key, no memo
    assert loadmemo.recall(loadmemo.address_of(blob)) is None


def test_without_a_home_folder_there_is_no_memo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No home to be found, or a relative setting: nothing is written where the command runs."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv(loadmemo.ENV_FOLDER, "relative/memo")
    assert loadmemo.folder() is None
    monkeypatch.delenv(loadmemo.ENV_FOLDER)
    monkeypatch.setattr(os.path, "expanduser", lambda path: path)  # as when HOME is unknown
    assert loadmemo.folder() is None
    load_model(forest(), trusted_own=True)
    assert list(tmp_path.iterdir()) == []


def test_an_address_is_never_a_path(memo: Path, tmp_path: Path) -> None:
    """A content address from a store (a hostile team database, say) names no file outside the folder."""
    blob = forest()
    load_model(blob, trusted_own=True)  # the folder and its key exist
    for address in ("../escaped", "/tmp/x", "A" * 64, "0" * 63):
        loadmemo.remember(address, StandardScaler(), None)
        assert loadmemo.recall(address) is None
    assert not (tmp_path / "escaped.memo").exists()
    assert sorted(p.name for p in memo.iterdir() if p.name != "key") == [
        f"{loadmemo.address_of(blob)}{loadmemo.SUFFIX}"
    ]
