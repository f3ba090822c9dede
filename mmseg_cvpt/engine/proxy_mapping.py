"""DA-VPT's class-to-proxy mapping, kept up to date during training."""
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS
from mmengine.runner import EpochBasedTrainLoop

from ..models.backbones import find_addon, find_prompted_backbone
from ..models.guidance import ProxyGuidance
from .loading import unwrap_model
from .rng import preserved_rng_states
from .training_images import (check_positive_ints, preprocessed_batches,
                              rank_share)


@HOOKS.register_module()
class ClassProxyHook(Hook):
    """Group the classes into the guided prompts' proxies (DA-VPT).

    Before training, unless the checkpoint holds a mapping (``--resume``,
    ``load_from``): the frozen model without prompts measures the mean
    feature of each class (X, the mean patch token at the guided layers) on
    ``images_per_class`` x C training images drawn at random (about
    ``images_per_class`` per class when classes are balanced), and cosine
    k-means groups the classes. During training the model's guidance adds
    each batch's features to per-class sums; every epoch (epoch-based runs)
    or every ``interval`` iterations they are summed over the ranks and the
    classes are re-clustered from the previous centroids, so every rank holds
    the same mapping. Classes without features keep their group; both are
    logged. The global random streams are left as they were.

    The model is a ``GuidedEncoderDecoder`` or ``GuidedImageClassifier``
    (their ``image_labels`` and ``num_image_classes``).

    Args:
        images_per_class (int): Default 10.
        interval (int, optional): re-cluster every N iterations; None (the
            default) re-clusters every epoch and needs an epoch-based loop.
        batch_size (int): images per forward of the first mapping.
            Default 16.
    """

    priority = 'LOW'

    def __init__(self, images_per_class: int = 10, interval=None,
                 batch_size: int = 16):
        check_positive_ints(
            type(self).__name__, images_per_class=images_per_class,
            batch_size=batch_size,
            **({} if interval is None else dict(interval=interval)))
        self.images_per_class = images_per_class
        self.interval = interval
        self.batch_size = batch_size

    @staticmethod
    def _parts(runner):
        model = unwrap_model(runner.model)
        guidance = find_addon(model, ProxyGuidance)
        if guidance is None or not hasattr(model, 'image_labels'):
            raise TypeError(
                'ClassProxyHook needs a GuidedEncoderDecoder or '
                'GuidedImageClassifier whose backbone has the guidance '
                f'add-on, got {type(model).__name__}')
        return model, guidance

    def before_train(self, runner) -> None:
        model, guidance = self._parts(runner)
        if self.interval is None and not isinstance(runner.train_loop,
                                                    EpochBasedTrainLoop):
            raise ValueError(
                'ClassProxyHook: iteration-based training needs '
                'interval=N (re-cluster every N iterations)')
        if guidance.is_mapped:
            print_log(
                f'ClassProxyHook: the checkpoint\'s mapping of '
                f'{guidance.num_classes} classes is kept', logger='current')
            return
        dataset = runner.train_dataloader.dataset
        guidance.initialise(model.num_image_classes(dataset))
        count = min(len(dataset), self.images_per_class * guidance.num_classes)
        indices = rank_share(runner, count, type(self).__name__)
        backbone = find_prompted_backbone(model)
        with preserved_rng_states():
            for batch in preprocessed_batches(runner, model, indices,
                                              self.batch_size):
                guidance.accumulate(
                    guidance.prompt_free_features(backbone, batch['inputs']),
                    model.image_labels(batch['data_samples']))
        self._recluster(guidance, f'on {count} images of the frozen model '
                        'without prompts')

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        if self.interval and (runner.iter + 1) % self.interval == 0:
            self._recluster(self._parts(runner)[1],
                            f'at iteration {runner.iter + 1}')

    def after_train_epoch(self, runner) -> None:
        if self.interval is None:
            self._recluster(self._parts(runner)[1],
                            f'after epoch {runner.epoch + 1}')

    @staticmethod
    def _recluster(guidance, when: str) -> None:
        change = guidance.recluster()
        unseen = change['unseen']
        print_log(
            f'ClassProxyHook: re-clustered {change["num_classes"]} classes '
            f'into {guidance.num_guided} proxies {when}; '
            f'{change["moved"]} classes changed proxy; '
            f'{len(unseen)} classes without features kept their group'
            + (f': {unseen[:20]}' if unseen else ''),
            logger='current')
