"""Fuzz the simple-head scanner against llhttp with atheris (libFuzzer for Python).

    python tests/fuzz/fuzz_headscan.py --write-seeds DIR   # the corpus vectors as seeds
    python tests/fuzz/fuzz_headscan.py DIR -max_total_time=60   # libFuzzer's flags

``make fuzz`` runs it for FUZZ_SECONDS; the suite runs a short burst (test_quickhead.py).
Each input is checked as the tests check it (headscan_oracle.check): whatever the Python
scanner accepts, llhttp accepts and reports the same way, and the C scanner, when built
(or the one ``OCTO_HEADSCAN`` names), returns exactly what the Python one returns.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "corpus"))

with atheris.instrument_imports():
    from octo.http import quickhead

import headscan_oracle  # noqa: E402


def one_input(data: bytes) -> None:
    headscan_oracle.check(quickhead.parse, data)


def write_seeds(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for seed in headscan_oracle.seeds():
        (directory / hashlib.sha1(seed).hexdigest()).write_bytes(seed)


def main() -> None:
    if sys.argv[1:2] == ["--write-seeds"]:
        write_seeds(Path(sys.argv[2]))
        return
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
