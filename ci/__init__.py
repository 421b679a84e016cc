"""CI entry points: the main job and the nightly matrix."""

__all__ = []
