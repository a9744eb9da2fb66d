"""The MPNet entailment scorer adapter (opt-in: `--scorer mpnet` or `cascade:mpnet`): adapter.safetensors + entail_config.json."""
