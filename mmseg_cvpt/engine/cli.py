"""How our tools end: bad input is one line and exit status 2.

A tool's ``__main__`` calls ``run_tool(main)``. An error in what the user
gave (a file that is missing, damaged or not a checkpoint, an option or a
config that cannot be used: :data:`INPUT_ERRORS`) ends the tool with
``<tool>: error: <message>`` on one line and exit status 2, as argparse ends
on a bad option; anything else is a problem of ours and keeps its traceback.
``--debug`` (every tool's option, :func:`add_debug_argument`) shows the
traceback of input errors too. Called in-process (``main(argv)``), the tools
raise as before. :func:`run_as_command` runs a tool script in this
interpreter as its command line would (one interpreter start for several
tools).
"""
import argparse
import os.path as osp
import runpy
import sys
from typing import Callable, List

from mmengine.config.utils import ConfigParsingError

from ..models.backbones import FrozenBaseError
from .checkpoint_files import CheckpointFileError
from .run_lock import WorkDirBusyError

#: what a user's input causes: files, options, configs, checkpoints
INPUT_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError,
                PermissionError, CheckpointFileError, FrozenBaseError,
                WorkDirBusyError, ConfigParsingError, SyntaxError, KeyError,
                ValueError)


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'{text!r} is not an integer')
        if value < minimum:
            raise argparse.ArgumentTypeError(
                f'{value} is below the minimum {minimum}')
        return value

    return parse


#: an argparse ``type``: an integer of at least 1
positive_int = int_at_least(1)


def add_debug_argument(parser: argparse.ArgumentParser) -> None:
    """``--debug``: show the traceback of an input error."""
    parser.add_argument(
        '--debug',
        action='store_true',
        help='show the traceback of an error in the input (files, options, '
        'configs) instead of its one-line message')


def one_line(error: BaseException) -> str:
    """The error's message on one line (a KeyError's without its quotes)."""
    text = error.args[0] if isinstance(error, KeyError) and error.args \
        else error
    return ' '.join(str(text).split()) or type(error).__name__


def run_tool(main: Callable) -> None:
    """Run ``main()`` (it reads ``sys.argv``) and exit with its status (the
    integer it returns; 0 for anything else); an input error exits with
    status 2 and a one-line message unless ``--debug`` is given."""
    try:
        status = main()
    except INPUT_ERRORS as error:
        if '--debug' in sys.argv[1:]:
            raise
        prog = osp.basename(sys.argv[0])
        print(f'{prog}: error: {one_line(error)}', file=sys.stderr)
        sys.exit(2)
    sys.exit(status if isinstance(status, int) else 0)


def forget_visualizers() -> None:
    """Drop the visualizers that earlier runners of this process made.
    mmseg's configs name theirs 'visualizer', and mmengine hands a new
    runner the existing instance of that name, with the earlier run's
    folder: the new run's scalars (its mIoU) would be written there."""
    from mmengine.visualization import Visualizer
    classes = [Visualizer]
    while classes:
        cls = classes.pop()
        cls._instance_dict.clear()
        classes += cls.__subclasses__()


def run_as_command(argv: List[str]) -> int:
    """Run the tool script ``argv[0]`` with the arguments ``argv[1:]`` in
    this interpreter, as ``python argv...`` would; its exit status."""
    forget_visualizers()
    saved = sys.argv
    sys.argv = list(argv)
    try:
        runpy.run_path(argv[0], run_name='__main__')
    except SystemExit as end:
        if end.code is None or isinstance(end.code, int):
            return end.code or 0
        print(end.code, file=sys.stderr)
        return 1
    finally:
        sys.argv = saved
    return 0
