"""The sampler of a :class:`~tlcore.training.dataset.TimelapseDataset`: (epoch, position) pairs,
shared without overlap among distributed ranks.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DistributedSampler

from tlcore.sampling.draws import (
    rank_positions,
)


class TimelapseSampler(DistributedSampler[tuple[int, int]]):
    """Yields ``(epoch, position)`` keys: every position of the epoch once, this rank's share
    when distributed (:func:`tlcore.sampling.draws.rank_positions`).

    The epoch advances by itself after each complete pass, and :meth:`set_epoch` (which
    Lightning calls at each epoch start) sets it. ``skip`` positions of the next pass are left
    out, to resume mid-epoch. It is a ``DistributedSampler`` so that Lightning keeps it instead
    of wrapping it in its own: sharding is done here. The rank and world size come from the
    arguments, else from ``torch.distributed`` when it is initialised, else 0 and 1.
    """

    def __init__(
        self,
        length: int,
        num_replicas: int | None = None,
        rank: int | None = None,
        epoch: int = 0,
    ) -> None:
        # DistributedSampler.__init__ would require an initialised process group.
        self.length = int(length)
        self._num_replicas = num_replicas
        self._rank = rank
        self.epoch = int(epoch)
        self.skip = 0
        self.shuffle = False  # read by Lightning; shuffling is the dataset's, per epoch
        self.drop_last = False

    @property
    def num_replicas(self) -> int:  # type: ignore[override]
        if self._num_replicas is not None:
            return self._num_replicas
        dist = torch.distributed
        return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1

    @property
    def rank(self) -> int:  # type: ignore[override]
        if self._rank is not None:
            return self._rank
        dist = torch.distributed
        return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0

    def positions(self) -> list[int]:
        """This rank's positions of an epoch, in order."""
        return rank_positions(self.length, self.rank, self.num_replicas)

    def __len__(self) -> int:
        return len(self.positions())

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, skip = self.epoch, self.skip
        self.skip = 0
        for position in self.positions()[skip:]:
            yield (epoch, position)
        self.epoch = epoch + 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
