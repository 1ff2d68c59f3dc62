"""Atomic writes: the old file stays whole until the new one is complete, no temp file is left."""

from __future__ import annotations

from pathlib import Path

import pytest

from lungcad.atomic import replacing, write_bytes_atomic, write_text_atomic


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
    assert target.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["b.txt"]


def test_replacing_renames_what_was_written_under_the_temp_name(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "scan.nrrd"
    with replacing(target, ".nrrd") as tmp:
        assert tmp.parent == target.parent and tmp.name.endswith(".tmp.nrrd")
        assert tmp.name.startswith(".scan.nrrd.")
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["scan.nrrd"]


def test_replacing_keeps_the_old_file_when_the_writer_fails(tmp_path: Path) -> None:
    target = tmp_path / "scan.nrrd"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="writer broke"), replacing(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("writer broke")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["scan.nrrd"]
