"""The seeded generator of the Shanghai demo dataset (run data/generate_shanghai_demo.py)."""
