"""Import a script under tools/ as a module, for tests that call its
functions in-process."""
import importlib.util
import os.path as osp

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def load_tool(relative_path: str):
    """``load_tool('analysis/benchmark.py')``: tools/analysis/benchmark.py."""
    path = osp.join(ROOT, 'tools', relative_path)
    spec = importlib.util.spec_from_file_location(
        osp.splitext(osp.basename(path))[0], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def count_params_output(config: str, capsys) -> str:
    """What ``tools/analysis/count_params.py CONFIG`` prints, run in this
    process (``capsys``: pytest's capture)."""
    capsys.readouterr()
    load_tool('analysis/count_params.py').main([config])
    return capsys.readouterr().out
