"""Registers the ``smpl_pose`` modality (alias ``human_poses``, 4M-21's name); no heavy imports here."""

from __future__ import annotations

from fourm_registry import ComponentRef, ModalitySpec, StorageSpec, hookimpl

from .groups import SPECIAL_TOKENS

#: the position embedding length of 4M-21's human_poses (its masking budget is 275; 6 humans = 234 tokens)
MAX_LENGTH = 263
_C = "fourm_smpl_pose.components"


@hookimpl
def fourm_register_modalities(register):
    register(
        ModalitySpec(
            name="smpl_pose",
            kind="sequence",
            vocab_size=30000,
            max_length=MAX_LENGTH,
            aliases=("human_poses",),
            description="people as HMR2 SMPL parameters (4M-21's human_poses): per human 'human <box tokens>' then "
                        "the pose / global / camera / shape groups in a shuffled order; 'none' for no humans",
            storage=StorageSpec(dtype="json"),
            # no labeler: HMR2 (and the pose VQ-VAE that makes the 8 pose ids) does not run here; a label job
            # for this modality fails with the registry's "has no pseudo-labeler" error
            labeler=None,
            transform=ComponentRef(target=f"{_C}:SmplPoseTransform", context=("raw_size",)),
            serializer=f"{_C}:SmplPoseSerializer",
            visualizer=f"{_C}:visualize",
            tokenizer="fourm_core.plugin_kit.seqtext:sequence_tokenizer",
            special_tokens=SPECIAL_TOKENS,
            license="Apache-2.0",
        )
    )
