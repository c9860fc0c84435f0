"""Data and augmentation: dataset names (torch-free), loading with fixed splits, the augmentation policies
per image and batched on the device, and the seeded loaders.
"""

from supcon_ray.exports import exports

__all__ = [
    "BatchAugment",
    "DATASETS",
    "DataError",
    "PolicyOptions",
    "Splits",
    "absolute_dataset_name",
    "build_transform",
    "load_dataset",
    "validate_dataset_name",
]
__getattr__, __dir__ = exports(__name__, {
    "DATASETS": "names",
    "validate_dataset_name": "names",
    "absolute_dataset_name": "names",
    "load_dataset": "datasets",
    "Splits": "datasets",
    "DataError": "datasets",
    "build_transform": "augment",
    "PolicyOptions": "augment",
    "BatchAugment": "batch_augment",
})
