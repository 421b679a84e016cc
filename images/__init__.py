"""Guest images built from pinned Debian packages."""
