"""Test-time augmentation that reports what it merged."""
from mmengine.logging import print_log

from mmseg.models import SegTTAModel
from mmseg.registry import MODELS


@MODELS.register_module()
class ViewCountingSegTTAModel(SegTTAModel):
    """mmseg's :class:`SegTTAModel` that counts the views it merges.

    The merge itself is unchanged (softmax scores averaged over views). The
    model logs the number of views merged for the first image, and keeps
    ``num_images`` and ``num_views`` (totals over the run) so that a caller
    can check that the augmented path ran.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.num_images = 0
        self.num_views = 0

    def merge_preds(self, data_samples_list):
        """Merge each image's views; see :meth:`SegTTAModel.merge_preds`."""
        if self.num_images == 0 and data_samples_list:
            print_log(
                'Test-time augmentation: merging '
                f'{len(data_samples_list[0])} views per image.',
                logger='current')
        self.num_images += len(data_samples_list)
        self.num_views += sum(len(views) for views in data_samples_list)
        return super().merge_preds(data_samples_list)
