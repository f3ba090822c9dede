import gc
import http.server
import threading

import pytest
import torch
from mmengine.logging import MessageHub, MMLogger
from mmengine.registry import DefaultScope, init_default_scope

from mmseg_cvpt.engine.cli import forget_visualizers
from tiny_runs import DUMP_HOOK, make_demo_data, module_env


def pytest_configure(config):
    # One torch thread, as tool_env gives the tools' processes: a result
    # compared bit for bit with a tool's is computed the same way, and the
    # tiny models run faster so than with pytest-xdist's workers contending
    # for the same cores.
    torch.set_num_threads(1)
    config.addinivalue_line(
        'markers', 'tool: starts processes (a tool run as a user runs it, '
        'distributed runs, signals); -m "not tool" is the fast tier')


@pytest.fixture(autouse=True)
def survivors_left_out_of_garbage_collection():
    """mmengine's datasets run a full garbage collection when built (two
    per run), over every object of the test process: the imported modules'
    and what earlier tests keep (session and module fixtures, dynamo's
    caches), which would make a late test's runs slower than an early
    one's. After each test, its garbage is collected and what survives is
    frozen (``gc.freeze``): a collection passes it over, and scans only
    what the running test made."""
    yield
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def mmseg_default_scope():
    """Start every test in mmseg's scope, without the runs of earlier tests:
    a runner-based test leaves its own default scope (mmpretrain for
    classification) behind, and mmengine keeps a run's default scope,
    message hub and logger under the run's name (config file name and
    start second): a run of the same config in the same second would be
    handed the earlier run's, in whatever scope it was current."""
    forget_runs()
    init_default_scope('mmseg')


def forget_runs():
    """Drop mmengine's per-run instances (default scopes, message hubs,
    loggers, closed; visualizers) but its own default ones."""
    for manager in (DefaultScope, MessageHub, MMLogger):
        for name in list(manager._instance_dict):
            if name != 'mmengine':
                made = manager._instance_dict.pop(name)
                for handler in getattr(made, 'handlers', ()):
                    handler.close()
    forget_visualizers()


@pytest.fixture(scope='session')
def demo_root(tmp_path_factory):
    """The synthetic ADE20K-layout demo data, 16 + 4 scenes: made once per
    test process (each pytest-xdist worker; 1.5 s), read only."""
    return make_demo_data(tmp_path_factory.mktemp('ade20k_demo'))


@pytest.fixture
def http_server():
    """A local HTTP server that answers 404: (its URL, the paths it was
    asked for)."""
    requests = []

    class Handler(http.server.BaseHTTPRequestHandler):

        def do_GET(self):
            requests.append(self.path)
            self.send_error(404)

        do_HEAD = do_GET

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(('127.0.0.1', 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f'http://127.0.0.1:{server.server_port}', requests
    server.shutdown()
    server.server_close()


@pytest.fixture
def hook_module(tmp_path):
    """An environment whose PYTHONPATH has the DUMP_HOOK hooks (the module
    dump_trainable_hook)."""
    return module_env(tmp_path, 'dump_trainable_hook', DUMP_HOOK)


#: the longest tests (tool runs, processes): collected first, so that
#: pytest-xdist starts them first and its workers finish together
LONGEST_FIRST = (
    'test_compare_methods_runs_every_method_once_per_setting',
    'test_timm_demo_trains_and_tests_with_aug_test',
    'test_compare_methods_on_classification',
    'test_stopped_peer_ends_the_other_rank_with_an_error',
    'test_compare_methods_reruns_changed_settings',
    'test_test_tools',
    'test_dist_train_two_cpu_ranks',
    'test_two_ranks_hold_the_same_mapping',
    'test_two_ranks_end_with_identical_whitening',
)


def pytest_collection_modifyitems(items):
    def rank(item):
        name = item.originalname
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else \
            len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the others keep their order
