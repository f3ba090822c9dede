"""Print the full config (mmseg's print_config, plus task resolution).

    python tools/misc/print_config.py configs/cvpt/vitb_vtab_fgvc.py \
        --cfg-options task=dtd
"""
import argparse

from mmengine import DictAction

from mmseg_cvpt.engine import load_config
from mmseg_cvpt.engine.cli import add_debug_argument, run_tool


def parse_args():
    parser = argparse.ArgumentParser(description='Print the whole config')
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override some settings in the used config, the key-value pair '
        'in xxx=yyy format will be merged into config file (e.g. task=dtd '
        'for the classification configs).')
    parser.add_argument(
        '--output-file', default=None, help='also dump the config here')
    add_debug_argument(parser)
    return parser.parse_args()


def main():
    args = parse_args()
    cfg = load_config(args.config, args.cfg_options)
    print(f'Config:\n{cfg.pretty_text}')
    if args.output_file is not None:
        cfg.dump(args.output_file)


if __name__ == '__main__':
    run_tool(main)
