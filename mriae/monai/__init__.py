"""mriae in MONAI: a face over the one pipeline in :mod:`mriae.codec`, like the command line.

* :class:`MriaeReader` (:mod:`mriae.monai.reader`) — an ``ImageReader`` for ``LoadImage``/``LoadImaged``.
  Importing this package registers it with MONAI: ``LoadImage()`` then reads ``.mriae`` paths
  and ``LoadImage(reader="MriaeReader")`` finds it by name. :class:`ImageFileReader` reads the
  originals as ``mriae compress`` does, into the same layout.
* :class:`ToNetworkGrid` / :class:`ToNetworkGridd` (:mod:`mriae.monai.grid`) — the invertible
  resample + edge-pad step.
* :class:`Compress` / :class:`Compressd` (:mod:`mriae.monai.compress`) — image → .mriae bytes.
* :class:`Decompress` / :class:`Decompressd` (:mod:`mriae.monai.decompress`) — bytes or file →
  channel-first MetaTensor.
* :class:`SaveMriae` / :class:`SaveMriaed` (:mod:`mriae.monai.save`) — bytes → ``.mriae`` file.
* :mod:`mriae.monai.bundle` — the runners of the bundle in ``pipelines/bundle/mriae_codec``.

``import mriae`` alone does not import MONAI (the command line starts without it), so the
reader is registered by ``import mriae.monai`` (or any module of it).
"""

from mriae.extras import required

with required("monai", "mriae.monai"):
    from mriae.monai.compress import Compress, Compressd
    from mriae.monai.decompress import Decompress, Decompressd
    from mriae.monai.grid import ToNetworkGrid, ToNetworkGridd
    from mriae.monai.reader import ImageFileReader, MriaeReader, MriaeReadError, register_reader
    from mriae.monai.save import SaveMriae, SaveMriaed

__all__ = [
    "Compress", "Compressd", "Decompress", "Decompressd", "ImageFileReader", "MriaeReadError", "MriaeReader", "SaveMriae", "SaveMriaed",
    "ToNetworkGrid", "ToNetworkGridd",
]

register_reader()
