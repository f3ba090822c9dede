"""Segmentor and classifier that add DA-VPT's guidance losses.

Each gives its backbone's guidance (``ProxyGuidance``) the image-level
labels of a batch and adds the two losses to the task's:

* ``GuidedEncoderDecoder`` (mmseg): ``backbone.loss_guidance_patch`` and
  ``backbone.loss_guidance_cls``; image labels from ADE20K's scene
  categories (``image_labels='scene'``) or the classes present in the label
  map (``'present'``, multi-hot);
* ``GuidedImageClassifier`` (mmpretrain): ``loss_guidance_patch`` and
  ``loss_guidance_cls``; the class label.
"""
import os.path as osp
from typing import Dict, List, Optional

import torch
from mmpretrain.models import ImageClassifier
from mmpretrain.registry import MODELS as CLS_MODELS
from mmseg.models import EncoderDecoder
from mmseg.registry import MODELS
from mmseg.utils import add_prefix
from torch import Tensor

from .backbones import find_addon
from .guidance import ProxyGuidance

IMAGE_LABELS = ('scene', 'present')
SCENE_FILE = 'sceneCategories.txt'


class SceneCategories:
    """ADE20K's ``sceneCategories.txt`` (lines ``ADE_train_00000001
    airport_terminal``): image name -> scene index, the scenes sorted."""

    def __init__(self, path: str):
        if not osp.isfile(path):
            raise FileNotFoundError(
                f'scene category file not found: {path}. DA-VPT with '
                "image_labels='scene' reads ADE20K's sceneCategories.txt "
                '(next to images/ and annotations/); use '
                "image_labels='present' to take the classes of the label "
                'maps instead')
        self.path = path
        with open(path) as f:
            pairs = [line.split() for line in f if line.strip()]
        bad = [p for p in pairs if len(p) != 2]
        if bad:
            raise ValueError(f'{path}: lines must be "IMAGE SCENE", got '
                             f'{" ".join(bad[0])!r}')
        self.scenes = sorted({scene for _, scene in pairs})
        index = {scene: i for i, scene in enumerate(self.scenes)}
        self.labels = {image: index[scene] for image, scene in pairs}

    def label(self, img_path: str) -> int:
        name = osp.splitext(osp.basename(img_path))[0]
        if name not in self.labels:
            raise KeyError(f'image {name} ({img_path}) is not listed in '
                           f'{self.path}')
        return self.labels[name]


def guidance_of(model, name: str) -> ProxyGuidance:
    """The ``ProxyGuidance`` add-on of the model's prompted backbone."""
    guidance = find_addon(model, ProxyGuidance)
    if guidance is None:
        raise ValueError(
            f'{name} needs a backbone with the guidance add-on, e.g. '
            "addons=dict(guidance=dict(type='ProxyGuidance', num_guided=10))")
    return guidance


def scene_file_of(img_path: str) -> str:
    """``ROOT/images/SPLIT/x.jpg`` -> ``ROOT/sceneCategories.txt``."""
    return osp.join(osp.dirname(osp.dirname(osp.dirname(img_path))),
                    SCENE_FILE)


@MODELS.register_module()
class GuidedEncoderDecoder(EncoderDecoder):
    """mmseg's ``EncoderDecoder`` with DA-VPT's guidance losses.

    Args:
        image_labels (str): 'scene' (one scene category per image, from
            ``scene_file``) or 'present' (the classes in the label map,
            multi-hot over the decode head's classes, ignore index left
            out). Default 'present'.
        scene_file (str, optional): the scene category file; default
            ``sceneCategories.txt`` in the data root (three folders above
            each image).
        **kwargs: ``EncoderDecoder``'s arguments; the backbone needs a
            guidance add-on (``addons=dict(guidance=...)``).
    """

    def __init__(self,
                 image_labels: str = 'present',
                 scene_file: Optional[str] = None,
                 **kwargs):
        super().__init__(**kwargs)
        if image_labels not in IMAGE_LABELS:
            raise ValueError(f'image_labels must be one of {IMAGE_LABELS}, '
                             f'got {image_labels!r}')
        guidance_of(self, type(self).__name__)
        self.image_labels_from = image_labels
        self.scene_file = scene_file
        self._scene_files: Dict[str, SceneCategories] = {}

    def _scenes(self, img_path: str) -> SceneCategories:
        path = self.scene_file or scene_file_of(img_path)
        if path not in self._scene_files:
            self._scene_files[path] = SceneCategories(path)
        return self._scene_files[path]

    def num_image_classes(self, dataset) -> int:
        """C, the classes of the image labels of ``dataset``."""
        if self.image_labels_from == 'present':
            return self.decode_head.num_classes
        return len(self._scenes(dataset.get_data_info(0)['img_path']).scenes)

    def image_labels(self, data_samples: List) -> Tensor:
        """(B,) scene indices or (B, C) booleans of the classes present."""
        if self.image_labels_from == 'scene':
            return torch.tensor(
                [self._scenes(s.img_path).label(s.img_path)
                 for s in data_samples],
                device=self.data_preprocessor.device)
        num_classes = self.decode_head.num_classes
        present = []
        for sample in data_samples:
            values = sample.gt_sem_seg.data.unique()
            values = values[values < num_classes]  # ignore index and beyond
            row = torch.zeros(num_classes, dtype=torch.bool,
                              device=values.device)
            row[values.long()] = True
            present.append(row)
        return torch.stack(present)

    def loss(self, inputs: Tensor, data_samples: List) -> dict:
        losses = super().loss(inputs, data_samples)
        guidance = guidance_of(self, type(self).__name__).losses(
            self.image_labels(data_samples))
        losses.update(add_prefix(guidance, 'backbone'))
        return losses


@CLS_MODELS.register_module()
class GuidedImageClassifier(ImageClassifier):
    """mmpretrain's ``ImageClassifier`` with DA-VPT's guidance losses; the
    image label is the class. The backbone (e.g. ``ClsTokenViT``) must hold
    a prompted ViT with the guidance add-on."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        guidance_of(self, type(self).__name__)

    def num_image_classes(self, dataset) -> int:
        return self.head.num_classes

    def image_labels(self, data_samples: List) -> Tensor:
        return torch.cat([s.gt_label for s in data_samples]).to(
            self.data_preprocessor.device)

    def loss(self, inputs: Tensor, data_samples: List) -> dict:
        losses = super().loss(inputs, data_samples)
        losses.update(
            guidance_of(self, type(self).__name__).losses(
                self.image_labels(data_samples)))
        return losses
