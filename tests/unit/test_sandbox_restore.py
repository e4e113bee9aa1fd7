"""Putting a thread's files back in a new session's directory: into folders made on the way, replacing
bytes that differ, keeping what is already right, and never writing through a link the code planted."""

from __future__ import annotations

import os
from pathlib import Path

from assistd.sandbox.local import _restore


def _source(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / f"source-{len(list(tmp_path.iterdir()))}"
    path.write_bytes(data)
    return path


def test_files_come_back_into_folders_and_stale_bytes_are_replaced(tmp_path: Path) -> None:
    workdir = tmp_path / "session"
    workdir.mkdir()
    sources = tmp_path / "sources"
    sources.mkdir()
    _restore(_source(sources, b"deep"), workdir, "out/sub/result.csv", None)
    assert (workdir / "out" / "sub" / "result.csv").read_bytes() == b"deep"
    # Same size, other bytes (an older session's copy on this host): replaced.
    (workdir / "note.txt").write_bytes(b"old!")
    _restore(_source(sources, b"new!"), workdir, "note.txt", None)
    assert (workdir / "note.txt").read_bytes() == b"new!"
    # The same bytes: left as they are.
    before = (workdir / "note.txt").stat().st_ino
    _restore(_source(sources, b"new!"), workdir, "note.txt", None)
    assert (workdir / "note.txt").stat().st_ino == before


def test_a_planted_link_is_never_written_through(tmp_path: Path) -> None:
    workdir = tmp_path / "session"
    workdir.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "target.txt").write_bytes(b"server's")
    os.symlink(outside, workdir / "out")
    os.symlink(outside / "target.txt", workdir / "link.txt")
    sources = tmp_path / "sources"
    sources.mkdir()
    _restore(_source(sources, b"restored"), workdir, "out/target.txt", None)
    _restore(_source(sources, b"restored"), workdir, "link.txt", None)
    _restore(_source(sources, b"restored"), workdir, "../escape.txt", None)
    assert (outside / "target.txt").read_bytes() == b"server's"
    assert not (tmp_path / "escape.txt").exists()
    # The link at the file's own name is replaced by the file; the linked folder is left out.
    assert not (workdir / "link.txt").is_symlink() and (workdir / "link.txt").read_bytes() == b"restored"
