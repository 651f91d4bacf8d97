"""The ``tlcore`` command: ``plugins``, ``info``, ``validate``, ``preview``, ``demo``,
``new-plugin`` and ``bench``.

Only the standard library and the registry are imported up front; ``info`` imports dask through
the reader it uses, ``demo`` imports torch and MONAI. ``--debug`` (or ``TLCORE_DEBUG=1``) shows
the traceback behind an error, the plugin's own frames included.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any

from tlcore import vocabulary
from tlcore.errors import TlcoreError


def _plugins(args: argparse.Namespace) -> int:
    from tlcore.readers.registry import get_registry

    records = get_registry().records()
    if args.json:
        print(json.dumps([r.as_dict() for r in records], indent=2))
        return 0
    if not records:
        print("no tlcore reader plugins installed; try: pip install tlcore-ome-zarr")
        return 0
    rows = [("NAME", "DISTRIBUTION", "VERSION", "EXTENSIONS", "STATUS")]
    for r in records:
        status = r.status if r.status != "failed" else f"failed: {r.error}"
        rows.append(
            (r.name, r.distribution or "-", r.version or "-", " ".join(r.extensions) or "-", status)
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths)) + "  " + row[4])
    # A bridge reader says in its description what it reaches (the bioio readers it found).
    for r in records:
        if r.info is not None and r.info.extensions == ("*",) and r.info.description:
            print(f"{r.name}: {r.info.description}")
    return 0


def describe(path: str, reader: str | None = None) -> dict[str, Any]:
    """Everything ``tlcore info --json`` prints about a file, as a dict."""
    import tlcore
    from tlcore.io.source import Source
    from tlcore.readers.registry import get_registry

    source = Source.from_any(path)
    chosen = get_registry().select(source, reader)
    scenes = []
    via: str | None = None
    for index, scene_id in enumerate(tlcore.list_scenes(source, reader=chosen)):
        image = tlcore.open_lazy(source, scene=index, reader=chosen)
        # A bridge names the library reader it went through: "bioio (bioio-dv)".
        via = via or image.metadata.get("via")
        levels = tlcore.levels(source, scene=index, reader=chosen)
        axis = image.time_axis
        scenes.append(
            {
                "id": scene_id,
                "name": image.scene_name,
                "shape": list(image.shape),
                "dtype": str(image.dtype),
                "chunks": [int(c) for c in image.data.chunksize],
                "levels": [list(lv.shape) for lv in levels],
                "downsampling": [list(lv.downsampling) for lv in levels],
                "timestamps": list(axis.timestamps) if axis.timestamps is not None else None,
                "interval": axis.interval,
                "channel_names": list(image.channel_names),
                "pixel_sizes": image.pixel_sizes._asdict(),
            }
        )
    info: dict[str, Any] = {"path": source.uri, "reader": chosen, "scenes": scenes}
    if via:
        info["via"] = via
    files = source.glob_matches()
    if files is not None:
        info["files"] = len(files)
    return info


def _fmt(value: float | None, unit: str) -> str:
    return "?" if value is None else f"{value:g} {unit}"


def _info(args: argparse.Namespace) -> int:
    info = describe(args.path, args.reader)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    reader = info["reader"] + (f" ({info['via']})" if info.get("via") else "")
    print(f"{info['path']}\n  reader: {reader}\n  scenes: {len(info['scenes'])}")
    if "files" in info:
        print(f"  files: {info['files']} matched the pattern")
    for i, s in enumerate(info["scenes"]):
        name = f" ({s['name']})" if s["name"] and s["name"] != s["id"] else ""
        print(f"  [{i}] {s['id']}{name}")
        print(f"      shape TCZYX {tuple(s['shape'])}  {s['dtype']}  chunks {tuple(s['chunks'])}")
        for lv, (shape, down) in enumerate(zip(s["levels"], s["downsampling"])):
            print(f"      level {lv}: {tuple(shape)}  downsampling {tuple(down)}")
        stamps = s["timestamps"]
        t_desc = f"{s['shape'][0]} timepoints, interval {_fmt(s['interval'], 's')}"
        if stamps:
            t_desc += f", timestamps {stamps[0]:g}..{stamps[-1]:g} s"
        print(f"      time: {t_desc}")
        ps = {k: "?" if v is None else f"{v:g}" for k, v in s["pixel_sizes"].items()}
        print(f"      pixel size (um): z {ps['z']}, y {ps['y']}, x {ps['x']}")
        print(f"      channels: {', '.join(s['channel_names'])}")
        if args.stats:  # #22: whole-image statistics from a small sample
            from tlcore.statistics import image_statistics

            stats = image_statistics(args.path, scene=i)
            print("      " + stats.summary().replace("\n", "\n      "))
    return 0


def datamodule_from_config(config_path: str, manifest: str) -> Any:
    """The datamodule a Hydra YAML describes (``_target_: tlcore.RandomTimelapseDatamodule``,
    ``transforms:``...), with ``manifest`` as its ``path`` and no worker processes."""
    import hydra.utils
    from omegaconf import OmegaConf

    config = OmegaConf.load(config_path)
    if "_target_" not in config and "data" in config:  # the lazy-loading guide nests it
        config = config.data
    config.path = manifest
    config.num_workers = 0
    if "persistent_workers" in config:
        config.persistent_workers = False
    try:
        return hydra.utils.instantiate(config)
    except Exception as exc:  # Hydra wraps the real error: show that one, and where
        cause: BaseException = exc
        while cause.__cause__ is not None:
            cause = cause.__cause__
        raise ConfigError(
            f"{config_path}: cannot build the datamodule: {type(cause).__name__}: {cause} "
            f"({str(exc).splitlines()[0]})"
        ) from exc


class ConfigError(TlcoreError, ValueError):
    """A datamodule YAML that Hydra cannot instantiate."""


def _validate(args: argparse.Namespace) -> int:
    from tlcore.sampling.manifest import Columns
    from tlcore.validation import validate_manifest

    if args.config:
        datamodule = datamodule_from_config(args.config, args.manifest)
        report = datamodule.check(required=("train",))
        print(json.dumps(report.as_dict(), indent=2) if args.json else report.format())
        return 0 if report.ok else 1
    images = dict(pair.split("=", 1) for pair in (args.image_column or []))  # #22: pairs
    channels = dict(pair.split("=", 1) for pair in (args.channel_column or []))
    columns = Columns(
        split_column=None if args.split_column == "" else args.split_column,
        images={k: {"path": v, **({"channel": channels[k]} if k in channels else {})}
                for k, v in images.items()},
    )  # fmt: skip
    report = validate_manifest(
        args.manifest,
        columns,
        num_timepoints=args.num_timepoints,
        patch_shape=args.patch_shape,
        spatial_dims=args.spatial_dims,
        batch_size=args.batch_size,
        max_workers=args.workers,
        progress=not args.json and not args.no_progress,  # drawn only on a terminal
    )
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(report.format())
    return 0 if report.ok else 1


def _preview(args: argparse.Namespace) -> int:
    from tlcore.cli.preview import preview

    kwargs: dict[str, Any] = {}
    if args.config:
        kwargs["datamodule"] = datamodule_from_config(args.config, args.manifest)
    else:
        kwargs.update(
            split_column=None if args.split_column == "" else args.split_column,
            num_timepoints=args.num_timepoints,
            timepoint_sampling=args.timepoint_sampling,
            spatial_dims=args.spatial_dims,
            patch_shape=args.patch_shape,
            seed=args.seed,
        )
        images = dict(pair.split("=", 1) for pair in (args.image_column or []))  # #22: pairs
        if images:  # each sample's images side by side
            channels = dict(pair.split("=", 1) for pair in (args.channel_column or []))
            kwargs["image_columns"] = {vocabulary.IMAGE: "path", **images}
            kwargs["channel_columns"] = {vocabulary.IMAGE: "channel", **channels}
    out = preview(args.manifest, args.out, n=args.n, split=args.split, epoch=args.epoch, **kwargs)
    print(f"wrote {out}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from tlcore.cli.demo import run_demo

    return run_demo(out_dir=args.out, n_crops=args.crops, roi=tuple(args.roi), seed=args.seed)


def _new_plugin(args: argparse.Namespace) -> int:
    from tlcore.templates import write_plugin

    try:
        root = write_plugin(args.name, args.dir)
    except ValueError as exc:
        print(f"tlcore: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {root}")
    print(f"next:\n  cd {root}\n  pip install -e '.[test]'\n  pytest")
    return 0


def _print_load_tracebacks() -> None:
    """Import each failed plugin again, for the traceback the registry keeps only as a line."""
    from importlib.metadata import entry_points

    from tlcore.readers.registry import ENTRY_POINT_GROUP, get_registry

    failed = {r.name for r in get_registry().records() if r.status == "failed"}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in failed:
            try:
                ep.load().reader_info()
            except Exception as exc:
                print(f"--- plugin {ep.name!r} ({ep.value}) failed to load:", file=sys.stderr)
                traceback.print_exception(exc, file=sys.stderr)


def _debug_wanted(args: argparse.Namespace) -> bool:
    env = os.environ.get("TLCORE_DEBUG", "").strip().lower()
    return bool(getattr(args, "debug", False)) or env not in ("", "0", "false", "no")


def build_parser() -> argparse.ArgumentParser:
    from tlcore import __version__

    parser = argparse.ArgumentParser(
        prog="tlcore",
        description=(
            "Train on microscopy timelapses (ND2, CZI, LIF, OME-TIFF, TIFF, OME-Zarr; local or "
            "in the cloud) read lazily, in place. Before training: `tlcore validate` checks a "
            "manifest and prints the cost, `tlcore preview` shows the crops training will draw."
        ),
        epilog=(
            "examples:\n"
            "  tlcore info movie.nd2\n"
            "  tlcore validate manifest.csv --patch-shape 16 128 128\n"
            "  tlcore preview manifest.csv --out preview.png --patch-shape 16 128 128\n"
            "  tlcore bench memory --json"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"tlcore {__version__}")
    debug_help = "show tracebacks (plugin errors included); or set TLCORE_DEBUG=1"
    parser.add_argument("--debug", action="store_true", help=debug_help)
    # Also accepted after the command (`tlcore info --debug x.nd2`); SUPPRESS keeps a value
    # given before the command.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "plugins",
        help="list the installed reader plugins",
        description=(
            "List the reader plugins found through the tlcore.readers entry points: name, "
            "distribution, version, extensions and status (a plugin that failed to load is "
            "listed with its error; --debug shows the traceback). Example: tlcore plugins --json"
        ),
        parents=[common],
    )
    p.add_argument("--json", action="store_true", help="print one JSON list")
    p.set_defaults(func=_plugins)

    p = sub.add_parser(
        "info",
        help="describe a file: reader, scenes, levels, time, pixels",
        description=(
            "Open a file's metadata (no pixels) and print the reader that opens it, its scenes, "
            "the shape, dtype and chunks of every level, the time axis (timestamps in seconds "
            "where recorded) and pixel sizes. Exits 2, naming the file and what to install or "
            "fix, when nothing can open it. Example: tlcore info s3://bucket/movie.ome.zarr"
        ),
        parents=[common],
    )
    p.add_argument("path", help="local path or URL (s3://...)")
    p.add_argument("--reader", default=None, help="force a reader by name")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--stats",
        action="store_true",
        help="per-channel percentiles, mean, std from a small sample (cached)",
    )
    p.set_defaults(func=_info)

    p = sub.add_parser(
        "validate",
        help="check every row of a manifest against its files, and estimate training costs",
        description=(
            "Check every row of a manifest against its file (it opens, the scene, channels, "
            "level and time range exist, a first chunk decodes) and report every problem at "
            "once with its row, column and fix; exit 1 if there is any. When all is well, print "
            "what training costs per split. With --config DATA.yaml, the datamodule's settings "
            "are used and each split's transforms are dry-run on metadata (no pixels read): "
            "whatever would stop the first batches is reported too. Examples: "
            "tlcore validate manifest.csv --patch-shape 16 128 128 --num-timepoints 3; "
            "tlcore validate manifest.csv --config configs/data/denoise_3d.yaml"
        ),
        parents=[common],
    )
    p.add_argument("manifest", help="manifest CSV/TSV/Parquet path or URL")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--config",
        default=None,
        metavar="DATA.yaml",
        help=(
            "a datamodule YAML (Hydra: _target_: tlcore.RandomTimelapseDatamodule, "
            "transforms...): its settings replace the options below, MANIFEST replaces its "
            "path, and each split's transforms are dry-run on the files' layouts"
        ),
    )
    p.add_argument("--split-column", default="split", help="'' puts every row in train")
    p.add_argument("--num-timepoints", type=int, default=1)
    p.add_argument("--patch-shape", type=int, nargs="+", default=None, metavar="N")
    p.add_argument("--spatial-dims", type=int, default=3, choices=(2, 3))
    p.add_argument("--batch-size", type=int, default=1, help="for the worker memory estimate")
    p.add_argument("--workers", type=int, default=8, help="files opened at once")
    p.add_argument(
        "--image-column", action="append", metavar="KEY=COLUMN",
        help="another image of each row (a pair's target): target=target_path; repeatable",
    )  # fmt: skip
    p.add_argument("--channel-column", action="append", metavar="KEY=COLUMN",
                   help="that image's channel column: target=target_channel")  # fmt: skip
    p.add_argument(
        "--no-progress", action="store_true", help="no progress bar (drawn only on a terminal)"
    )
    p.set_defaults(func=_validate)

    p = sub.add_parser(
        "preview",
        help="a PNG montage of the crops training would draw (max over Z), to check first",
        description=(
            "Draw the first N samples of an epoch exactly as the datamodule would (same seed, "
            "sampling and transforms) and save them as a labelled montage. Example: "
            "tlcore preview manifest.csv --out preview.png --patch-shape 16 128 128"
        ),
        parents=[common],
    )
    p.add_argument("manifest", help="manifest CSV/TSV/Parquet path or URL")
    p.add_argument("--out", default="preview.png", help="the PNG to write")
    p.add_argument("-n", type=int, default=16, help="number of samples (tiles)")
    p.add_argument("--split", default="train", choices=("train", "val", "test"))
    p.add_argument("--epoch", type=int, default=0)
    p.add_argument("--config", default=None, help="a datamodule YAML (Hydra): its transforms")
    p.add_argument("--split-column", default="split", help="'' puts every row in train")
    p.add_argument("--num-timepoints", type=int, default=1)
    p.add_argument("--timepoint-sampling", default="random",
                   choices=("random", "sequential", "uniform"))  # fmt: skip
    p.add_argument("--spatial-dims", type=int, default=3, choices=(2, 3))
    p.add_argument("--patch-shape", type=int, nargs="+", default=None, metavar="N")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--image-column", action="append", metavar="KEY=COLUMN",
                   help="another image of each row, shown beside: target=target_path")  # fmt: skip
    p.add_argument("--channel-column", action="append", metavar="KEY=COLUMN",
                   help="that image's channel column: target=target_channel")  # fmt: skip
    p.set_defaults(func=_preview)

    p = sub.add_parser(
        "demo",
        help="write a synthetic timelapse, read random crops and train through the datamodule",
        description=(
            "Write a synthetic OME-Zarr timelapse, read random crops lazily and the eager way, "
            "then train a small 3D network through RandomTimelapseDatamodule both ways; print "
            "speed and memory side by side. What `make demo` runs. "
            "Example: tlcore demo --out /tmp/d"
        ),
        parents=[common],
    )
    p.add_argument("--out", default="demo-output", help="folder for the synthetic data")
    p.add_argument("--crops", type=int, default=200, help="number of random crops to read")
    p.add_argument("--roi", type=int, nargs=3, default=[16, 128, 128], metavar=("Z", "Y", "X"))
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_demo)

    p = sub.add_parser(
        "new-plugin",
        help="write a reader plugin distribution that passes the conformance kit as it is",
        description=(
            "Write tlcore-NAME/: a pyproject with the tlcore.readers entry point, a reader "
            "built on ArrayReader (a folder of .npy files, one per timepoint, memory-mapped) and "
            "a conformance test that passes as written; then replace the reading code. "
            "Example: tlcore new-plugin my-format --dir plugins"
        ),
        parents=[common],
    )
    p.add_argument("name", help="reader name: lower-case letters, digits, dashes (my-format)")
    p.add_argument("--dir", default=".", help="folder to write tlcore-NAME/ into (default: .)")
    p.set_defaults(func=_new_plugin)

    from tlcore.cli import bench
    from tlcore.prediction import cli as prediction_cli

    bench.register(sub, common)
    prediction_cli.add_parser(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = _debug_wanted(args)
    if debug:  # training code (worker errors) reads it too
        os.environ["TLCORE_DEBUG"] = "1"
    try:
        code: int = args.func(args)
        if debug and args.command == "plugins":
            _print_load_tracebacks()
        return code
    except (
        TlcoreError,
        FileNotFoundError,
        FileExistsError,
        PermissionError,
        IsADirectoryError,
    ) as exc:
        if debug:  # the chain shows the plugin's own exception and frames
            traceback.print_exception(exc, file=sys.stderr)
        print(f"tlcore: error: {exc}", file=sys.stderr)
        if not debug and isinstance(exc, TlcoreError) and exc.__cause__ is not None:
            print("(run with --debug or TLCORE_DEBUG=1 for the traceback)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `tlcore info --json x | head`: the reader left, not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python's exit-time flush must not raise again
        return 141


if __name__ == "__main__":
    sys.exit(main())
