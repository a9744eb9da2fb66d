"""The shipped checks head: head.json (+ selection.json); see MODEL_CARD.md."""
