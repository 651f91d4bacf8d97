"""The dry run: each split's transform pipeline run once per distinct file layout on a stand-in
of its pixels, so that whatever would stop the first epoch's batches is reported before any
DataLoader worker starts.

The loaders run for real on the file's metadata (the opened image is cached; nothing is read),
and their output is replaced by a dask array of zeros with the same shape, dtype and chunks:
crops slice it for nothing, and ``ComputeDaskd`` materialises zeros of the crop only. Every
other step runs as written (random ones with ``prob`` forced to 1, so a transform that fails
only sometimes fails here), and the outputs of the layouts are compared as collate would.
What is reported, each with its step and the fix:

- a transform misplaced on the lazy array, or a missing ``ComputeDaskd``
  (:func:`tlcore.transforms.guards.pipeline_problems`: every one, not only the first);
- a step that changes the number of dimensions of a loaded key (``EnsureChannelFirstd`` after a
  channel-first loader adds a second channel axis), and the later step that fails because of it;
- a crop whose ``roi_size`` is larger than a file (MONAI's crops would shrink it silently);
- any other step that raises on the layout (its exception, unwrapped);
- outputs that differ in shape between the layouts of a split (channel counts, or sizes with no
  fixed crop), naming the rows of each;
- a split given no transforms (when other splits have theirs) and no ``patch_shape``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tlcore import vocabulary
from tlcore.sampling.images import image_sample_fields
from tlcore.validation.report import Problem, human_size

if TYPE_CHECKING:
    from tlcore.images import LazyImage
    from tlcore.sampling.manifest import ManifestRow

#: The dry run does not materialise a stand-in larger than this (a whole uncropped timepoint):
#: it reports the size instead and stops that layout's run there.
STAND_IN_BYTES = 256 * 2**20


@dataclass(frozen=True)
class SplitPipeline:
    """What one split runs: its transforms (a MONAI ``Compose`` or any callable), and whether
    it fell back to the default pipeline with no crop while other splits had transforms
    (``missing``: the guides give ``train`` transforms only)."""

    transforms: Any
    missing: bool = False
    num_timepoints: int | None = None  # per run of the pipeline (1 with independent crops)


@dataclass
class _Run:
    outputs: dict[str, tuple[tuple[int, ...], str]]
    problems: list[tuple[str, str]]  # (problem, fix), specific to this layout


def _steps(transforms: Any) -> list[Any] | None:
    steps = getattr(transforms, "transforms", None)
    return list(steps) if isinstance(steps, (list, tuple)) else None


def _keys(step: Any) -> list[Hashable]:
    keys = getattr(step, "keys", None)
    if keys is None:
        return []
    return list(keys) if isinstance(keys, (list, tuple)) else [keys]


def _is_array(value: Any) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype") and hasattr(value, "ndim")


def _loader_kind(step: Any) -> str:
    """``"lazy"``/``"eager"`` for tlcore's loaders, ``""`` for anything else."""
    from tlcore.transforms.load import LoadLazyd
    from tlcore.transforms.loaders import LoadImaged

    if isinstance(step, LoadImaged):
        return "lazy" if step.spec.lazy_load else "eager"
    if isinstance(step, LoadLazyd):
        return "lazy" if getattr(step, "lazy", True) else "eager"
    return ""


def _lazy_keys(step: Any) -> list[Hashable]:
    return [*_keys(step), *getattr(step, "labels", {})]


def _stand_in(value: Any, dtype: Any, eager: bool) -> Any:
    """Zeros shaped like the loader's lazy output: dask (lazy) or numpy (eager)."""
    import dask.array as da
    import numpy as np

    target = np.dtype(dtype) if dtype is not None else np.dtype(value.dtype)
    if eager:
        if math.prod(value.shape) * target.itemsize > STAND_IN_BYTES:
            raise _TooLarge(tuple(value.shape), target)
        return np.zeros(value.shape, dtype=target)
    return da.zeros(value.shape, dtype=target, chunks=value.chunks)


class _TooLarge(Exception):
    def __init__(self, shape: tuple[int, ...], dtype: Any) -> None:
        self.shape, self.dtype = shape, dtype
        super().__init__(f"{shape} {dtype}")


