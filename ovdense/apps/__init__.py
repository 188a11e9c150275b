"""Applications built on the library: folder runs (the core never imports this package)."""
