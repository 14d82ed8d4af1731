"""The benchmark harness: see bench/run.py and the README's "Benchmark" section."""
