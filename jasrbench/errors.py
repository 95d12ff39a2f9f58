"""Errors that name the file and the problem (DESIGN §6: bad input gets a clear error)."""

from __future__ import annotations

from pathlib import Path


class JasrbenchError(Exception):
    """Base class of every error the suite raises on purpose."""


class DataError(JasrbenchError):
    """A problem with one input file: carries the path and what is wrong with it."""

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path is not None else problem)


class ConfigError(JasrbenchError):
    """An invalid or inconsistent configuration value."""
