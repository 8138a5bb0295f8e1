"""Zarr datasets (DESIGN.md §5): store format, ingest/label/tokenize jobs, the training loader."""
