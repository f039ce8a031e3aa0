"""agenticaiframework: the LLM layer, with a Rust core for its hot-path state."""

__version__ = "0.1.0"
