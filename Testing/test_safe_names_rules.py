"""One rule for output names: safe case ids, DICOM UIDs, confined paths, the output root check."""

from __future__ import annotations

import os

import pytest

from lungcad.safe_names import (
    MAX_CASE_ID_CHARS,
    OutputRootError,
    UnsafeOutputPathError,
    check_output_root,
    checked_series_uid,
    confined_path,
    is_dicom_uid,
    printable,
    safe_case_id,
)

LONG_UID = "1." + "2" * 401  # 403 characters: ENAMETOOLONG as a folder name


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.2.826.0.1.3680043.2.1125.9.1", "1.2.826.0.1.3680043.2.1125.9.1"),  # unchanged
        ("scan_01-a", "scan_01-a"),
        ("../../../../tmp/x", "tmp_x-6e26be7d"),
        ("/abs/path", "abs_path-6d80187b"),
        ("a\x00b", "a_b-59b271ae"),
        ("patient 5", "patient_5-cba45335"),
        ("..", "case-5ec1f7e7"),
        ("", "case-e3b0c442"),
        (".hidden", "hidden-16924190"),
        ("CON", "_CON-a3dbc4b6"),
        ("nul.txt", "_nul.txt-7f3cbdd5"),
    ],
)
def test_case_ids_are_cleaned_and_hashed_where_changed(text, expected):
    assert safe_case_id(text) == expected


def test_long_names_are_capped_with_a_hash_and_distinct():
    assert len(safe_case_id("x" * MAX_CASE_ID_CHARS)) == MAX_CASE_ID_CHARS  # fits: unchanged
    a, b = safe_case_id(LONG_UID), safe_case_id(LONG_UID[:-1] + "3")
    assert len(a) == len(b) == MAX_CASE_ID_CHARS
    assert a[:91] == b[:91] == "1." + "2" * 89 and a != b
    assert a == "1." + "2" * 89 + "-" + a[-8:]


@pytest.mark.parametrize(
    ("uid", "valid"),
    [
        ("1.2.840.10008.1.2", True),
        ("1.2.3." + "4" * 58, True),  # 64 characters
        ("1.2.3." + "4" * 59, False),  # 65
        (LONG_UID, False),
        ("1.2.3\x00.4", False),
        ("../../../../tmp/x", False),
        ("1..2", False),
        (".1.2", False),
        ("1.2.", False),
        ("1.2 ", False),
        ("", False),
        (None, False),
    ],
)
def test_dicom_uids_are_digits_and_dots_up_to_64(uid, valid):
    assert is_dicom_uid(uid) is valid


def test_an_invalid_uid_is_not_used_and_the_warning_escapes_it():
    assert checked_series_uid("1.2.3") == ("1.2.3", None)
    assert checked_series_uid(None) == (None, None)
    uid, warning = checked_series_uid("1.2\x00.3/..")
    assert uid is None
    assert warning == (
        "series UID '1.2\\x00.3/..' is not a DICOM UID (digits and dots, at most 64 "
        "characters): not used as one; the case id names the series instead"
    )
    assert printable("a\nb\x7f") == "a\\x0ab\\x7f"
    assert printable("y" * 300, 10) == "yyyyyyyyyy... (300 characters)"


def test_paths_outside_the_root_are_refused(tmp_path):
    root = tmp_path / "out"
    root.mkdir()
    assert confined_path(root, "case") == root.resolve() / "case"
    for parts in (("..", "x"), ("/abs/path",), ("a", "..", "..", "x"), ("",), (".",)):
        with pytest.raises(UnsafeOutputPathError, match="outside the output folder"):
            confined_path(root, *parts)
    (root / "link").symlink_to(tmp_path)  # a planted symlink does not lead out either
    with pytest.raises(UnsafeOutputPathError, match=r"^'link/x': would be written outside"):
        confined_path(root, "link", "x")


def test_the_output_root_must_be_a_folder_that_takes_files(tmp_path):
    made = check_output_root(tmp_path / "new" / "out")
    assert made.is_dir() and list(made.iterdir()) == []  # the write probe leaves nothing
    existing = tmp_path / "file.txt"
    existing.write_text("mine")
    with pytest.raises(OutputRootError) as exc:
        check_output_root(existing)
    assert str(exc.value) == f"{existing}: exists and is not a folder (the output must be a folder)"
    with pytest.raises(OutputRootError) as exc:
        check_output_root(existing / "sub")
    assert (
        str(exc.value) == f"{existing / 'sub'}: cannot create the output folder (Not a directory)"
    )
    assert existing.read_text(encoding="utf-8") == "mine"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_output_root_is_refused(tmp_path):
    root = tmp_path / "ro"
    root.mkdir()
    root.chmod(0o555)
    try:
        with pytest.raises(OutputRootError) as exc:
            check_output_root(root)
    finally:
        root.chmod(0o755)
    assert (
        str(exc.value) == f"{root}: the output folder does not take new files (Permission denied)"
    )
