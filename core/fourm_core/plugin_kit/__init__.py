"""Shared building blocks for modality plugins: hub loading with clear offline errors, array crops and
resizes that follow the sample's crop, colour maps and PCA renderings, box transforms.

Plugins import the sub-modules they need (``fourm_core.plugin_kit.images``, ``labelers`` for the constructor
and batching boilerplate of model-based labelers, etc.; plugin tests use :mod:`fourm_core.testing`); a
plugin's ``plugin.py`` (which must stay torch-free) imports nothing here but the plain-data ``coco`` module.
"""
