"""Applications built on the library: the CLI, the demo and its report, the benchmark runners."""
