"""``tps``: the thin-plate-spline distortion (paper section 2.1, Figures 3d and 4).

Knots lie on a uniform ``grid x grid`` lattice: the centres of a ``grid x grid`` tiling of the image (at
224 px and grid 14, every 16 px from 7.5, as in the authors' code). Each knot p_i gets a displacement d_i
drawn from N(0, sigma^2) per coordinate, sigma in pixels at a 224-pixel input scaled with the input
size. The default, sigma = 4 px at 224, is the authors' ``save_images.m`` (``4*randn``; the paper's text
says "4 pixels variance", but the code draws a standard deviation of 4). The *sampling map* is T(q) = q + f(q), where f is the thin-plate
spline with f(p_i) = d_i, and z(q) = x(T(q)) (``cv2.remap``, bilinear, reflected border). So the content
found at p_i + d_i in x appears at p_i in z. With sigma = 0 the map is the identity.

Fast and exact. The knots are fixed per (size, grid) and only the displacements are random, so the
spline's coefficients are a fixed linear function of the displacements, and so is the dense map. The
full (H*W x n) matrix of that map is 39 MB at 224 px (about 10 ms per image just to stream it), so
:func:`tps_warp` precomputes it in a factored form instead:

- pixels are grouped by the lattice cell they lie in; every cell holds the same h x h pixel offsets u
  from its knot (the image is padded to a multiple of the grid for this, then cropped), so the kernel
  U(q - p_i) depends only on u and the cell offset c - i;
- the 3 x 3 knots around a cell enter exactly; for all farther knots U is smooth over the cell and its
  (offset u x cell offset) matrix has numerical rank R ~ 21, taken from its SVD (relative 1e-8);
- per image: the spline coefficients (float64, they cancel strongly), one (R*n x n) float32
  matrix-vector product for the far field, one (h*h x R+12) @ (R+12 x 2n) product for every pixel, and a
  reordering of the result into image order.

The dense map equals the float64 spline to about 1e-4 px (tested), far below the 1/32 px sub-pixel
resolution at which the image is resampled (the map is converted to ``cv2.remap``'s fixed-point form,
1/32 px steps, which halves the cost of the remap). :meth:`TpsWarp.spline` evaluates the spline itself
at any points.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np

from ..images import scaled_pixels
from .views import Views

#: Far-field singular values below this fraction of the largest are dropped.
RANK_TOLERANCE = 1e-8


def _kernel(r2: np.ndarray) -> np.ndarray:
    """The thin-plate kernel U as a function of the squared distance: r^2 log r^2 (0 at 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(r2 > 0, r2 * np.log(r2), 0.0)


@dataclass(frozen=True, eq=False)
class TpsWarp:
    """The precomputed dense thin-plate-spline map for one (size, grid); build with :func:`tps_warp`."""

    size: int
    grid: int
    knots: np.ndarray  # (n, 2) knot positions (x, y) in pixels; knot i = (row i // grid, column i % grid)
    coefficients: np.ndarray  # (n + 3, n) float64: [kernel weights w; affine a] per unit displacement
    far: np.ndarray  # (R*n, n) float32: displacements -> far-field expansion coefficients per cell
    pixel_terms: np.ndarray  # (h*h, R + 9 + 3) float32: far basis, 3x3 near kernels, 1, u_x, u_y per pixel
    cell: int  # h, the side of a lattice cell in pixels
    offset: int  # first image pixel within the padded canvas

    def sampling_map(self, displacements: np.ndarray) -> np.ndarray:
        """The dense map T (``size x size x 2`` float32, x then y) for knot displacements ``(n, 2)``."""
        g, h, n = self.grid, self.cell, self.grid**2
        d = np.asarray(displacements, dtype=np.float64)
        # w and a in float64: their sums cancel strongly, float32 would cost 1e-3 px.
        w, a = np.split(self.coefficients @ d, [n])
        rank = self.far.shape[0] // n
        per_cell = np.empty((rank + 12, g, g, 2), np.float32)  # the right factor, one row per pixel term
        per_cell[:rank] = (self.far @ d.astype(np.float32)).reshape(rank, g, g, 2)
        padded = np.zeros((g + 2, g + 2, 2), np.float32)
        padded[1:-1, 1:-1] = w.reshape(g, g, 2)
        for j, (dy, dx) in enumerate((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)):
            per_cell[rank + j] = padded[1 - dy : 1 - dy + g, 1 - dx : 1 - dx + g]  # w of knot c - (dy, dx)
        at_knot = self.knots + a[0] + (self.knots / self.size) @ a[1:]
        per_cell[rank + 9] = at_knot.reshape(g, g, 2)
        per_cell[rank + 10 :] = (np.eye(2) + a[1:] / self.size)[:, None, None, :]  # slopes along u_x, u_y
        blocks = self.pixel_terms @ per_cell.reshape(rank + 12, 2 * n)  # rows (ty, tx), columns (cy, cx, xy)
        # Reorder to (cy, ty, cx, tx): move (x, y) pairs as single 8-byte items, much faster than floats.
        pairs = blocks.view(np.float64).reshape(h, h, g, g).transpose(2, 0, 3, 1)
        canvas = np.ascontiguousarray(pairs).view(np.float32).reshape(g * h, g * h, 2)
        if g * h == self.size:
            return canvas
        end = self.offset + self.size
        return np.ascontiguousarray(canvas[self.offset : end, self.offset : end])

    def spline(self, points: np.ndarray, displacements: np.ndarray) -> np.ndarray:
        """The spline f itself, in float64, at ``points`` ``(m, 2)``: the displacement of the map there."""
        coefficients = self.coefficients @ np.asarray(displacements, dtype=np.float64)
        q = np.asarray(points, dtype=np.float64) / self.size
        p = self.knots / self.size
        kernel = _kernel(((q[:, None, :] - p[None, :, :]) ** 2).sum(-1))
        n = len(p)
        return kernel @ coefficients[:n] + coefficients[n] + q @ coefficients[n + 1 :]


@functools.lru_cache(maxsize=16)
def tps_warp(size: int, grid: int) -> TpsWarp:
    """Precompute the thin-plate-spline map for ``size x size`` images and a ``grid x grid`` lattice."""
    g, n = grid, grid * grid
    h = math.ceil(size / g)  # cell side; the padded canvas is g*h pixels
    pad = (g * h - size) / 2
    offset = math.floor(pad)
    centres = (np.arange(g) + 0.5) * h - 0.5 - pad  # knot coordinate along either axis, image pixels
    knots = np.stack(np.meshgrid(centres, centres, indexing="xy"), -1).reshape(n, 2)
    u = np.arange(h) + 0.5 - h / 2 + (pad - offset)  # pixel offset from its cell's knot

    # The spline f(q) = sum_i w_i U(|q - p_i|^2) + a0 + a . q in coordinates divided by `size` (for
    # conditioning); [w; a] = inv(system)[:, :n] @ d.
    p = knots / size
    system = np.zeros((n + 3, n + 3))
    system[:n, :n] = _kernel(((p[:, None] - p[None]) ** 2).sum(-1))
    system[:n, n], system[:n, n + 1 :] = 1.0, p
    system[n, :n], system[n + 1 :, :n] = 1.0, p.T
    coefficients = np.linalg.inv(system)[:, :n]

    # Kernel between pixel offset u (rows: ty, tx) and cell offset c - i (columns: dy, dx); the far
    # columns (beyond the 3x3 near knots) through their SVD.
    steps = np.arange(-(g - 1), g)
    along = ((u[:, None] + h * steps[None, :]) / size) ** 2  # (h, 2g-1)
    kernel = _kernel(along[:, None, :, None] + along[None, :, None, :]).reshape(h * h, -1)
    near = ((np.abs(steps)[:, None] <= 1) & (np.abs(steps)[None, :] <= 1)).ravel()
    left, singular, right = np.linalg.svd(np.where(near, 0.0, kernel), full_matrices=False)
    rank = max(1, int((singular > RANK_TOLERANCE * singular[0]).sum()))
    cell_minus_knot = np.arange(g)[:, None] - np.arange(g)[None, :] + (g - 1)  # (c, i) -> index in steps
    index = cell_minus_knot[:, None, :, None] * (2 * g - 1) + cell_minus_knot[None, :, None, :]
    index = index.reshape(n, n)  # (cell, knot) -> column of `kernel`
    far = right[:rank][:, index].reshape(rank * n, n) @ coefficients[:n]  # right[r, c - i] applied to w

    ty, tx = np.divmod(np.arange(h * h), h)
    pixel_terms = np.concatenate(
        [left[:, :rank] * singular[:rank], kernel[:, near], np.ones((h * h, 1)), u[tx, None], u[ty, None]], 1
    )
    return TpsWarp(
        size=size,
        grid=grid,
        knots=knots,
        coefficients=coefficients,
        far=far.astype(np.float32),
        pixel_terms=pixel_terms.astype(np.float32),
        cell=h,
        offset=offset,
    )


class Tps:
    """Warp z by a random thin-plate spline (see the module docstring)."""

    def __init__(self, grid: int = 14, sigma: float = 4.0) -> None:
        self.grid, self.sigma = grid, sigma

    def displacements(self, size: int, rng: np.random.Generator) -> np.ndarray:
        """Random knot displacements ``(grid*grid, 2)`` in pixels for views of ``size`` pixels."""
        return rng.standard_normal((self.grid * self.grid, 2)) * scaled_pixels(self.sigma, size)

    def __call__(self, views: Views, rng: np.random.Generator) -> Views:
        size = views.z.shape[0]
        warp = tps_warp(size, self.grid)
        sampling = warp.sampling_map(self.displacements(size, rng))
        # Fixed-point maps (1/32 px steps) halve the cost of remap; the spline itself stays exact.
        fixed, fraction = cv2.convertMaps(sampling, None, cv2.CV_16SC2)
        z = cv2.remap(views.z, fixed, fraction, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        return views._replace(z=z)
