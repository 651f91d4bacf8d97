"""Guard rails of the lazy path: a transform that needs pixels placed before ComputeDaskd fails
on the first sample naming itself and the fix; ComputeDaskd warns before reading a whole large
image."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from monai.transforms import (
    Compose,
    EnsureChannelFirstd,
    EnsureTyped,
    NormalizeIntensityd,
    RandFlipd,
    RandSpatialCropd,
    ToTensord,
)

from tlcore.transforms import (
    BioIOImageLoaderd,
    ComputeDaskd,
    LoadImaged,
    LoadLazyd,
    WholeImageWarning,
)
from tlcore.transforms.guards import LazyPipelineError


@pytest.fixture
def store(synthetic_store: Callable[..., Path]) -> Path:
    return synthetic_store(shape=(2, 1, 4, 64, 64), chunks=(1, 1, 4, 32, 32))


def _chain(exc: BaseException) -> str:
    parts = []
    while exc is not None:
        parts.append(f"{type(exc).__name__}: {exc}")
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return "\n".join(parts)


@pytest.mark.parametrize(
    ("transform", "kind"),
    [
        (RandFlipd(keys="raw", prob=1.0), "fails"),
        (EnsureChannelFirstd(keys="raw"), "Remove it"),
        (NormalizeIntensityd(keys="raw"), "fails"),
        (ToTensord(keys="raw"), "unchanged"),
        (EnsureTyped(keys="raw"), "unchanged"),
    ],
)
def test_pixel_transform_before_compute_names_itself_and_the_fix(
    store: Path, transform: Any, kind: str
) -> None:
    pipeline = Compose([
        LoadLazyd(keys="raw"),
        RandSpatialCropd(keys="raw", roi_size=(2, 16, 16), random_size=False),
        transform,
        ComputeDaskd(keys="raw"),
    ])  # fmt: skip
    with pytest.raises(Exception) as info:
        pipeline({"original_path": str(store), "T": 0})
    text = _chain(info.value)
    name = type(transform).__name__
    assert "LazyPipelineError" in text and f"{name} (step 2 of the pipeline)" in text
    assert kind in text
    if kind == "Remove it":  # the loaders are channel-first: after ComputeDaskd it adds an axis
        assert "Move it" not in text and "channel-first" in text
    else:
        assert "Move it after ComputeDaskd(keys='raw')" in text


def test_guide_keys_form_of_the_loader(store: Path) -> None:
    loader = BioIOImageLoaderd(keys=["raw"], path_key="original_path", dask_load=True,
                               lazy_load=True, dtype="float16")  # fmt: skip
    out = Compose([loader, RandSpatialCropd(keys=["raw"], roi_size=(2, 16, 16),
                                            random_size=False), ComputeDaskd(keys=["raw"])])(
        {"original_path": str(store), "T": 0})  # fmt: skip
    assert tuple(out["raw"].shape) == (1, 2, 16, 16) and str(out["raw"].dtype) == "torch.float16"
    with pytest.raises(ValueError, match="one loader writes one output key"):
        BioIOImageLoaderd(keys=["raw", "seg"])
    with pytest.raises(ValueError, match="disagree"):
        BioIOImageLoaderd(keys=["raw"], out_key="image")


def test_monai_load_imaged_with_a_tlcore_reader_names_tlcore_loader(store: Path) -> None:
    from monai.transforms import LoadImaged as MonaiLoadImaged

    from tlcore import OmeZarrReader

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MONAI: "Preferably the reader should inherit ..."
        load = MonaiLoadImaged(keys="raw", reader=OmeZarrReader(level=0, lazy_load=True))
    with pytest.raises(Exception) as info:
        Compose([load])({"raw": str(store)})
    text = _chain(info.value)
    assert "MONAI's LoadImaged cannot use OmeZarrReader" in text
    assert "use tlcore.LoadImaged" in text and "cannot find a suitable reader" not in text


def test_loader_errors_name_the_argument_the_user_passed(store: Path) -> None:
    from tlcore import OmeZarrReader

    with pytest.raises(Exception) as info:
        LoadImaged(keys="raw", reader=OmeZarrReader())({"raw": str(store)})
    text = _chain(info.value)
    assert "has 2 timepoints" in text and "OmeZarrReader(timepoint=...)" in text
    assert "LoadLazyd" not in text


def test_the_same_transforms_after_compute_run(store: Path) -> None:
    pipeline = Compose([
        BioIOImageLoaderd(dtype="float32"),
        RandSpatialCropd(keys="raw", roi_size=(2, 16, 16), random_size=False),
        ComputeDaskd(keys="raw"),
        NormalizeIntensityd(keys="raw"),
        RandFlipd(keys="raw", prob=1.0),
        EnsureTyped(keys="raw"),
    ])  # fmt: skip
    assert pipeline({"original_path": str(store), "T": 1})["raw"].shape == (1, 2, 16, 16)


def test_user_transforms_and_other_keys_are_left_alone(store: Path) -> None:
    def dask_aware(d: dict[str, Any]) -> dict[str, Any]:
        return {**d, "raw": d["raw"][:, :, :8]}

    pipeline = Compose([
        LoadLazyd(keys="raw"),
        dask_aware,
        NormalizeIntensityd(keys="other"),  # not a lazy key
        ComputeDaskd(keys="raw"),
    ])  # fmt: skip
    out = pipeline({"original_path": str(store), "T": 0, "other": __import__("numpy").ones(4)})
    assert out["raw"].shape == (1, 4, 8, 64)


def test_load_imaged_is_guarded_too(store: Path) -> None:
    pipeline = Compose([LoadImaged(keys="raw"), RandFlipd(keys="raw"), ComputeDaskd(keys="raw")])
    with pytest.raises(Exception) as info:
        pipeline({"raw": str(store), "T": 0})
    assert "RandFlipd (step 1 of the pipeline)" in _chain(info.value)


def test_eager_output_is_not_guarded(store: Path) -> None:
    pipeline = Compose([BioIOImageLoaderd(lazy_load=False), RandFlipd(keys="raw", prob=1.0)])
    assert pipeline({"original_path": str(store), "T": 0})["raw"].shape == (1, 4, 64, 64)


def test_whole_image_compute_warns_with_bytes(store: Path) -> None:
    sample = LoadLazyd(keys="raw")({"original_path": str(store), "T": 0})
    with pytest.warns(WholeImageWarning, match=r"whole of .*: 32,768 bytes"):
        ComputeDaskd(keys="raw", warn_bytes=1000)(sample)
    cropped = RandSpatialCropd(keys="raw", roi_size=(4, 64, 32), random_size=False)(sample)
    with warnings.catch_warnings():
        warnings.simplefilter("error", WholeImageWarning)
        ComputeDaskd(keys="raw", warn_bytes=1000)(cropped)  # cropped: no warning
        ComputeDaskd(keys="raw")(sample)  # under the default 256 MiB: no warning


def test_error_type() -> None:
    assert issubclass(LazyPipelineError, TypeError)
