"""agenticaiframework: the LLM layer, with a Rust core for its hot-path state.

>>> from agenticaiframework import Agent
>>> from agenticaiframework.llms import LLMManager
"""

from .agent import Agent

__version__ = "4.0.0a1"
__all__ = ["Agent", "__version__"]

import logging as _logging

# A library leaves output to the application: no messages unless logging is configured.
_logging.getLogger(__name__).addHandler(_logging.NullHandler())
