"""A network-coded volume, tile by tile (mriae.transforms.tiles): each tile's symbols are an
independent chunk, and the transforms run on one tile and its halo at a time, so that memory
is bounded by the tile and a region of the volume decodes from the tiles it needs.

:func:`encode_tile` (analysis, quantization, entropy coding) and :func:`synthesize_tile` are
the units of work. Each runs torch on one thread (:func:`mriae.parallel.single_threaded`), so
that decoded voxels do not depend on the machine's thread settings, and tiles run on every
core at once (:func:`mriae.parallel.ordered_map`); the network runs on the device the faces
chose (:func:`torch_device`: the CPU unless ``device=``/``--device`` asks for a GPU).
"""

from __future__ import annotations

import copy
import threading
import zlib
from collections.abc import Callable, Iterator

import numpy as np
import torch

from mriae.entropy_coder.stream import StreamError, decode_symbols, encode_symbols
from mriae.models.autoencoder import Autoencoder
from mriae.models.weights import Codec
from mriae.parallel import network_device, ordered_map, single_threaded
from mriae.transforms.geometry import GridPlan, coding_region, resample_region, to_network_grid
from mriae.transforms.intensity import IntensityRange
from mriae.transforms.tiles import Box, TileGrid, box_shape, box_slices, intersection

Voxels = Callable[[Box], np.ndarray]
"""The [0, 1] float32 voxels of a box of a volume's padded network grid."""


def symbols_checksum(symbols: np.ndarray) -> int:
    """CRC-32 of latent symbols (int32, little-endian, C order)."""
    return zlib.crc32(np.ascontiguousarray(symbols, dtype="<i4").tobytes())


_models: dict[tuple[str, str], Autoencoder] = {}
_models_lock = threading.Lock()


def resolve_device(word: str) -> torch.device:
    """The torch device of a device word (mriae.parallel.checked_device): "auto" is the first
    CUDA GPU if torch sees one, else the CPU; ValueError (one line) for a CUDA device torch
    does not see. On a GPU, cuDNN's TF32 convolutions are turned off for the process, so that
    the network computes in float32 as on the CPU."""
    if word == "auto":
        word = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(word)
    if device.type != "cuda":
        return device
    seen = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if (device.index or 0) >= seen:
        raise ValueError(f"device {word}: torch {torch.__version__} sees "
                         + (f"only {seen} CUDA device{'s' * (seen > 1)}" if seen else "no CUDA device"))
    torch.backends.cudnn.allow_tf32 = False
    return torch.device("cuda", device.index or 0)


def torch_device() -> torch.device:
    """The torch device of :func:`mriae.parallel.network_device` (:func:`resolve_device`)."""
    return resolve_device(network_device())


def model_on(codec: Codec, device: torch.device) -> Autoencoder:
    """``codec``'s network on ``device`` (a copy, made once per device)."""
    if device.type == "cpu":
        return codec.model
    key = (codec.sha256, str(device))
    with _models_lock:
        if key not in _models:
            _models[key] = copy.deepcopy(codec.model).to(device).eval()
        return _models[key]


def network_voxels(volume: np.ndarray, grid: GridPlan, intensity: IntensityRange) -> Voxels:
    """The [0, 1] voxels of any box of ``volume``'s network grid, made when asked: scaled
    from the volume itself, its last slices repeated as padding (as mriae.transforms.geometry
    pads). A resampled grid needs the whole volume: it is resampled once, whole."""
    if grid.resampled:
        with single_threaded():
            resampled = to_network_grid(intensity.scale(volume), grid)[0, 0].numpy()
        return lambda box: resampled[box_slices(box)]

    def block(box: Box) -> np.ndarray:
        indices = (np.minimum(np.arange(start, stop), n - 1) for (start, stop), n in zip(box, volume.shape))
        return intensity.scale(volume[np.ix_(*indices)])

    return block


@torch.no_grad()
@single_threaded()
def encode_tile(codec: Codec, quality: int, tiles: TileGrid, index: int, voxels: Voxels) -> tuple[bytes, np.ndarray]:
    """(chunk, symbols (C, *tile) int32) of tile ``index``: the analysis of its voxels and one
    latent before it, quantized at ``quality`` and entropy-coded on their own. StreamError for
    a latent beyond the coder's range."""
    reads = tiles.analysis_box(index)
    device = torch_device()
    inputs = torch.from_numpy(voxels(tiles.voxels_of(reads)))[None, None].to(device)
    latents = model_on(codec, device).encode(inputs, tiles.levels).cpu()
    quantized = codec.model.entropy_bottleneck.quantize(latents, codec.level(quality).channel_steps)[0]
    symbols = np.ascontiguousarray(quantized[(slice(None), *box_slices(tiles.latent_box(index), reads))].numpy(),
                                   dtype=np.int32)
    return encode_symbols(symbols, codec.level(quality).tables), symbols


