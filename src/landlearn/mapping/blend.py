"""Tile grid, blending weights and the streaming accumulator of a scene map.

Windows of ``tile`` px start every ``stride = tile - overlap`` px from ``-margin`` (``margin =
overlap // 2``), so scene edges sit inside a window, on reflection-padded context, never on a
window's border. Overlapping predictions are averaged with per-window weights (cosine or linear
ramp over the overlap, flat in the middle) and normalised by the summed weights.

:class:`StreamingBlender` holds only what is in flight: the ``overlap`` rows shared with the next
row of windows (``2 × C × overlap × width``) and one window of columns (``C × tile × tile``).
Memory grows with tile size × scene width, never with the scene's area. Values are added in the
same order as a whole-scene accumulator would add them, so both give the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = [
    "BLENDS",
    "Block",
    "BlockGrid",
    "StreamingBlender",
    "TileGrid",
    "reflect_index",
    "weight_window",
]

BLENDS = ("cosine", "linear", "none")

# Called with (y0, x0, acc (C, h, w), wsum (h, w)) for each block that is final; y0/x0 in scene px.
BlockSink = Callable[[int, int, np.ndarray, np.ndarray], None]


def reflect_index(index: np.ndarray, size: int) -> np.ndarray:
    """Map any integer positions into ``[0, size)`` by mirror reflection (numpy ``reflect``)."""
    if size == 1:
        return np.zeros_like(index)
    period = 2 * (size - 1)
    r = np.abs(index) % period
    return np.where(r >= size, period - r, r)


def _ceil_to(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


@dataclass(frozen=True)
class TileGrid:
    """Where the windows of a scene lie; all positions in scene pixels (negative = padding)."""

    height: int
    width: int
    tile_h: int
    tile_w: int
    overlap: int

    @classmethod
    def build(cls, height: int, width: int, tile: int, overlap: int, multiple: int = 1) -> TileGrid:
        """A grid for a scene; tiles shrink (to a multiple of ``multiple``) on small scenes."""
        margin = overlap // 2
        tile_h = min(tile, max(_ceil_to(height + 2 * margin, multiple), overlap + multiple))
        tile_w = min(tile, max(_ceil_to(width + 2 * margin, multiple), overlap + multiple))
        return cls(height, width, tile_h, tile_w, overlap)

    @property
    def margin(self) -> int:
        """Reflection-padded pixels before the first scene row / column."""
        return self.overlap // 2

    @property
    def stride_y(self) -> int:
        """Row step between windows."""
        return self.tile_h - self.overlap

    @property
    def stride_x(self) -> int:
        """Column step between windows."""
        return self.tile_w - self.overlap

    def _count(self, size: int, tile: int, stride: int) -> int:
        return 1 + max(0, math.ceil((size + 2 * self.margin - tile) / stride))

    @property
    def rows(self) -> int:
        """Number of rows of windows."""
        return self._count(self.height, self.tile_h, self.stride_y)

    @property
    def cols(self) -> int:
        """Number of windows per row."""
        return self._count(self.width, self.tile_w, self.stride_x)

    def __len__(self) -> int:
        return self.rows * self.cols

    def own(self, index: int) -> tuple[slice, slice]:
        """The part of window ``index`` (window px) that no earlier window owns.

        Windows own ``stride`` rows / columns each from the first scene pixel on (the last
        to the scene's edge), so the owned parts tile the scene exactly once: counts made over
        them count every scene pixel once, however much windows overlap.
        """
        r, c = divmod(index, self.cols)
        return (
            self._own(r, self.rows, self.stride_y, self.height),
            self._own(c, self.cols, self.stride_x, self.width),
        )

    def _own(self, i: int, n: int, stride: int, size: int) -> slice:
        start = i * stride
        stop = size if i == n - 1 else min((i + 1) * stride, size)
        return slice(self.margin, self.margin + max(stop - start, 0))

    def y0(self, r: int) -> int:
        """Top row of window row ``r`` (scene px)."""
        return -self.margin + r * self.stride_y

    def x0(self, c: int) -> int:
        """Left column of window column ``c`` (scene px)."""
        return -self.margin + c * self.stride_x

    @property
    def padded_width(self) -> int:
        """Width of the padded frame the windows cover."""
        return (self.cols - 1) * self.stride_x + self.tile_w

    @property
    def bounds(self) -> tuple[int, int, int, int]:
        """``(y0, y1, x0, x1)`` of the scene part this grid's blender emits: all of it."""
        return 0, self.height, 0, self.width

    def full_index(self, index: int) -> int:
        """The window's index in the whole scene's grid (itself here)."""
        return index


@dataclass(frozen=True)
class Block:
    """A rectangle of a scene, in scene px, mapped as one unit of work."""

    row_off: int
    col_off: int
    height: int
    width: int

    @classmethod
    def tiling(cls, height: int, width: int, size: int) -> list[Block]:
        """Blocks of at most ``size`` px on a side covering a ``height`` × ``width`` scene."""
        if size < 1:
            raise ValueError(f"block size must be >= 1, got {size}")
        return [
            cls(y, x, min(size, height - y), min(size, width - x))
            for y in range(0, height, size)
            for x in range(0, width, size)
        ]


@dataclass(frozen=True)
class BlockGrid:
    """The windows of the whole scene's grid that reach ``block``, as a grid of their own.

    Blending them in the same row-major order gives every pixel of the block the same sum of
    the same weighted windows as the whole-scene map (so blocks join without seams); the
    blender emits only the block. Window positions, reflection padding (``height`` /
    ``width`` stay the scene's) and the owned parts (:meth:`own`, clipped to the block) are
    those of the whole-scene grid.
    """

    full: TileGrid
    block: Block
    r0: int
    r1: int
    c0: int
    c1: int

    @classmethod
    def build(cls, full: TileGrid, block: Block) -> BlockGrid:
        """The windows of ``full`` overlapping ``block``."""
        b = block
        if b.height < 1 or b.width < 1 or b.row_off < 0 or b.col_off < 0:
            raise ValueError(f"empty or negative block {b}")
        if b.row_off + b.height > full.height or b.col_off + b.width > full.width:
            raise ValueError(f"block {b} reaches outside the {full.height}x{full.width} scene")
        rows = [
            r
            for r in range(full.rows)
            if full.y0(r) < b.row_off + b.height and full.y0(r) + full.tile_h > b.row_off
        ]
        cols = [
            c
            for c in range(full.cols)
            if full.x0(c) < b.col_off + b.width and full.x0(c) + full.tile_w > b.col_off
        ]
        return cls(full, block, rows[0], rows[-1] + 1, cols[0], cols[-1] + 1)  # fmt: skip

    height = property(lambda self: self.full.height)
    width = property(lambda self: self.full.width)
    tile_h = property(lambda self: self.full.tile_h)
    tile_w = property(lambda self: self.full.tile_w)
    overlap = property(lambda self: self.full.overlap)
    margin = property(lambda self: self.full.margin)
    stride_y = property(lambda self: self.full.stride_y)
    stride_x = property(lambda self: self.full.stride_x)

    @property
    def rows(self) -> int:
        """Rows of windows reaching the block."""
        return self.r1 - self.r0

    @property
    def cols(self) -> int:
        """Windows per row reaching the block."""
        return self.c1 - self.c0

    def __len__(self) -> int:
        return self.rows * self.cols

    def y0(self, r: int) -> int:
        """Top row of this grid's window row ``r`` (scene px)."""
        return self.full.y0(self.r0 + r)

    def x0(self, c: int) -> int:
        """Left column of this grid's window column ``c`` (scene px)."""
        return self.full.x0(self.c0 + c)

    @property
    def padded_width(self) -> int:
        """Width of the frame this grid's windows cover."""
        return (self.cols - 1) * self.stride_x + self.tile_w

    @property
    def bounds(self) -> tuple[int, int, int, int]:
        """``(y0, y1, x0, x1)`` of the block: what the blender emits."""
        b = self.block
        return b.row_off, b.row_off + b.height, b.col_off, b.col_off + b.width

    def full_index(self, index: int) -> int:
        """The window's index in the whole scene's grid."""
        r, c = divmod(index, self.cols)
        return (self.r0 + r) * self.full.cols + self.c0 + c

    def own(self, index: int) -> tuple[slice, slice]:
        """The whole-scene grid's owned part of the window, clipped to the block (window px)."""
        r, c = divmod(index, self.cols)
        ys, xs = self.full.own(self.full_index(index))
        y_top, x_left = self.y0(r), self.x0(c)
        ya, yb, xa, xb = self.bounds
        return _clip(ys, y_top, ya, yb), _clip(xs, x_left, xa, xb)


def _clip(part: slice, origin: int, lo: int, hi: int) -> slice:
    """``part`` (window px of a window at scene px ``origin``) within scene px ``[lo, hi)``."""
    start = max(origin + int(part.start), lo) - origin
    stop = min(origin + int(part.stop), hi) - origin
    return slice(start, max(stop, start))


def weight_window(tile_h: int, tile_w: int, overlap: int, kind: str = "cosine") -> np.ndarray:
    """(tile_h, tile_w) float32 weights: 1 in the middle, ramping down over ``overlap`` px.

    Every weight is > 0, so a pixel seen by any window gets a value.
    """
    if kind not in BLENDS:
        raise ValueError(f"blend must be one of {BLENDS}, got {kind!r}")

    def ramp(n: int) -> np.ndarray:
        if kind == "none" or overlap <= 0:
            return np.ones(n, dtype=np.float64)
        pos = np.arange(n, dtype=np.float64) + 0.5
        t = np.clip(np.minimum(pos, n - pos) / overlap, 0.0, 1.0)
        return t if kind == "linear" else np.sin(0.5 * np.pi * t) ** 2

    return np.outer(ramp(tile_h), ramp(tile_w)).astype(np.float32)


class StreamingBlender:
    """Accumulate weighted windows in row-major order; emit each block once it is final.

    Feed every window of ``grid`` in order (``values=None`` for a window that adds nothing,
    e.g. all no-data). Each window's final part goes to ``sink`` clipped to the scene; blocks
    arrive row by row, left to right. ``row_done(r)`` is called after row ``r`` is complete.
    """

    def __init__(
        self,
        grid: TileGrid | BlockGrid,
        channels: int,
        weight: np.ndarray,
        sink: BlockSink,
        row_done: Callable[[int], None] | None = None,
    ) -> None:
        self.grid, self.channels, self.weight = grid, channels, weight
        self.sink, self.row_done = sink, row_done
        th, tw, ov, wp = grid.tile_h, grid.tile_w, grid.overlap, grid.padded_width
        # channel C is the weight sum; carry = rows shared with the next row of windows
        self._carry = np.zeros((channels + 1, ov, wp), np.float32)
        self._next = np.zeros_like(self._carry)
        self._band = np.zeros((channels + 1, th, tw), np.float32)
        self._next_index = 0

    def add(self, index: int, values: np.ndarray | None, valid: np.ndarray | None = None) -> None:
        """Add window ``index`` (row-major). ``values``: (C, th, tw), or (C,) painted flat."""
        if index != self._next_index:
            raise RuntimeError(f"window {index} out of order (expected {self._next_index})")
        self._next_index += 1
        g = self.grid
        r, c = divmod(index, g.cols)
        th, tw, ov, sy, sx = g.tile_h, g.tile_w, g.overlap, g.stride_y, g.stride_x
        px = c * sx  # left column in the padded frame
        band = self._band
        if c == 0:  # a new row of windows: start from the rows carried over
            band[:, :ov, :] = self._carry[:, :, px : px + tw]
            band[:, ov:, :] = 0.0
        if values is not None:
            w = self.weight if valid is None else self.weight * valid
            if values.ndim == 1:
                band[:-1] += values[:, None, None] * w
            else:
                band[:-1] += values * w
            band[-1] += w
        last_row, last_col = r == g.rows - 1, c == g.cols - 1
        done_w = tw if last_col else sx
        done_h = th if last_row else sy
        if not last_row:
            self._next[:, :, px : px + done_w] = band[:, sy:, :done_w]
        self._emit(g.y0(r), g.x0(c), band[:, :done_h, :done_w])
        if not last_col:  # slide one stride right
            keep = tw - sx
            band[:, :, :keep] = band[:, :, sx:]
            nxt = px + tw  # padded column of the first new column
            band[:, :ov, keep:] = self._carry[:, :, nxt : nxt + sx]
            band[:, ov:, keep:] = 0.0
        else:
            self._carry, self._next = self._next, self._carry
            if self.row_done is not None:
                self.row_done(r)

    def _emit(self, y0: int, x0: int, block: np.ndarray) -> None:
        top, bottom, left, right = self.grid.bounds
        ya, yb = max(y0, top), min(y0 + block.shape[1], bottom)
        xa, xb = max(x0, left), min(x0 + block.shape[2], right)
        if ya >= yb or xa >= xb:
            return
        part = block[:, ya - y0 : yb - y0, xa - x0 : xb - x0]
        self.sink(ya, xa, part[:-1], part[-1])

    @property
    def finished(self) -> bool:
        """True once every window of the grid was added."""
        return self._next_index == len(self.grid)
