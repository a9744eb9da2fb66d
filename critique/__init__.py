"""Explanation critique: the Digital Socrates format, flaw-injection data, the critic model."""
