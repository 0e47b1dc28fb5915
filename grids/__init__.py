"""Geometry and weights: the shared grid, spatial allocation and (later) vertical allocation."""
