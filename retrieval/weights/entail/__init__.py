"""The entailment scorer adapter shipped with the package: adapter.safetensors + entail_config.json."""
