"""ser_lib.models: the adapter backbone, local attributes, pooling and helpers."""

from ser_lib.models.augment import augmentation_mask, oversample_minority
from ser_lib.models.baseline import LayerWeightedSum
from ser_lib.models.ema import copy_weights_, ema_update_
from ser_lib.models.local_attributes import LocalAttributes, prototype_cosine_logits
from ser_lib.models.masking import (
    num_masked_frames,
    random_frame_mask,
    valid_frames,
    valid_mask,
)
from ser_lib.models.pooling import StatisticalAttentivePooling, mean_pool
from ser_lib.models.wap_transformer import TransformerBlock, WAPTransformer

__all__ = [
    "LayerWeightedSum",
    "LocalAttributes",
    "StatisticalAttentivePooling",
    "TransformerBlock",
    "WAPTransformer",
    "augmentation_mask",
    "copy_weights_",
    "ema_update_",
    "mean_pool",
    "num_masked_frames",
    "oversample_minority",
    "prototype_cosine_logits",
    "random_frame_mask",
    "valid_frames",
    "valid_mask",
]
