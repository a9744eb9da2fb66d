"""The embedded default: a small grade-school science corpus and question set written for this project."""
from __future__ import annotations

from pathlib import Path

CORPORA_DIR = Path(__file__).resolve().parent
