"""``seedline init``: a working example project in a folder."""

from __future__ import annotations

import shutil
from importlib.resources import files
from pathlib import Path

from seedline.core.errors import SeedlineError
from seedline.core.spec import SPEC_FILENAME
from seedline.records.tracking import Store


def scaffold(directory: Path, *, force: bool = False) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    spec_path = directory / SPEC_FILENAME
    if spec_path.exists() and not force:
        raise SeedlineError(
            f"{spec_path} already exists",
            hint="pass --force to overwrite it, or init another folder",
        )
    written: list[Path] = []
    pkg = files("seedline") / "data"
    spec_path.write_text((pkg / "penguins.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    written.append(spec_path)
    data = directory / "data" / "penguins.csv"
    if not data.exists() or force:
        data.parent.mkdir(exist_ok=True)
        with (pkg / "penguins.csv").open("rb") as src, data.open("wb") as dst:
            shutil.copyfileobj(src, dst)
        written.append(data)
    store = Store.open(directory)
    store.close()
    written.append(directory / ".seedline")
    return written
