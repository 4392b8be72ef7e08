"""superres: image super-resolution toolkit."""

__version__ = "0.1.0"
