"""The shipped critic: manifest.json + weights.safetensors; see MODEL_CARD.md."""
