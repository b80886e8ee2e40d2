"""``mnp env`` and an aws CLI too old to read ``AWS_ENDPOINT_URL*``: a warning on stderr and
a shell function passing ``--endpoint-url``, checked with a fake ``aws`` on ``PATH``."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from mnp.cli.env import aws_cli_version, reads_endpoint_variables
from mnp.cli.main import cli

URL = "http://127.0.0.1:8123"


def fake_aws(bin_dir: Path, version_line: str, on_stderr: bool = False) -> None:
    """An ``aws`` that prints ``version_line`` for ``--version`` (v1 printed it on stderr)
    and its arguments otherwise."""
    bin_dir.mkdir(exist_ok=True)
    aws = bin_dir / "aws"
    where = " >&2" if on_stderr else ""
    aws.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = --version ]; then echo "{version_line}"{where}; exit 0; fi\n'
        'echo "args: $*"\n'
    )
    aws.chmod(0o755)


def mnp_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bin_dir: Path) -> Result:
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("MNP_AWS_ACCESS_KEY_ID", "AKIDMNP")
    monkeypatch.setenv("MNP_AWS_SECRET_ACCESS_KEY", "secret")
    return CliRunner().invoke(cli, ["--home", str(tmp_path / "home"), "--url", URL, "env"])


@pytest.mark.parametrize(
    ("line", "on_stderr"),
    [
        ("aws-cli/2.9.1 Python/3.9.11 Linux/6.1 exe/x86_64.ubuntu.22 prompt/off", False),
        ("aws-cli/1.27.0 Python/3.8.10 Linux/5.15 botocore/1.29.0", True),
    ],
)
def test_an_old_aws_cli_gets_a_warning_and_the_endpoint_url_form(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, line: str, on_stderr: bool
) -> None:
    bin_dir = tmp_path / "bin"
    fake_aws(bin_dir, line, on_stderr)
    result = mnp_env(tmp_path, monkeypatch, bin_dir)
    assert result.exit_code == 0, result.output
    shown = line.split()[0].split("/")[1]
    assert f"aws CLI {shown} ignores AWS_ENDPOINT_URL_*" in result.stderr
    assert "aws()" not in result.stderr  # the shell gets only shell lines
    assert f"export AWS_ENDPOINT_URL_BATCH={URL}" in result.stdout
    # the printed lines, eval'd as `eval "$(mnp env)"` does: aws now passes the URL itself
    script = 'eval "$1" && aws batch list-jobs --job-queue q'
    done = subprocess.run(
        ["sh", "-c", script, "sh", result.stdout],
        capture_output=True, text=True, timeout=10, check=True,
    )  # fmt: skip
    assert done.stdout.strip() == f"args: --endpoint-url {URL} batch list-jobs --job-queue q"


@pytest.mark.parametrize(
    "line",
    ["aws-cli/2.13.0 Python/3.11.4 Linux/6.1", "aws-cli/1.29.0 Python/3.8", "aws-cli/2.22.4"],
)
def test_a_recent_aws_cli_gets_the_variables_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, line: str
) -> None:
    bin_dir = tmp_path / "bin"
    fake_aws(bin_dir, line)
    result = mnp_env(tmp_path, monkeypatch, bin_dir)
    assert result.exit_code == 0, result.output
    assert result.stderr == "" and "aws()" not in result.stdout


def test_no_aws_cli_no_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setattr("shutil.which", lambda name: None)
    result = mnp_env(tmp_path, monkeypatch, empty)
    assert result.exit_code == 0 and result.stderr == ""
    assert "export AWS_ENDPOINT_URL_BATCH" in result.stdout


def test_versions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_aws(tmp_path / "bin", "no version here")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    assert aws_cli_version() is None
    assert not reads_endpoint_variables((2, 12, 9)) and reads_endpoint_variables((2, 13, 0))
    assert not reads_endpoint_variables((1, 28, 3)) and reads_endpoint_variables((1, 29, 0))
    assert reads_endpoint_variables((3, 0, 0))
