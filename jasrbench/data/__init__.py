"""Data layer: readers of the benchmark datasets, preparation, degradation, heatmaps."""
