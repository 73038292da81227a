"""The console command as a user runs it, in real subprocesses against the embedded ECR+S3:
without ``--conn-id`` it never imports Airflow; on a terminal (a pseudo-terminal here) it
draws progress bars, with ``-v`` logs above them and not through them; off a terminal it
prints nothing but errors unless ``-v`` is given; stdout carries only the JSON result."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_ecr_layers.progress_bars import short_name
from helpers import MiB, pattern_bytes, sha256

PART = 5 * MiB
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (INFO|WARNING|ERROR) \S.*$")
BAR = re.compile(r"\d+%\|")

_REPORT_IMPORTS = """
import json, sys
from airflow_ecr_layers.cli import main
code = main(sys.argv[1:])
loaded = sorted(m for m in sys.modules if m == "airflow" or m.startswith("airflow."))
print(json.dumps({"code": code, "airflow": loaded}), file=sys.stderr)
"""


@pytest.fixture
def cli_env(aws: Any, tmp_path: Path) -> dict[str, str]:
    """The plain AWS chain pointed at the embedded server, and a cache folder of the test's own."""
    return {**os.environ, **aws.env(), "XDG_CACHE_HOME": str(tmp_path / "cache")}


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    """Two local artifacts of 3 parts each, sizes not multiples of the part size."""
    found = []
    for index in range(2):
        path = tmp_path / f"layer-{index}.bin"
        path.write_bytes(pattern_bytes(2 * PART + 1000 + index, seed=index))
        found.append(path)
    return found


def push_argv(files: list[Path], reference: str, *extra: str) -> list[str]:
    return ["push", *(f"file://{path}" for path in files), reference, "--part-size", str(PART), "--no-resume", *extra]


def run_cli(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The CLI with stdout and stderr on pipes (off a terminal)."""
    return subprocess.run(
        [sys.executable, "-m", "airflow_ecr_layers.cli", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def run_on_terminal(argv: list[str], env: dict[str, str], columns: int = 110) -> tuple[int, dict[str, Any], str]:
    """The CLI with stderr on a pseudo-terminal of ``columns`` columns, stdout on a pipe:
    its exit code, the JSON it printed, and everything the terminal received."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, columns, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow_ecr_layers.cli", *argv], stdout=subprocess.PIPE, stderr=slave, env=env
    )
    os.close(slave)
    received = bytearray()
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            received += chunk
        assert process.stdout is not None
        stdout = process.stdout.read()
        code = process.wait(timeout=30)
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
    return code, json.loads(stdout) if stdout.strip() else {}, received.decode()


def screen(output: str) -> list[str]:
    """The lines a terminal shows after ``output``: carriage returns, line feeds and cursor-up
    (what tqdm moves with) applied, each written character replacing the one under it."""
    lines: list[list[str]] = [[]]
    row = column = 0
    for token in re.finditer(r"\x1b\[(\d*)([A-Za-z])|\r|\n|[^\x1b\r\n]", output):
        text = token.group(0)
        if text == "\r":
            column = 0
        elif text == "\n":
            row += 1
            lines.extend([] for _ in range(row + 1 - len(lines)))
        elif token.group(2) == "A":
            row = max(0, row - int(token.group(1) or 1))
        elif token.group(2):
            raise AssertionError(f"an escape sequence this screen does not model: {text!r}")
        else:
            line = lines[row]
            line.extend(" " for _ in range(column + 1 - len(line)))
            line[column] = text
            column += 1
    return [text for text in ("".join(line).rstrip() for line in lines) if text]


def test_screen_applies_what_tqdm_sends() -> None:
    assert screen("\rbar  10%\n\rlayer 5%\x1b[A\rbar  50%\r\n\r        \x1b[A\rlog line\r\n") == ["log line"]
    assert screen("a\rb\n") == ["b"]


@pytest.mark.parametrize("command", ["plan", "push"])
def test_without_conn_id_airflow_is_never_imported(
    command: str, cli_env: dict[str, str], repo: str, put_object: Any, files: list[Path]
) -> None:
    data = pattern_bytes(PART + 7, seed=3)
    for source in (f"file://{files[0]}", put_object("cli/plain.bin", data)):
        argv = ["plan", source] if command == "plan" else ["push", source, f"{repo}:v1", "--no-resume"]
        done = subprocess.run(
            [sys.executable, "-c", _REPORT_IMPORTS, *argv], capture_output=True, text=True, env=cli_env, timeout=120
        )
        report = json.loads(done.stderr.strip().splitlines()[-1])
        assert report == {"code": 0, "airflow": []}, done.stderr
        result = json.loads(done.stdout)
        expected = files[0].read_bytes() if source.startswith("file://") else data
        if command == "plan":
            assert (result["source"], result["size"]) == (source, len(expected))
        else:
            assert result["layers"][0]["digest"] == sha256(expected)
    if command == "push":
        return
    # the same with a connection id goes through Airflow's object storage: the check above is not vacuous
    done = subprocess.run(
        [sys.executable, "-c", _REPORT_IMPORTS, "plan", f"file://{files[0]}", "--conn-id", "aws_default"],
        capture_output=True,
        text=True,
        env=cli_env,
        timeout=120,
    )
    assert "airflow.sdk" in json.loads(done.stderr.strip().splitlines()[-1])["airflow"]


