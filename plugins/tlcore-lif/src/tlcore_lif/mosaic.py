"""Where each tile of a LIF tile scan goes in the stitched plane.

The rule is bioio-lif's (2.0.1), so that a stitched tlcore image equals the one bioio users
know: the tiles sit on the grid their FieldX/FieldY indices give, with FieldX and FieldY
swapped (bioio's default ``is_x_and_y_swapped=True``), field (0, 0) at the bottom right, and
neighbouring tiles overlapping by one pixel (each tile but those of the last grid row/column
loses its first row/column). Stage positions are not used for placement (they are reported in
the image metadata); a scan whose tiles do not fill a full grid cannot be stitched this way and
must be opened as tiles.
"""

from __future__ import annotations

from dataclasses import dataclass

from tlcore_lif.metadata import Tile


@dataclass(frozen=True)
class Placement:
    """Tile ``tile``'s pixels ``[src_y:src_y+height, src_x:src_x+width]`` go to
    ``[dst_y:dst_y+height, dst_x:dst_x+width]`` of the stitched plane."""

    tile: int
    dst_y: int
    dst_x: int
    src_y: int
    src_x: int
    height: int
    width: int


def stitch_plan(
    tiles: tuple[Tile, ...], tile_h: int, tile_w: int
) -> tuple[tuple[Placement, ...], tuple[int, int]]:
    """The placements of every tile and the stitched (height, width).

    Raises:
        ValueError: the tiles do not fill a full grid (say why).
    """
    n_field_x = max(t.field_x for t in tiles) + 1
    rows, cols = n_field_x, len(tiles) // n_field_x  # swapped, as bioio-lif does
    cells = {(t.field_x, t.field_y) for t in tiles}  # (row, column) after the swap
    full = {(r, c) for r in range(rows) for c in range(cols)}
    if len(cells) != len(tiles) or cells != full:
        raise ValueError(
            f"its {len(tiles)} tiles do not fill a {rows} x {cols} grid of FieldX/FieldY "
            "positions, so they cannot be stitched"
        )
    placements = []
    for index, tile in enumerate(tiles):
        row, col = tile.field_x, tile.field_y
        grid_r, grid_c = rows - 1 - row, cols - 1 - col  # field (0, 0) at the bottom right
        src_y = 0 if row == rows - 1 else 1
        src_x = 0 if col == cols - 1 else 1
        dst_y = 0 if grid_r == 0 else tile_h + (grid_r - 1) * (tile_h - 1)
        dst_x = 0 if grid_c == 0 else tile_w + (grid_c - 1) * (tile_w - 1)
        placements.append(
            Placement(index, dst_y, dst_x, src_y, src_x, tile_h - src_y, tile_w - src_x)
        )
    height = tile_h + (rows - 1) * (tile_h - 1)
    width = tile_w + (cols - 1) * (tile_w - 1)
    return tuple(placements), (height, width)
