"""The base layer every other part imports and that imports none of them.

``base.errors`` (error kinds and exit statuses), ``base.profiles`` (the architecture profiles of
arch_profiles/), ``base.files`` (the cache folder and file locks), ``base.proc`` (running host
tools) and ``base.progress`` (the stderr console). harness, images, jit_core and the suites sit
above it; see docs/DESIGN.md.
"""

__all__ = []
