"""tlcore.progress: bars drawn on a terminal, silent everywhere else."""

from __future__ import annotations

import io
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tlcore.progress import Bar, enabled, track

# Draws a bar of 5 steps on stderr, prints "done" on stdout.
_SCRIPT = """
import sys
from tlcore.progress import Bar, track
for _ in track(range(5), "steps"):
    pass
with Bar("fetching", 2048, unit="B") as bar:
    bar.update(1024)
    bar.update(1024)
print("done")
"""


def _run(stderr_tty: bool, env: dict[str, str] | None = None) -> tuple[str, str]:
    """Run the script with stderr on a pseudo-terminal or a pipe; returns (stdout, stderr)."""
    full_env = {k: v for k, v in os.environ.items() if k != "TLCORE_PROGRESS"}
    full_env.update(env or {})
    if not stderr_tty:
        done = subprocess.run(
            [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, env=full_env,
            timeout=120, check=True,
        )  # fmt: skip
        return done.stdout, done.stderr
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", _SCRIPT], stdout=subprocess.PIPE, stderr=slave, env=full_env
        )
        os.close(slave)
        chunks = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    data = os.read(master, 4096)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        out = proc.communicate(timeout=60)[0].decode()
    finally:
        os.close(master)
    return out, b"".join(chunks).decode()


def test_bar_draws_on_a_terminal() -> None:
    out, err = _run(stderr_tty=True)
    assert out.strip() == "done"
    assert "steps 5/5 [##############################] 100%" in err
    assert "\r" in err
    assert "fetching 2.0 KiB/2.0 KiB" in err


def test_bar_is_silent_when_stderr_is_not_a_terminal() -> None:
    out, err = _run(stderr_tty=False)
    assert out.strip() == "done"
    assert err == ""


def test_tlcore_progress_0_silences_a_terminal() -> None:
    out, err = _run(stderr_tty=True, env={"TLCORE_PROGRESS": "0"})
    assert out.strip() == "done"
    assert err == ""


def test_enabled_follows_the_stream() -> None:
    assert not enabled(io.StringIO())


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_render_counts_sizes_and_unknown_totals(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TLCORE_PROGRESS", raising=False)
    stream = _Tty()
    with Bar("checking", 4, stream=stream, min_interval=0) as bar:
        for _ in range(4):
            bar.update()
    lines = stream.getvalue()
    assert lines.endswith("checking 4/4 [##############################] 100%\x1b[K\n")
    assert "checking 2/4 [###############...............]  50%" in lines
    assert Bar("rows", None, enabled=False).render() == "rows 0"
    assert Bar("x", 3, unit="crops", enabled=False).render().startswith("x 0/3 crops [")
    # The (done, total) callback form that validate_rows takes.
    callback = Bar("checking", enabled=False)
    callback(3, 6)
    assert (callback.done, callback.total) == (3, 6)


def test_delay_keeps_quick_steps_silent() -> None:
    stream = _Tty()
    with Bar("fetching", 10, stream=stream, enabled=True, delay=60) as bar:
        bar.update(10)
    assert stream.getvalue() == ""


def test_track_passes_items_through() -> None:
    stream = io.StringIO()
    assert list(track(iter([1, 2, 3]), "items", stream=stream)) == [1, 2, 3]
    assert stream.getvalue() == ""


def test_a_cache_download_draws_a_bar_on_a_terminal(
    s3_new_bucket: str,
    s3_server: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import s3fs

    from tlcore import remote
    from tlcore.io.source import Source

    payload = bytes(range(256)) * 64  # 16 KiB
    s3fs.S3FileSystem(**s3_server).pipe_file(f"{s3_new_bucket}/movie.nd2", payload)
    monkeypatch.delenv("TLCORE_PROGRESS", raising=False)
    monkeypatch.setattr(remote, "PROGRESS_DELAY_S", 0.0)
    monkeypatch.setattr(sys, "stderr", _Tty())
    remote.clear_memo()
    options = {**s3_server, "tlcore_cache_dir": str(tmp_path)}
    path = remote.local_copy(Source.from_any(f"s3://{s3_new_bucket}/movie.nd2", options))
    assert path.read_bytes() == payload
    drawn = sys.stderr.getvalue()
    assert "fetching movie.nd2 16.0 KiB/16.0 KiB" in drawn and drawn.endswith("\n")
    remote.clear_memo()
