"""jasrbench: joint super-resolution and landmark localization of tiny faces."""

__version__ = "0.1.0"
