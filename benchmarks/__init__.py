"""glassgpt's benchmarks against Hugging Face: training, generation and tokenization speed.

Run them with `python benchmarks/run.py` (see benchmarks/README.md).
"""