def test_off_a_terminal_only_errors_are_printed_unless_verbose(
    cli_env: dict[str, str], repo: str, files: list[Path]
) -> None:
    quiet = run_cli(push_argv(files, f"{repo}:quiet"), cli_env)
    assert quiet.returncode == 0 and quiet.stderr == ""
    result = json.loads(quiet.stdout)
    digests = [sha256(path.read_bytes()) for path in files]
    assert [layer["digest"] for layer in result["layers"]] == digests
    plan = run_cli(["plan", f"file://{files[0]}", "--part-size", str(PART)], cli_env)
    assert plan.returncode == 0 and plan.stderr == "" and json.loads(plan.stdout)["parts"] == 3

    verbose = run_cli(push_argv(files, f"{repo}:verbose", "-v"), cli_env)
    assert verbose.returncode == 0
    again = json.loads(verbose.stdout)  # the same JSON with -v
    assert again.keys() == result.keys() and [layer["digest"] for layer in again["layers"]] == digests
    logged = verbose.stderr.splitlines()
    assert logged and all(LOG_LINE.match(line) for line in logged), logged
    assert any(f"INFO Uploaded file://{files[1]}: {digests[1]}, " in line for line in logged)
    assert any(f"INFO Put {repo}:verbose -> {again['image_digest']}" in line for line in logged)

    failed = run_cli(["plan", f"file://{files[0]}.missing"], cli_env)
    assert failed.returncode == 2 and failed.stdout == ""
    assert failed.stderr == f"airflow-ecr-layers: error: Source 'file://{files[0]}.missing' does not exist\n"


def test_with_conn_id_airflow_logs_nothing_either_unless_verbose(
    cli_env: dict[str, str], repo: str, files: list[Path]
) -> None:
    quiet = run_cli(push_argv(files, f"{repo}:quiet", "--conn-id", "aws_default"), cli_env)
    assert quiet.returncode == 0 and quiet.stderr == ""
    assert [layer["digest"] for layer in json.loads(quiet.stdout)["layers"]] == [
        sha256(path.read_bytes()) for path in files
    ]


def test_on_a_terminal_a_bar_per_layer_and_one_for_the_push(
    cli_env: dict[str, str], repo: str, files: list[Path]
) -> None:
    code, result, output = run_on_terminal(push_argv(files, f"{repo}:bars"), cli_env)
    assert code == 0, output
    assert [layer["digest"] for layer in result["layers"]] == [sha256(path.read_bytes()) for path in files]
    total = sum(path.stat().st_size for path in files)
    for path in files:  # each layer's bar reached its size, with the time taken, the time left and a rate
        name = re.escape(short_name(f"file://{path}"))
        assert re.search(rf"{name}: 100%\|[^\r\n]*\| 10\.0M/10\.0M \[[0-9:]+<[0-9:]+, +[0-9.]+[kMG]?B/s\]", output)
    # what stays on the screen: the whole push's bar, complete; the layers' bars are cleared
    assert screen(output) == [line for line in screen(output) if line.startswith("total (2 layers): 100%|")]
    assert len(screen(output)) == 1 and f"{total / MiB:.1f}M/{total / MiB:.1f}M" in screen(output)[0]

    code, _, output = run_on_terminal(push_argv(files, f"{repo}:no-bars", "--no-progress"), cli_env)
    assert code == 0 and output == ""


def test_on_a_terminal_log_lines_and_bars_do_not_cut_through_each_other(
    cli_env: dict[str, str], repo: str, files: list[Path]
) -> None:
    code, result, output = run_on_terminal(push_argv(files, f"{repo}:verbose", "-v"), cli_env)
    assert code == 0, output
    lines = screen(output)
    logged = [line for line in lines if not BAR.search(line)]
    assert logged and all(LOG_LINE.match(line) for line in logged), logged  # every log line whole, on its own
    for path, layer in zip(files, result["layers"], strict=True):
        uploaded = f"INFO Uploaded file://{path}: {layer['digest']}, {path.stat().st_size} bytes, 3 part requests at "
        assert any(uploaded in line for line in logged), logged
    assert lines[-1].startswith("total (2 layers): 100%|")  # and the push's bar below them
