"""Random models with the real structure, for tests, benchmarks and `--model tiny` (no download needed)."""
