"""Registers the ``human_pose`` modality (no heavy imports here: components are referenced by string)."""

from __future__ import annotations

from fourm_registry import ComponentRef, ModalitySpec, StorageSpec, hookimpl

#: 4M-21's length; 6 persons × (5 box tokens + 34 keypoint tokens) = 234 tokens + [EOS] fit
MAX_LENGTH = 263
DEFAULT_WEIGHTS = "usyd-community/vitpose-base-simple"


@hookimpl
def fourm_register_modalities(register):
    register(
        ModalitySpec(
            name="human_pose",
            kind="sequence",
            vocab_size=30000,
            max_length=MAX_LENGTH,
            description="people: per person 'human <box tokens>' then 17 COCO keypoints as 'v0=x v1=y' or 'none' "
                        "(person detector + ViTPose)",
            storage=StorageSpec(dtype="json"),
            labeler="fourm_human_pose.components:HumanPoseLabeler",
            transform=ComponentRef(target="fourm_human_pose.components:HumanPoseTransform", context=("raw_size",)),
            serializer="fourm_human_pose.components:HumanPoseSerializer",
            metrics="fourm_human_pose.metrics:make_metric",
            reader="fourm_human_pose.readers:HumanPoseReader",
            visualizer="fourm_human_pose.components:visualize",
            tokenizer="fourm_core.plugin_kit.seqtext:sequence_tokenizer",
            special_tokens=("human", "none"),
            default_weights=DEFAULT_WEIGHTS,
            license="Apache-2.0",
        )
    )
