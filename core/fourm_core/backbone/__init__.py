"""4M encoders as backbones for downstream tasks: :class:`Backbone` (features of chosen input modalities),
task heads (:mod:`.heads`), fine-tuning losses (:mod:`.losses`) and layer-wise LR decay (:mod:`.optim`).

See :mod:`fourm_core.backbone.backbone` for the interface; ``fourm finetune`` trains heads on top.
"""

from .backbone import POOLS, Backbone, BackboneError, BackboneOutput
from .heads import ConvNeXtBlock, DenseHead, LinearHead, MLPHead, TransferModel
from .losses import LOSSES, align_scale_shift, get_loss
from .optim import NO_DECAY_KEYS, layer_decay_groups

__all__ = ["POOLS", "Backbone", "BackboneError", "BackboneOutput", "ConvNeXtBlock", "DenseHead", "LinearHead",
           "MLPHead", "TransferModel", "LOSSES", "align_scale_shift", "get_loss", "NO_DECAY_KEYS",
           "layer_decay_groups"]
