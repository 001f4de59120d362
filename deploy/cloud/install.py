"""The OpenStack services and nova-kvmx in one virtualenv, from PyPI at the
versions of upper-constraints.txt."""

import hashlib
import os
import subprocess

from cloud import layout
from cloud import procs

PACKAGES = ('nova', 'openstack-placement', 'keystone', 'glance', 'neutron',
            'cinder', 'python-openstackclient', 'PyMySQL', 'SQLAlchemy<2.1',
            'uWSGI', 'pymemcache', 'python-memcached', 'libvirt-python')
# Ceph's Python bindings (cinder-volume's RBD driver) are Debian's only
# (python3-rados, python3-rbd, which deploy/ceph installs): these modules,
# and nothing else of the system's site-packages, are linked into the venv.
SYSTEM_MODULES = ('rados', 'rbd')
DIST_PACKAGES = '/usr/lib/python3/dist-packages'
CONSTRAINTS = os.path.join(layout.REPO, 'upper-constraints.txt')
STAMP = os.path.join(layout.VENV, '.kvmx-cloud-installed')


# What makes the nova-kvmx package.
SOURCES = ('nova_kvmx', 'nova', 'setup.cfg', 'setup.py', 'requirements.txt')


def _fingerprint():
    """What the venv was made from: the package list, the constraints and
    nova-kvmx's sources as committed and as changed since."""
    digest = hashlib.sha256(' '.join(PACKAGES).encode())
    with open(CONSTRAINTS, 'rb') as f:
        digest.update(f.read())
    for argv in (['git', 'ls-files', '-s', '--'],
                 ['git', 'diff', 'HEAD', '--']):
        digest.update(subprocess.run(argv + list(SOURCES), cwd=layout.REPO,
                                     stdout=subprocess.PIPE).stdout)
    return digest.hexdigest()


def venv_up():
    """Create or update the virtualenv; whether anything changed."""
    fingerprint = _fingerprint()
    try:
        with open(STAMP) as f:
            if f.read().strip() == fingerprint:
                return False
    except OSError:
        pass
    pip = [os.path.join(layout.BIN, 'pip'), 'install', '-q', '-c',
           CONSTRAINTS]
    if not os.path.exists(os.path.join(layout.BIN, 'python')):
        procs.say('creating %s' % layout.VENV)
        procs.run(['python3', '-m', 'venv', layout.VENV])
        procs.run(pip[:2] + ['-q', '-U', 'pip'])
    procs.say('installing OpenStack and nova-kvmx into %s' % layout.VENV)
    procs.run(pip + list(PACKAGES), timeout=1800)
    # A normal install, not editable (see the README).
    procs.run(pip + ['--force-reinstall', '--no-deps', layout.REPO],
              timeout=600)
    with open(STAMP, 'w') as f:
        f.write(fingerprint + '\n')
    return True


def link_system_modules():
    """Link Debian's extension modules SYSTEM_MODULES into the venv (made
    from the system's Python: the same ABI); a second call changes
    nothing."""
    site, suffix = procs.run([
        os.path.join(layout.BIN, 'python'), '-c',
        'import sysconfig; print(sysconfig.get_paths()["platlib"], '
        'sysconfig.get_config_var("EXT_SUFFIX"))'], quiet=True).split()
    for module in SYSTEM_MODULES:
        target = os.path.join(DIST_PACKAGES, module + suffix)
        if not os.path.exists(target):
            raise procs.DeployError(
                'venv', 'no %s (Debian package python3-%s)' % (target,
                                                               module))
        link = os.path.join(site, module + suffix)
        if os.path.realpath(link) != target:
            if os.path.lexists(link):
                os.unlink(link)
            os.symlink(target, link)
