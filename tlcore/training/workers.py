"""What every DataLoader worker does first (:func:`worker_init`)."""

from __future__ import annotations

import numpy as np
import torch

import tlcore.io.clients  # noqa: F401  (its fork hook must be in place before workers fork)


def worker_init(worker_id: int) -> None:
    """Set up a DataLoader worker: one torch thread, dask's synchronous scheduler, global
    RNGs seeded per worker (for user code that uses them; tlcore's own draws do not), decoders
    sharing the cores with the other workers (:func:`tlcore.lazy.cpu.set_sharing`), S3
    chunk reads allowed on obstore (:func:`tlcore.io.clients.mark_worker`), and large buffers
    reused from sample to sample (:func:`tlcore.training.allocator.keep_large_buffers`)."""
    import gc
    import random

    import dask

    from tlcore.io import clients
    from tlcore.lazy import cpu
    from tlcore.training import allocator

    clients.mark_worker()  # S3 chunk reads may use obstore here (TLCORE_S3_CLIENT)
    info = torch.utils.data.get_worker_info()
    cpu.set_sharing(info.num_workers if info is not None else 1)

    # The parent's objects stay untouched by this worker's collections, so its pages stay
    # shared instead of being copied into every worker.
    gc.freeze()
    allocator.keep_large_buffers()
    torch.set_num_threads(1)
    dask.config.set(scheduler="synchronous")
    # The opened-image cache is not cleared: it holds what the parent handed over, never its
    # file handles (tlcore.readers.cache), so the first crop reads no metadata.
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)  # for user transforms that use numpy's global state
