"""The agent's memory of where commands were found (:class:`launcher.process.Executables`):
used only where Popen's own ``PATH`` search would find the same file, looked up again after
its time or when the file went away."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from launcher import process
from launcher.process import Executables, _spawn


def tool(folder: Path, name: str, says: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(f"#!/bin/sh\necho {says}\n")
    path.chmod(0o755)
    return path


def test_a_found_command_is_remembered_for_its_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = tool(tmp_path / "a", "mytool", "a")
    path = f"{tmp_path / 'a'}:{tmp_path / 'b'}"
    looks: list[str] = []
    real = shutil.which

    def which(name: str, path: str | None = None) -> str | None:
        looks.append(name)
        return real(name, path=path)

    monkeypatch.setattr(shutil, "which", which)
    kept = Executables(ttl=3600)
    assert kept.find("mytool", path) == str(first)
    assert kept.find("mytool", path) == str(first)
    assert looks == ["mytool"]  # once
    assert kept.find("mytool", f"{tmp_path / 'b'}") is None  # another PATH: its own look
    fresh = Executables(ttl=0)
    fresh.find("mytool", path)
    fresh.find("mytool", path)
    assert looks.count("mytool") == 4  # no time kept: every start looks


@pytest.mark.parametrize(
    ("name", "path"),
    [("./mytool", "/usr/bin"), ("bin/x", "/usr/bin"), ("sh", "/usr/bin:."), ("sh", ":/usr/bin"),
     ("sh", "relative/bin:/usr/bin"), ("", "/usr/bin"), ("no-such-tool-here", "/usr/bin")],
)  # fmt: skip
def test_only_what_popen_would_find_the_same_way_is_kept(name: str, path: str) -> None:
    # a relative PATH entry means the job's working directory, which the agent's is not
    assert Executables().find(name, path) is None


def test_a_remembered_file_that_went_away_is_looked_up_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(process, "EXECUTABLES", Executables(ttl=3600))
    gone = tool(tmp_path / "a", "mytool", "old")
    tool(tmp_path / "b", "mytool", "new")
    env = {"PATH": f"{tmp_path / 'a'}:{tmp_path / 'b'}"}
    process.EXECUTABLES.find("mytool", env["PATH"])
    gone.unlink()
    out = tmp_path / "out"
    fd = os.open(out, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        proc = _spawn(["mytool"], str(gone), tmp_path, env, [fd], {})
        assert proc.wait(10) == 0
    finally:
        os.close(fd)
    assert out.read_text() == "new\n"
    assert process.EXECUTABLES.find("mytool", env["PATH"]) == str(tmp_path / "b" / "mytool")


def test_a_command_not_found_still_fails_as_popen_says(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        _spawn(["no-such-tool-here"], None, tmp_path, {"PATH": "/usr/bin"}, [1], {})
    with pytest.raises(FileNotFoundError):  # the working directory is missing
        _spawn(["true"], "/usr/bin/true", tmp_path / "missing", {"PATH": "/usr/bin"}, [1], {})


def test_a_remembered_file_that_cannot_run_lets_the_search_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As Popen's own search does: past a file the kernel cannot execute (no ``#!``)."""
    monkeypatch.setattr(process, "EXECUTABLES", Executables(ttl=3600))
    junk = tmp_path / "a" / "mytool"
    junk.parent.mkdir()
    junk.write_bytes(b"\x00\x01 not a program\n")
    junk.chmod(0o755)
    tool(tmp_path / "b", "mytool", "runs")
    env = {"PATH": f"{tmp_path / 'a'}:{tmp_path / 'b'}"}
    found = process.EXECUTABLES.find("mytool", env["PATH"])
    assert found == str(junk)
    out = tmp_path / "out"
    fd = os.open(out, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        assert _spawn(["mytool"], found, tmp_path, env, [fd], {}).wait(10) == 0
    finally:
        os.close(fd)
    assert out.read_text() == "runs\n"