def _load(step: Any, d: dict[Hashable, Any]) -> dict[Hashable, Any]:
    """Run a tlcore loader on metadata only, its outputs replaced by stand-ins."""
    from tlcore.transforms.arrays import numpy_dtype
    from tlcore.transforms.load import LoadLazyd
    from tlcore.transforms.loaders import LoadImaged

    eager = _loader_kind(step) == "eager"
    pairs = (
        [(step._loaders[k], k) for k in step.key_iterator(d)]
        if isinstance(step, LoadImaged)
        else [(step, None)]
    )
    for loader, path_key in pairs:
        guard = loader.guard
        loader.guard = False
        try:
            # LoadLazyd's own call: the lazy view whatever the loader's mode (nothing read).
            d = LoadLazyd.__call__(loader, d)
        finally:
            loader.guard = guard
        dtype = numpy_dtype(getattr(loader, "dtype", None))
        for key in [*loader.keys, *loader.labels]:
            d[key] = _stand_in(d[key], dtype if key in loader.keys else None, eager)
        del path_key
    return d


@contextlib.contextmanager
def _certain(step: Any) -> Iterator[None]:
    """A random transform applies every time during the dry run (``prob`` set to 1)."""
    prob = getattr(step, "prob", None)
    if not isinstance(prob, (int, float)) or isinstance(prob, bool):
        yield
        return
    step.prob = 1.0
    try:
        yield
    finally:
        step.prob = prob


def _roi(step: Any) -> Any:
    roi = getattr(step, "roi_size", None)
    if roi is None:
        roi = getattr(getattr(step, "cropper", None), "roi_size", None)
    return roi


def _cause(exc: BaseException) -> BaseException:
    """MONAI wraps a failing transform's error in ``RuntimeError("applying transform ...")``."""
    while (
        isinstance(exc, RuntimeError)
        and str(exc).startswith("applying transform")
        and exc.__cause__ is not None
    ):
        exc = exc.__cause__
    return exc


def _shape_text(value: Any) -> str:
    return f"{tuple(int(n) for n in value.shape)} {value.dtype}"


def _run(
    steps: Sequence[Any],
    sample: dict[Hashable, Any],
    skip: set[int],
    spatial_dims: int,
    path: str,
) -> _Run:
    """One layout through the pipeline: its outputs' shapes, or the problems that stop it."""
    from tlcore.transforms.guards import ADDS_CHANNEL

    d: dict[Hashable, Any] = dict(sample)
    run = _Run({}, [])
    expected: dict[Hashable, int] = {}  # loaded key -> ndim the loader gave
    changed: dict[Hashable, tuple[int, str, str, str]] = {}  # key -> step, name, before, after
    for position, step in enumerate(steps):
        name = type(step).__name__
        if position in skip:
            continue
        if _loader_kind(step):
            try:
                d = _load(step, d)
            except _TooLarge as big:
                size = human_size(math.prod(big.shape) * big.dtype.itemsize)
                run.problems.append((
                    f"{name} (step {position}) reads the whole selection eagerly: {big.shape} "
                    f"{big.dtype}, {size} per sample (the dry run stops there)",
                    "use the lazy path (dask_load/lazy_load=True) with a crop before ComputeDaskd",
                ))  # fmt: skip
                return run
            except Exception as exc:
                cause = _cause(exc)
                run.problems.append((
                    f"{name} (step {position}) fails on this file: {type(cause).__name__}: "
                    f"{cause}",
                    "fix the loader's arguments, or the row",
                ))  # fmt: skip
                return run
            for key in _lazy_keys(step):
                if key in d and _is_array(d[key]):
                    expected[key] = int(d[key].ndim)
            continue
        keys = [k for k in _keys(step) if k in d and _is_array(d[k])]
        roi = _roi(step)
        if roi is not None:
            for key in keys:
                spatial = tuple(int(n) for n in d[key].shape[1:])
                want = [int(roi)] * len(spatial) if isinstance(roi, int) else [int(r) for r in roi]
                if len(want) == len(spatial) and any(r > s for r, s in zip(want, spatial) if r > 0):
                    run.problems.append((
                        f"{name} (step {position}) crops {key!r} to roi_size {tuple(want)}, "
                        f"larger than the file's {spatial} (spatial, at this level): MONAI's "
                        "crops shrink the box silently, so the batch would not collate",
                        f"use a roi_size no larger than {spatial} on every axis, or drop the "
                        "row",
                    ))  # fmt: skip
                    return run
        if type(step).__name__ == "ComputeDaskd":
            for key in keys:
                value = d[key]
                nbytes = math.prod(value.shape) * value.dtype.itemsize
                if hasattr(value, "dask") and nbytes > STAND_IN_BYTES:
                    run.problems.append((
                        f"ComputeDaskd (step {position}) would read {key!r} uncropped: "
                        f"{_shape_text(value)}, {human_size(nbytes)} per sample",
                        "crop before ComputeDaskd (RandSpatialCropd with random_size=False, or "
                        "patch_shape)",
                    ))  # fmt: skip
                    return run
        before = {k: tuple(d[k].shape) for k in keys}
        try:
            with _certain(step):
                out = step(d)
        except Exception as exc:
            cause = _cause(exc)
            blame = next(
                ((k, c) for k, c in changed.items() if k in before), None
            )  # a step that changed a loaded key's dimensions earlier
            text = (
                f"{name} (step {position}) fails: {type(cause).__name__}: "
                f"{str(cause).strip().splitlines()[0] if str(cause).strip() else ''}"
            )
            if blame is not None:
                key, (at, by, was, now) = blame
                fix = (
                    f"remove {by} (step {at}): tlcore's loaders return channel-first arrays, "
                    f"and it turned {key!r} {was} into {now}"
                )
                text += f"; it gets {key!r} with {len(now.split(','))} dimensions from {by}"
            else:
                shapes = ", ".join(f"{k!r} {_shape_text(d[k])}" for k in keys)
                fix = (
                    f"check its arguments against the arrays it gets ({shapes}; channel-first, "
                    f"spatial_dims={spatial_dims})"
                )
            run.problems.append((text, fix))
            return run
        if not isinstance(out, dict):
            run.problems.append((
                f"{name} (step {position}) returns {type(out).__name__}, not a dict",
                "one sample in, one sample out (num_samples=1)",
            ))  # fmt: skip
            return run
        d = out
        for key, ndim in expected.items():
            if key in d and _is_array(d[key]) and d[key].ndim != ndim and key not in changed:
                shape_before, shape_after = before.get(key), tuple(d[key].shape)
                changed[key] = (position, name, str(shape_before), str(shape_after))
    for key, (at, by, was, now) in changed.items():
        fix = (
            f"remove {by} (step {at}): tlcore's loaders already return channel-first arrays"
            if by in ADDS_CHANNEL or now.startswith("(1,")
            else f"check {by} (step {at}): the model would get {key!r} with other dimensions"
        )
        run.problems.append((
            f"{by} (step {at}) turns the loader's channel-first {key!r} {was} into {now}: the "
            f"batch would have {len(now.split(','))} dimensions per sample, not "
            f"{spatial_dims + 1} (C + {spatial_dims} spatial)",
            fix,
        ))  # fmt: skip
    for key, value in d.items():
        if _is_array(value) and int(value.ndim) >= 1 and not str(key).endswith("_meta"):
            run.outputs[str(key)] = (tuple(int(n) for n in value.shape), str(value.dtype))
    del path
    return run


