"""remitflow benchmarks: ``python -m benchmarks [name] [options]`` (see benchmarks/README.md)."""
