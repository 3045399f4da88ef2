"""mriae: a learned compressor for MRI volumes that restores their exact geometry."""

from mriae.api import compress, decompress
from mriae.codec import DEFAULT_QUALITY, Stats
from mriae.io import Image

__all__ = ["DEFAULT_QUALITY", "Image", "Stats", "compress", "decompress"]
__version__ = "0.1.0"
