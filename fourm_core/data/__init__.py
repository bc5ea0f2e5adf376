"""Training-time data access: datasets over stores, mixtures, samplers (imports torch)."""