def _sample(row: ManifestRow, image: LazyImage, num_timepoints: int) -> dict[Hashable, Any]:
    """The sample dict the dataset would make for ``row`` (its first timepoints)."""
    from tlcore.sampling.draws import resolve_range

    start = resolve_range(row.start, row.stop, image.shape[0]).start
    ts = list(range(start, start + num_timepoints))
    sample: dict[Hashable, Any] = {
        vocabulary.PATH: row.path,
        vocabulary.SCENE: row.scene,
        vocabulary.RESOLUTION: row.resolution,
        vocabulary.CHANNELS: "" if row.channels is None else ",".join(map(str, row.channels)),
        vocabulary.TIMEPOINTS: ts if num_timepoints > 1 else ts[0],
        vocabulary.TIME_SECONDS: [math.nan] * len(ts) if num_timepoints > 1 else math.nan,
        vocabulary.OPTIONS: dict(row.options),
        vocabulary.ROW: row.row,
        vocabulary.SPLIT: row.split,
    }
    if row.images:
        sample.update(image_sample_fields(row))
    sample.update(row.extras)
    return sample


def _rows_text(rows: Sequence[ManifestRow]) -> str:
    origins = {r.origin for r in rows}
    numbers = [r.row for r in rows]
    shown = ", ".join(map(str, numbers[:8])) + (", ..." if len(numbers) > 8 else "")
    prefix = f"{next(iter(origins))} " if len(origins) == 1 else ""
    return f"{prefix}row{'s' if len(numbers) > 1 else ''} {shown}"


