"""The port's package entry: ``ARCHITECTURES`` for ``max serve --custom-architectures``."""

from .arch import port_arch

ARCHITECTURES = [port_arch]

__all__ = ["ARCHITECTURES"]
