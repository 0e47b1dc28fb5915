"""One writer per output format; each exposes ``write(cube_day, path, meta)``."""
