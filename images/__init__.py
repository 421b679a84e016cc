"""Guest images built from pinned Debian packages."""

__all__ = []
