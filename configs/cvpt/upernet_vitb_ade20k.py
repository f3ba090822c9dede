# CVPT on ADE20K: UperNet + frozen ViT-B/16 (ImageNet-21k) with 200
# cross-attention prompts per layer; only the prompts and the heads train.
# The setting (model layout, data, schedule, hooks, TTA):
# ../_base_/upernet_vitb_ade20k.py, whose `pretrained` variable names the
# checkpoint (or --cfg-options model.backbone.init_cfg.checkpoint=PATH).
#
# Train: tools/dist_train.sh configs/cvpt/upernet_vitb_ade20k.py 8
# Test:  tools/test.py CONFIG CKPT [--aug-test]  (multi-scale 0.5-1.75 + flip)
_base_ = ['../_base_/upernet_vitb_ade20k.py']

# CVPTViT's defaults: cross-attention after self-attention, using the
# block's own frozen attention weights (ca_position=3, ca_weights='shared')
model = dict(
    backbone=dict(
        type='CVPTViT', num_prompts=200, prompt_depth='deep',
        prompt_dropout=0.1))
