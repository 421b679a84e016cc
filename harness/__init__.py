"""Launching and driving QEMU guests, and the jitprobe command line."""

__all__ = []
