"""gan_utils: the tested helper package behind the book "Classic GANs in PyTorch".

Modules, one concept each: `data` (MNIST and toy data in [-1, 1]), `images` (folders of pictures and
torchvision data sets at 32, 64 ... pixels), `models` (G and D pairs), `losses` (pure functions with their
formulas), `train` (update_D, update_G, fit), `checkpoints` (save, load, export, pretrained), `viz` (grids,
curves, animations), `metrics` (FID, IS, precision/recall in the feature space of the book's own MNIST
classifier), `distributed` (several processes with DDP under torchrun), `paired` (image-to-image nets with
an optional adversary: super-resolution, translation), `unpaired` (CycleGAN), `augment` (a classifier from
few labels, with affine or cGAN augmentation), `anomaly` (one-class anomaly scores: D, AnoGAN, f-AnoGAN,
autoencoder, nearest neighbour).
Notebooks import modules, not names:

    from gan_utils import data, models, losses, train, viz
"""
from . import (anomaly, augment, checkpoints, data, distributed, images, losses, metrics, models, paired, train,
               unpaired, viz, widgets)
from .data import DataError, mnist_loader, prepare_mnist
from .images import image_loader
from .models import build
from .train import CheckpointError, DivergenceError, History, StopTraining, TrainConfig, fit, update_D, update_G

__version__ = "0.1.0"
__all__ = ["anomaly", "augment", "checkpoints", "data", "distributed", "images", "losses", "metrics", "models",
           "paired", "train", "unpaired", "viz", "widgets",
           "DataError", "mnist_loader", "prepare_mnist", "image_loader", "build", "CheckpointError", "DivergenceError",
           "History", "StopTraining", "TrainConfig", "fit", "update_D", "update_G", "__version__"]
