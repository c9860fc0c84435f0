"""What each :class:`~supcon_ray.config.TrainConfig` field means, in words: the ``--help`` of
``supcon-ray train`` and the reference of every key a study file's ``base`` may set. Names that
come from a registry list what is registered (plugins loaded first), so the help is never stale."""

from __future__ import annotations

from supcon_ray import registry
from supcon_ray.data.names import FORMS

#: One sentence per field; a registered kind is appended as "one of: ..." by :func:`describe`.
HELP = {
    "loss": "training objective: a contrastive loss pre-trains on two views then fits the linear stage; a "
            "classifier loss trains end to end",
    "dataset": "dataset to train and test on",
    "data_dir": "where torchvision datasets (cifar10, cifar100) are looked for",
    "download": "let torchvision download cifar10 / cifar100 into data_dir",
    "model": "encoder; the projection head and the linear classifier go on top",
    "epochs": "training epochs (pre-training for a contrastive loss)",
    "linear_epochs": "epochs of the linear stage (linear_stage cached or augmented)",
    "batch_size": "global batch size, split over the workers",
    "optimizer": "optimizer of the main stage",
    "lr": "learning rate of the main stage",
    "weight_decay": "L2 weight decay",
    "momentum": "momentum (SGD, LARS, RMSProp)",
    "nesterov": "Nesterov momentum for SGD",
    "schedule": "learning-rate schedule",
    "warmup_epochs": "linear warm-up epochs before the schedule",
    "lr_decay_rate": "exponential schedule: multiply the rate by this every lr_decay_epochs",
    "lr_decay_epochs": "exponential schedule: epochs between decays",
    "rmsprop_eps": "RMSProp epsilon (the paper's 1.0)",
    "augment": "augmentation policy",
    "augment_path": "where the policy runs: per image in the loader, batched on the training device, or auto",
    "augment_crop": "random crop: resized (as the authors' code) or padded (CIFAR-style)",
    "augment_blur": "Gaussian blur probability (empty: 0.5 above 64 px, 0 at CIFAR scale)",
    "augment_warp": "probability of the authors' random warp",
    "augment_rotation": "add random rotation (a departure from the authors' policies)",
    "randaugment_scale": "RandAugment magnitudes as the paper's code or torchvision's",
    "temperature": "contrastive temperature tau",
    "temperature_scaling": "multiply the loss by tau / base_temperature (the authors' scale_by_temperature)",
    "base_temperature": "tau_b of that scaling (1: the authors' TensorFlow code; 0.07: the PyTorch port)",
    "variant": "SupCon variant: out (Eq. 2, the paper's) or in (Eq. 3)",
    "loss_method": "how the contrastive loss is computed: dense, blockwise (memory linear in the batch) or auto",
    "label_smoothing": "label smoothing of the cross-entropy",
    "normalize_representation": "L2-normalise the encoder output before the head and the classifier (the paper)",
    "linear_stage": "how a contrastive run is read out: lbfgs (converged probe), cached (SGD on features) or "
                    "augmented (SGD on augmented images, the paper)",
    "linear_optimizer": "optimizer of the cached / augmented linear stage",
    "linear_lr": "learning rate of the cached / augmented linear stage",
    "linear_batch_size": "batch size of the cached / augmented linear stage",
    "val_fraction": "share of the training pool held out for validation (what tuning selects on)",
    "train_size": "stratified subset of the training pool (validation carved from it)",
    "test_size": "stratified subset of the test split",
    "image_size": "resize every image once at load time (empty: as stored)",
    "crop_size": "training crop side (empty: the stored side where every image has one, else 224)",
    "seed": "seed of the run (weights, data order, augmentation draws)",
    "num_workers": "DataLoader worker processes (empty: one per spare CPU on a GPU, 0 on a CPU)",
    "checkpoint_every": "epochs between checkpoints (each stage's last epoch always)",
    "monitor": "a validation score after every pre-training epoch of a contrastive loss: knn, a weighted kNN on the frozen features (changes no result)",
    "workers": "data-parallel workers (more than 1 runs on Ray Train)",
    "cpus_per_worker": "CPUs per worker",
    "gpus_per_worker": "GPUs per worker",
    "sync_bn": "synchronised BatchNorm across workers",
    "amp": "mixed precision: auto (bf16 on CUDA), bf16, fp16 or off",
    "deterministic": "deterministic cuDNN / cuBLAS kernels on CUDA",
    "channels_last": "channels-last memory format (empty: on for a GPU)",
    "options": "a plugin's own hyperparameters, name=value (see supcon_ray.plugins)",
}
#: The registry each name-valued field is checked against.
REGISTERED = {"loss": registry.LOSSES, "model": registry.MODELS, "optimizer": registry.OPTIMIZERS,
              "linear_optimizer": registry.OPTIMIZERS, "schedule": registry.SCHEDULES, "augment": registry.POLICIES,
              "dataset": registry.DATASETS}


def describe(field: str) -> str:
    """The help of ``field``: its sentence, and the names it may take where a registry holds them."""
    text = HELP[field]
    reg = REGISTERED.get(field)
    if reg is not None:
        names = [*reg.names(), *(FORMS if field == "dataset" else ())]
        text += f"; one of: {', '.join(names)}"
    return text
