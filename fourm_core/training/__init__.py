"""Training: run configuration, deterministic batches, the DeepSpeed engine, FLOP counting."""
