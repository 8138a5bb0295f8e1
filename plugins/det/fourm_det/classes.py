"""The 80 COCO detection classes, declared as whole vocabulary tokens (multi-word names keep their space).

Plain data (the names live in :mod:`fourm_core.plugin_kit.coco`, shared with ``semseg``): ``plugin.py``
reads it to declare the special tokens. The released 4M vocabulary has the same 80 names as single tokens
(``traffic light`` is one token), so det text is identical with either vocabulary.
"""

from fourm_core.plugin_kit.coco import COCO_THING_CLASSES as COCO_CLASSES

#: the class names as tokens: ``traffic light`` stays ``traffic light``
COCO_CLASS_TOKENS = tuple(COCO_CLASSES)
