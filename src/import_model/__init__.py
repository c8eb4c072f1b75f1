"""import-model: bring a Hugging Face language model into Modular MAX and prove parity."""

__version__ = "0.1.0"
