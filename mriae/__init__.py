"""mriae: a learned compressor for MRI volumes that restores their exact geometry."""

__all__ = ["DEFAULT_QUALITY", "Image", "Stats", "compress", "decompress"]
__version__ = "0.1.0"

_EXPORTS = {"compress": "mriae.api", "decompress": "mriae.api", "DEFAULT_QUALITY": "mriae.codec",
            "Stats": "mriae.codec", "Image": "mriae.io"}


def __getattr__(name: str):
    """Load the API on first use (PEP 562): ``import mriae.cli`` stays light, so that the
    command line can handle Ctrl-C (and print --help) before torch has loaded."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mriae' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_EXPORTS[name]), name)