def check_pipelines(
    rows: Mapping[str, Sequence[tuple[ManifestRow, LazyImage, int]]],
    pipelines: Mapping[str, SplitPipeline],
    *,
    num_timepoints: int = 1,
    spatial_dims: int = 3,
    batch_size: int = 2,
) -> list[Problem]:
    """Dry-run each split's pipeline on its rows' layouts (``rows``: ``{split: [(row, opened
    image, channel count)]}``, the rows that passed the row checks); every problem found.
    With ``batch_size`` 1 every sample is a batch of its own, so samples of different spatial
    shapes are no problem (different channel counts still are: the model's first layer)."""
    from tlcore.transforms.guards import pipeline_problems

    out: list[Problem] = []
    for split, split_rows in rows.items():
        chosen = pipelines.get(split)
        if chosen is None or not split_rows:
            continue
        origin = split_rows[0][0].origin
        # Different channel counts break the model's first layer even one sample at a time.
        out.extend(_channel_counts(split, origin, split_rows))
        if chosen.missing:
            out.append(Problem(
                None, None, None,
                f"the {split!r} split has no transforms and no patch_shape: it would run the "
                "default pipeline on whole timepoints (no crop), which cannot be batched when "
                "files differ in size and reads every timepoint whole",
                f"give transforms for {split!r} too (transforms: {{train: ..., {split}: ...}}, "
                "e.g. the train pipeline with CenterSpatialCropd and without augmentation), or "
                "set patch_shape",
                None, origin, split,
            ))  # fmt: skip
            continue
        steps = _steps(chosen.transforms)
        if steps is None:
            continue  # not a Compose: it cannot be run without reading pixels
        skip: set[int] = set()
        for step in steps:
            if _loader_kind(step) != "lazy":
                continue
            for at, _name, message in pipeline_problems(step, _lazy_keys(step), steps):
                skip.add(at)
                fix = message.split(". ", 1)[1] if ". " in message else ""
                out.append(Problem(None, None, None,
                                   f"the {split!r} transforms: {message.split('. ', 1)[0]}",
                                   fix, None, origin, split))  # fmt: skip
        layouts: dict[tuple[Any, ...], list[ManifestRow]] = {}
        images: dict[tuple[Any, ...], LazyImage] = {}
        for row, image, n_channels in split_rows:
            key = (tuple(image.shape[1:]), str(image.dtype), n_channels, row.resolution)
            layouts.setdefault(key, []).append(row)
            images.setdefault(key, image)
        results: list[tuple[list[ManifestRow], _Run]] = []
        for key, layout_rows in layouts.items():
            first = layout_rows[0]
            n_t = chosen.num_timepoints or num_timepoints
            run = _run(steps, _sample(first, images[key], n_t), skip, spatial_dims, first.path)
            for text, fix in run.problems:
                others = f" (and {_rows_text(layout_rows[1:])}, same layout)" if len(
                    layout_rows) > 1 else ""  # fmt: skip
                out.append(Problem(first.row, None, first.path, text + others, fix, None,
                                   first.origin, split))  # fmt: skip
            if not run.problems:
                results.append((layout_rows, run))
        if batch_size > 1:
            out.extend(_compare(split, origin, results))
    return out


def _compare(
    split: str, origin: str, results: Sequence[tuple[list[ManifestRow], _Run]]
) -> list[Problem]:
    """The layouts of a split must give the same shape per key, or collate fails."""
    if len(results) < 2:
        return []
    out = []
    keys = set.intersection(*(set(run.outputs) for _, run in results))
    for key in sorted(keys):
        shapes: dict[tuple[int, ...], list[ManifestRow]] = {}
        for layout_rows, run in results:
            shapes.setdefault(run.outputs[key][0], []).extend(layout_rows)
        if len(shapes) < 2 or len({s[1:] for s in shapes}) == 1:
            continue  # one shape, or channel counts only (reported from the rows)
        listed = "; ".join(f"{_rows_text(r)} give {s}" for s, r in shapes.items())
        text = (f"the {split!r} rows give {key!r} different shapes with no fixed crop, so they "
                "cannot share a batch")  # fmt: skip
        fix = ("crop to one size before ComputeDaskd (RandSpatialCropd with random_size=False, "
               "or patch_shape)")  # fmt: skip
        out.append(Problem(None, None, None, f"{text}: {listed}", fix, None, origin, split))
    return out


def _channel_counts(
    split: str, origin: str, rows: Sequence[tuple[ManifestRow, LazyImage, int]]
) -> list[Problem]:
    """The rows of one split must load the same number of channels, or collate fails."""
    counts: dict[int, list[ManifestRow]] = {}
    for row, _image, n in rows:
        counts.setdefault(n, []).append(row)
    if len(counts) < 2:
        return []
    listed = "; ".join(
        f"{_rows_text(r)}: {n} channel(s) (channel = "
        f"{', '.join(sorted({repr(_cell(x)) for x in r}))})"
        for n, r in sorted(counts.items())
    )
    return [Problem(
        None, "channel", None,
        f"the {split!r} rows load different numbers of channels, so their samples cannot share "
        f"a batch: {listed}",
        "give every row of the split the same number of channels (an empty cell means every "
        "channel of the file)",
        None, origin, split,
    )]  # fmt: skip


def _cell(row: ManifestRow) -> str:
    return "" if row.channels is None else ",".join(map(str, row.channels))
