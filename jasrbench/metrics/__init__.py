"""Metrics: image quality, landmark error, verification, recognizers, statistics."""
