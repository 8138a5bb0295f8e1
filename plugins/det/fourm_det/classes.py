"""The 80 COCO detection classes as single vocabulary tokens (multi-word names joined with ``_``).

Plain data (the names live in :mod:`fourm_core.plugin_kit.coco`, shared with ``semseg``): ``plugin.py``
reads it to declare the special tokens.
"""

from fourm_core.plugin_kit.coco import COCO_THING_CLASSES as COCO_CLASSES

#: the class names as tokens: ``traffic light`` → ``traffic_light``
COCO_CLASS_TOKENS = tuple(c.replace(" ", "_") for c in COCO_CLASSES)
