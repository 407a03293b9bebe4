"""keyrack: API keys for organizations."""

__version__ = "0.1.0"
