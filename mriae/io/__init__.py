"""Files ↔ arrays with everything needed to write them back as they were."""

from mriae.io.atomic import write_bytes_atomic
from mriae.io.image import Image, ImageError, image_files, output_suffix, read_image, write_image

__all__ = ["Image", "ImageError", "image_files", "output_suffix", "read_image", "write_bytes_atomic", "write_image"]