def tile_symbols(codec: Codec, quality: int, tiles: TileGrid, index: int, chunk: bytes,
                 checksum: int | None) -> np.ndarray:
    """The symbols of tile ``index`` decoded from its ``chunk``, checked against their CRC-32
    (None: a version-3 file, which stored none); StreamError names the tile."""
    where = f"tile {index + 1} of {tiles.count}: " if tiles.count > 1 else ""
    try:
        symbols = decode_symbols(chunk, codec.level(quality).tables, box_shape(tiles.latent_box(index)))
    except StreamError as error:
        raise StreamError(f"{where}{error}") from error
    if checksum is not None and symbols_checksum(symbols) != checksum:
        raise StreamError(f"{where}the decoded latents do not match their checksum")
    return symbols


class TileSymbols:
    """The symbols of a volume's tiles, each obtained once (decoded from its chunk, or kept
    from encoding) when a box first needs it."""

    def __init__(self, tiles: TileGrid, symbols_of: Callable[[int], np.ndarray]) -> None:
        self.tiles = tiles
        self._symbols_of = symbols_of
        self._known: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()

    def tile(self, index: int) -> np.ndarray:
        """The (C, *tile) symbols of tile ``index`` (tiles synthesized at once share them)."""
        with self._lock:
            if index not in self._known:
                self._known[index] = self._symbols_of(index)
            return self._known[index]

    def box(self, latents: Box) -> np.ndarray:
        """The (C, *box) int32 symbols of the latent box ``latents``, from the tiles it meets."""
        parts = {index: self.tile(index) for index in self.tiles.meeting(latents)}
        symbols = np.empty((next(iter(parts.values())).shape[0], *box_shape(latents)), dtype=np.int32)
        for index, part in parts.items():
            own = self.tiles.latent_box(index)
            shared = intersection(own, latents)
            symbols[(slice(None), *box_slices(shared, latents))] = part[(slice(None), *box_slices(shared, own))]
        return symbols


@torch.no_grad()
@single_threaded()
def synthesize_tile(codec: Codec, quality: int, symbols: TileSymbols, index: int) -> np.ndarray:
    """The [0, 1] float32 voxels of tile ``index`` on the network grid: the synthesis of its
    latents and one latent after it, cropped to the tile's own voxels."""
    tiles = symbols.tiles
    integers = torch.from_numpy(symbols.box(tiles.synthesis_box(index)).astype(np.float32))[None]
    latents = codec.model.entropy_bottleneck.dequantize(integers, codec.level(quality).channel_steps)
    device = torch_device()
    voxels = model_on(codec, device).decode(latents.to(device), tiles.levels)[0, 0].cpu()
    return voxels[tuple(slice(0, n) for n in box_shape(tiles.voxel_box(index)))].numpy()


def reconstructed(codec: Codec, quality: int, grid: GridPlan, symbols: TileSymbols,
                  region: Box) -> Iterator[tuple[Box, np.ndarray]]:
    """The [0, 1] reconstruction of ``region`` of the original grid, piece by piece: (box,
    float32 voxels), one piece per tile it meets; one piece, resampled from the tiles of the
    coding grid that it reads, when the grid is resampled."""
    if not grid.resampled:
        yield from _coding_pieces(codec, quality, symbols, region)
        return
    coding = coding_region(grid, region)
    values = np.empty(box_shape(coding), dtype=np.float32)
    for box, voxels in _coding_pieces(codec, quality, symbols, coding):
        values[box_slices(box, coding)] = voxels
    with single_threaded():
        resampled = resample_region(values, grid, coding, region)
    yield region, resampled


def _coding_pieces(codec: Codec, quality: int, symbols: TileSymbols, region: Box) -> Iterator[tuple[Box, np.ndarray]]:
    """(box, [0, 1] voxels) of ``region`` of the coding grid, a piece per tile it meets."""
    tiles = symbols.tiles

    def piece(index: int) -> tuple[Box, np.ndarray]:
        own = tiles.voxel_box(index)
        inside = intersection(own, region)
        return inside, synthesize_tile(codec, quality, symbols, index)[box_slices(inside, own)]

    yield from ordered_map(piece, tiles.covering(region))
