"""The gate: what it reads, the engine and evals it runs, its checks, its pipeline."""
