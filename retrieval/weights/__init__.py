"""Weights shipped with the package (data only)."""
