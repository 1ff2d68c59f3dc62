"""Atomic writes: the old file stays whole until the new one is complete, no temp file is left."""

from __future__ import annotations

from pathlib import Path

import pytest

from lungcad.atomic import write_bytes_atomic, write_text_atomic


def test_writes_creates_folders_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b.txt"
    write_text_atomic(target, "first")
    write_bytes_atomic(target, b"second")
    assert target.read_bytes() == b"second"
    assert [p.name for p in target.parent.iterdir()] == ["b.txt"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "b.txt"
    write_text_atomic(target, "old")
    with pytest.raises(TypeError):
        write_bytes_atomic(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["b.txt"]
