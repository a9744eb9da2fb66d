"""The shipped acceptability regressor (critique.acceptability): adapter.safetensors + entail_config.json; see MODEL_CARD.md."""
