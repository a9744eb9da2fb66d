"""Errors of the critique stage (subclasses of the project's one base, via InputError)."""
from __future__ import annotations

from core.errors import InputError


class CritiqueFormatError(InputError):
    """A critique that does not follow the Digital Socrates format: a missing field, an unknown
    dimension, a score that is not an integer 0-5. The message names the field that is wrong."""
