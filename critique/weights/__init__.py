"""Trained weights shipped with the package (data files only)."""
