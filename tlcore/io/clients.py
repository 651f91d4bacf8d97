"""Which S3 client a process reads chunks and byte ranges with: s3fs, or obstore in DataLoader
workers where that is safe (``TLCORE_S3_CLIENT``).

obstore costs the client about a third of s3fs's CPU per GET (NOTES, "Object storage"), but a
process forked after its parent (or any ancestor) used obstore hangs on its first request. So
obstore is used only where all of these hold:

* ``TLCORE_S3_CLIENT`` is ``auto`` (the default: obstore where it is installed) or
  ``obstore`` (:func:`choice`);
* this process is a DataLoader worker (:func:`mark_worker`, called by
  :func:`tlcore.training.workers.worker_init`): the parent, which opens, validates and hands
  over images and runs ``num_workers=0`` epochs, keeps s3fs, so the workers it forks later
  stay safe;
* no ancestor of this process used obstore, nor had it imported (tlcore cannot see whether
  user code in the parent used it, so an import counts): checked at each fork
  (``os.register_at_fork``).

A worker started by ``spawn`` or ``forkserver`` starts clean, and may use obstore.

Where the storage options do not map to obstore, s3fs reads (:mod:`tlcore.io.objstore`); where
obstore fails a store's first read that s3fs serves (a bucket in another region than the one
configured), that process reads the store through s3fs from then on
(:class:`tlcore.io.objstore.Trial`). ``TLCORE_S3_CLIENT=s3fs`` keeps every process on s3fs.
"""

from __future__ import annotations

import importlib.util
import os
import sys

ENV = "TLCORE_S3_CLIENT"
CHOICES = ("s3fs", "obstore", "auto")
#: The client when ``TLCORE_S3_CLIENT`` is unset: obstore in workers where installed (its client
#: costs the loader about a third of s3fs's CPU per request; ``tlcore bench cloud``).
DEFAULT = "auto"

_worker = False  # this process is a DataLoader worker
_used_here = False  # this process has used obstore
_inherited = False  # an ancestor had used (or imported) obstore when it forked this process


def choice() -> str:
    """``TLCORE_S3_CLIENT`` (``s3fs``, ``obstore`` or ``auto``; :data:`DEFAULT` when unset).

    Raises:
        ValueError: any other value.
    """
    value = os.environ.get(ENV, "").strip().lower() or DEFAULT
    if value not in CHOICES:
        raise ValueError(f"{ENV}={value!r}: expected one of {', '.join(CHOICES)}")
    return value


def mark_worker() -> None:
    """Declare this process a DataLoader worker (its parent keeps s3fs)."""
    global _worker
    _worker = True


def note_obstore_use() -> None:
    """Record that this process uses obstore: a process forked from it must not."""
    global _used_here
    _used_here = True


def obstore_safe() -> bool:
    """Whether this process may use obstore: a worker that no obstore user forked."""
    return _worker and not _inherited


def use_obstore() -> bool:
    """Whether S3 chunk and range reads in this process go through obstore (see the module
    docstring).

    Raises:
        ImportError: ``TLCORE_S3_CLIENT=obstore`` and obstore is not installed.
    """
    wanted = choice()
    if wanted == "s3fs" or not obstore_safe():
        return False
    if importlib.util.find_spec("obstore") is None:  # without importing it
        if wanted == "obstore":
            raise ImportError(
                f"{ENV}=obstore but obstore is not installed: "
                "pip install obstore (or the plugins' [obstore] extra), or unset the variable"
            )
        return False
    return True


def _after_fork_in_child() -> None:
    global _worker, _used_here, _inherited
    _inherited = _inherited or _used_here or "obstore" in sys.modules
    _used_here = False
    _worker = False  # worker_init marks the workers it sets up


os.register_at_fork(after_in_child=_after_fork_in_child)
