"""``tlcore predict``: the command-line face of :func:`tlcore.predict`. Parsing imports only
the standard library; torch loads when the command runs."""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["add_parser", "run"]


def _zyx(text: str) -> tuple[int, int, int]:
    try:
        parts = [int(p) for p in text.replace("x", ",").split(",")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts *= 3
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"expected Z,Y,X (or one number for all), got {text!r}")
    return parts[0], parts[1], parts[2]


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    """Add ``predict`` to the ``tlcore`` command's subparsers."""
    p = sub.add_parser(
        "predict",
        help="apply a model to every voxel of a timelapse, lazily, into OME-Zarr",
        description=(
            "Read tiles of INPUT lazily (any format a reader plugin opens), predict them in "
            "batches and write each output chunk once, blended, into an OME-Zarr 0.5 image "
            "with the input's scale, origin, time axis and units. Memory stays flat; "
            "--resume finishes an interrupted run. Example: tlcore predict movie.nd2 "
            "--model mypkg.nets:build_unet --checkpoint last.ckpt --out pred.ome.zarr "
            "--tile 16,256,256 --halo 4,16,16"
        ),
        parents=[common],
    )
    p.add_argument("input", help="local path or URL of the timelapse")
    p.add_argument("--model", required=True, metavar="MODULE:CALLABLE",
                   help="an importable callable returning a torch.nn.Module")  # fmt: skip
    p.add_argument("--out", required=True, help="the OME-Zarr store to write (OUT.ome.zarr)")
    p.add_argument("--checkpoint", default=None, help="a state dict or Lightning checkpoint")
    p.add_argument("--scene", default="0", help="scene index or id (default 0)")
    p.add_argument("--level", type=int, default=0, help="input resolution level")
    p.add_argument("--reader", default=None, help="force an input reader by name")
    p.add_argument("--channels", default=None, help="input channels fed to the model: 0,1")
    p.add_argument("--time", default=None, metavar="START:STOP", help="frames to predict")
    p.add_argument(
        "--tile",
        type=_zyx,
        default=(32, 256, 256),
        metavar="Z,Y,X",
        help="core of each tile (default 32,256,256, clipped to the image)",
    )
    p.add_argument(
        "--halo",
        type=_zyx,
        default=(4, 16, 16),
        metavar="Z,Y,X",
        help="context read around a tile and cut off its prediction; at least the "
        "model's receptive field radius for an exact result (default 4,16,16)",
    )
    p.add_argument(
        "--overlap",
        type=_zyx,
        default=(0, 0, 0),
        metavar="Z,Y,X",
        help="width over which neighbouring tiles are blended (default 0)",
    )
    p.add_argument("--blend", default="gaussian", choices=("gaussian", "linear", "none"))
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--num-workers", type=int, default=2, help="DataLoader workers reading")
    p.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default: cuda if any)")
    p.add_argument("--dtype", default="float32", help="output dtype (default float32)")
    p.add_argument(
        "--chunks",
        type=_zyx,
        default=None,
        metavar="Z,Y,X",
        help="output chunk (default: the tile); one timepoint and channel each",
    )
    p.add_argument(
        "--shards",
        type=_zyx,
        default=None,
        metavar="Z,Y,X",
        help="zarr v3 shards, multiples of the chunks",
    )
    p.add_argument("--levels", type=int, default=1, help="pyramid levels (halving Y, X)")
    p.add_argument("--resume", action="store_true", help="finish an interrupted run")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``tlcore predict``; exit status 0."""
    from tlcore.prediction.run import predict

    scene: Any = int(args.scene) if args.scene.lstrip("-").isdigit() else args.scene
    report = predict(
        args.model, args.input, args.out, checkpoint=args.checkpoint, scene=scene,
        level=args.level, channels=args.channels, time=args.time, tile=args.tile,
        halo=args.halo, overlap=args.overlap, blend=args.blend, batch_size=args.batch_size,
        num_workers=args.num_workers, device=args.device, resume=args.resume,
        overwrite=args.overwrite, dtype=args.dtype, chunks=args.chunks, shards=args.shards,
        levels=args.levels, reader=args.reader,
        progress=False if args.no_progress or args.json else None,
    )  # fmt: skip
    if args.json:
        print(json.dumps(report))
    else:
        rss = report["peak_rss_bytes"]
        print(
            f"wrote {report['out']}: {report['tiles']} tiles predicted, "
            f"{report['tiles_skipped']} skipped (resumed), {report['seconds']:.1f} s, "
            f"{report['voxels_per_s'] or 0:,.0f} voxels/s"
            + ("" if rss is None else f", peak RSS {rss / 2**20:.0f} MiB")
        )
    return 0
