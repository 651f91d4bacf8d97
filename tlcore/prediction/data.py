"""Reading tiles (a torch ``IterableDataset`` of whole batches, split over DataLoader workers)
and loading the model (``MODULE:CALLABLE``, a state dict or a Lightning checkpoint)."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Container, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from tlcore.images import LazyImage
from tlcore.prediction.errors import PredictionError
from tlcore.prediction.grid import Plan, TileId, UnitId

__all__ = ["TileBatches", "load_model", "needed_batches"]


def needed_batches(
    plan: Plan, batch_size: int, rank: int, world: int, done: Container[UnitId]
) -> Iterator[list[TileId]]:
    """The rank's batches that touch a unit not yet written (all of them on a fresh run). A
    batch is kept or dropped whole, so a resumed run predicts the very batches it would have."""
    for batch in plan.batches(batch_size, rank, world):
        if not done or any(u not in done for tile in batch for u in plan.units_of(tile)):
            yield batch


class TileBatches(torch.utils.data.IterableDataset[Any]):
    """Yields the rank's batches of tiles as float32 tensors (B, C_in, Z, Y, X), in order.

    With DataLoader workers, worker ``w`` of ``W`` reads batches ``w, w + W, ...``; the loader
    hands them back round-robin, which is the plan's order again. Use ``batch_size=None`` in
    the DataLoader (each item is a batch already).

    Args:
        image: the input (pickles without file handles, so workers reopen it).
        plan: the tiling.
        batch_size: tiles per batch.
        rank, world: this process's share of the groups.
        done: units already written (resume).
        channels: the input channels read, None for all.
        times: output timepoint -> input timepoint.
        with_tiles: yield ``(tensor, tiles)`` instead of the tensor alone.
    """

    def __init__(
        self,
        image: LazyImage,
        plan: Plan,
        batch_size: int,
        *,
        rank: int = 0,
        world: int = 1,
        done: Container[UnitId] = (),
        channels: Sequence[int] | None = None,
        times: Sequence[int] | range = range(0),
        with_tiles: bool = True,
    ) -> None:
        self.image = image
        self.plan = plan
        self.batch_size = batch_size
        self.rank, self.world = rank, world
        self.done = done
        self.channels = None if channels is None else list(channels)
        self.times = times
        self.with_tiles = with_tiles

    def batches(self) -> Iterator[list[TileId]]:
        return needed_batches(self.plan, self.batch_size, self.rank, self.world, self.done)

    def read(self, tile: TileId) -> np.ndarray:
        """One tile's read window, (C_in, Z, Y, X) float32, through the reader registry."""
        from tlcore.lazy.compute import compute

        (z0, z1), (y0, y1), (x0, x1) = self.plan.read_box(tile)
        t = self.times[tile[0]]
        chans: Any = slice(None) if self.channels is None else self.channels
        pixels = compute(self.image.data[t, chans, z0:z1, y0:y1, x0:x1])
        return np.asarray(pixels, dtype=np.float32)

    def __iter__(self) -> Iterator[Any]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        for k, batch in enumerate(self.batches()):
            if k % workers != worker:
                continue
            x = torch.from_numpy(np.stack([self.read(tile) for tile in batch]))
            yield (x, torch.tensor(batch)) if self.with_tiles else x


def load_model(
    spec: str | Callable[[], torch.nn.Module] | torch.nn.Module, checkpoint: str | None = None
) -> torch.nn.Module:
    """The model named by ``spec``: ``"package.module:callable"`` (called with no arguments),
    a callable, or a module; then ``checkpoint`` (a state dict, or a Lightning checkpoint's
    ``state_dict``) loaded into it, strictly.

    Raises:
        PredictionError: a malformed spec, or a checkpoint whose keys do not fit the model.
        TypeError: the callable did not return a ``torch.nn.Module``.
    """
    model: Any = spec
    if isinstance(spec, str):
        module_name, _, attr = spec.partition(":")
        if not module_name or not attr:
            raise PredictionError(
                f"--model {spec!r}: expected MODULE:CALLABLE, e.g. mypkg.models:build_unet"
            )
        try:
            target: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                target = getattr(target, part)
        except (ImportError, AttributeError) as exc:
            raise PredictionError(
                f"--model {spec!r}: cannot import it ({exc}); is the package installed, or on "
                "PYTHONPATH?"
            ) from exc
        model = target
    if not isinstance(model, torch.nn.Module) and callable(model):
        model = model()
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model {spec!r} gave {type(model).__name__}, not a torch.nn.Module")
    if checkpoint is not None:
        _load_checkpoint(model, checkpoint)
    return model


def _load_checkpoint(model: torch.nn.Module, path: str | os.PathLike[str]) -> None:
    state = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # a Lightning checkpoint
    if not isinstance(state, dict):
        raise PredictionError(f"{path}: not a state dict or a Lightning checkpoint")
    wanted = set(model.state_dict())
    if set(state) != wanted:
        # A LightningModule saved the network as an attribute (`self.net = ...`): strip it.
        for prefix in sorted({k.split(".", 1)[0] + "." for k in state if "." in k}):
            stripped = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
            if set(stripped) == wanted:
                state = stripped
                break
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise PredictionError(f"{path} does not fit the model: {exc}") from exc
