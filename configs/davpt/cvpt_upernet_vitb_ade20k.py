# DA-VPT + CVPT on ADE20K: CVPT at P=200 (../cvpt/upernet_vitb_ade20k.py)
# with DA-VPT's guidance as in ./upernet_vitb_ade20k.py (which only swaps
# the backbone type of the CVPT config; this swaps it back): the class
# token's query vector is the cross-attention's query (W_q of the CA input at
# position 3), X the mean patch token of the last layer's input.
_base_ = ['./upernet_vitb_ade20k.py']

model = dict(
    backbone=dict(
        type='CVPTViT', prompt_cfg=dict(type='LayerPrompts', init='xavier')))
