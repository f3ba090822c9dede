"""Install mmseg_cvpt (``pip install -e .`` for development).

Like the OpenMMLab packages, the configs and tools are shipped inside the
package as ``mmseg_cvpt/.mim/{configs,tools}`` so that an installed copy can
resolve ``mmseg_cvpt::cvpt/upernet_vitb_ade20k.py`` without this repository.
An editable install links them; a regular install copies them.
"""
import os
import os.path as osp
import shutil
import sys

from setuptools import find_packages, setup

ROOT = osp.dirname(osp.abspath(__file__))
MIM_FILES = ('configs', 'tools', 'model-index.yml')


def read_requirements(name):
    with open(osp.join(ROOT, 'requirements', name)) as f:
        lines = (line.split('#')[0].strip() for line in f)
        return [line for line in lines if line]


def add_mim_extension():
    """Place configs/, tools/ and model-index.yml under mmseg_cvpt/.mim."""
    editable = any(arg in sys.argv for arg in ('develop', 'editable_wheel'))
    mim_root = osp.join(ROOT, 'mmseg_cvpt', '.mim')
    os.makedirs(mim_root, exist_ok=True)
    for name in MIM_FILES:
        src, dst = osp.join(ROOT, name), osp.join(mim_root, name)
        if osp.islink(dst) or osp.isfile(dst):
            os.remove(dst)
        elif osp.isdir(dst):
            shutil.rmtree(dst)
        if editable:
            os.symlink(osp.relpath(src, mim_root), dst)
        elif osp.isdir(src):
            shutil.copytree(src, dst)
        else:
            shutil.copyfile(src, dst)


if __name__ == '__main__':
    add_mim_extension()
    version = {}
    with open(osp.join(ROOT, 'mmseg_cvpt', 'version.py')) as f:
        exec(f.read(), version)
    setup(
        name='mmseg_cvpt',
        version=version['__version__'],
        description='Visual prompt tuning (VPT, CVPT, BPT, DA-VPT) of frozen '
        'ViTs for MMSegmentation and MMPretrain',
        long_description=open(osp.join(ROOT, 'README.md')).read(),
        long_description_content_type='text/markdown',
        packages=find_packages(exclude=('tests', 'tools', 'configs')),
        include_package_data=True,
        package_data={'mmseg_cvpt': ['.mim/model-index.yml',
                                     '.mim/configs/**/*.py',
                                     '.mim/tools/**/*']},
        python_requires='>=3.9',
        install_requires=read_requirements('runtime.txt'),
        extras_require={
            'tests': read_requirements('tests.txt'),
            'optional': read_requirements('optional.txt'),
        },
        license='Apache-2.0',
        zip_safe=False)
