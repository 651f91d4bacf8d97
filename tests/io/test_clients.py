"""Which S3 client a process may use (:mod:`tlcore.io.clients`): obstore only in a DataLoader
worker that no obstore user forked. Each case runs in forked children, so this test process's
own state is left alone."""

from __future__ import annotations

import os
import sys

import pytest

from tlcore.io import clients


def _in_grandchild(parent_uses_obstore: bool) -> bool:
    """Fork a child that (maybe) uses obstore, which forks a worker; whether that worker may
    use obstore."""
    pid = os.fork()
    if pid == 0:  # the "parent" of the worker
        code = 3
        try:
            clients._inherited = False  # as if started clean (this test process may not be)
            sys.modules.pop("obstore", None)
            if parent_uses_obstore:
                clients.note_obstore_use()
            worker = os.fork()
            if worker == 0:
                clients.mark_worker()
                os._exit(1 if clients.obstore_safe() else 0)
            _, status = os.waitpid(worker, 0)
            code = os.waitstatus_to_exitcode(status)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    assert code in (0, 1), code
    return code == 1


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
def test_a_worker_forked_from_an_obstore_user_keeps_s3fs() -> None:
    assert _in_grandchild(parent_uses_obstore=False)
    assert not _in_grandchild(parent_uses_obstore=True)


def test_only_a_worker_may_use_obstore(monkeypatch: pytest.MonkeyPatch) -> None:
    for choice in ("auto", "obstore"):
        monkeypatch.setenv(clients.ENV, choice)
        assert not clients.obstore_safe() and not clients.use_obstore()  # the test process
    monkeypatch.setenv(clients.ENV, "boto")
    with pytest.raises(ValueError, match="TLCORE_S3_CLIENT"):
        clients.choice()
