# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.

"""The tests' own Ceph cluster: deploy/ceph's, brought up once, shared.

Skipped unless KVMX_CEPH=1 (and root): deploy/ceph installs Debian
packages and runs Ceph daemons. The cluster is deploy/ceph/cluster.py's,
driven in this process, in a state directory of the tests
(``$KVMX_TEST_DIR/kvmx-ceph-tests``, on a free port chosen when it is
created: the all-in-one cloud's cluster, on 6789 in its own directory, is
left alone). The first test of a process that needs it brings it up
(about 15-40 s, more when the Debian packages are installed first); the
process registers as a user, and the last user to exit stops it and
removes its directory. The Ceph tests are scheduled on one test worker
(``group_regex`` in .stestr.conf), so a run brings the cluster up once.

Without KVMX_CEPH=1 or root, :func:`cluster` raises :class:`Unavailable`
(the tests skip, saying why); a cluster asked for that cannot be brought
up raises :class:`BringUpFailed` with deploy/ceph's message, and the
tests fail.
"""

import atexit
import contextlib
import fcntl
import importlib.util
import os
import shlex
import socket
import subprocess
import sys
import threading

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
# A cold up may install packages (and wait for another install's lock).
INSTALL_TIMEOUT = 900
HEALTH_TIMEOUT = 300
COMMAND_TIMEOUT = 120

_lock = threading.Lock()
_cluster = {}


def _deploy_ceph():
    """deploy/ceph/cluster.py (deploy/ is no package)."""
    if 'kvmx_deploy_ceph' not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            'kvmx_deploy_ceph', os.path.join(REPO, 'deploy', 'ceph',
                                             'cluster.py'))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules['kvmx_deploy_ceph'] = module
    return sys.modules['kvmx_deploy_ceph']


class Unavailable(Exception):
    """No Ceph cluster is asked for, or none can run here; says why."""


class BringUpFailed(Exception):
    """The cluster asked for (KVMX_CEPH=1) did not come up."""


def state_dir():
    return os.path.join(os.environ.get('KVMX_TEST_DIR', '/var/tmp'),
                        'kvmx-ceph-tests')


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _users_lock(directory):
    """Serialises registering, leaving and the last user's down."""
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, 'users.lock'), 'a') as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield os.path.join(directory, 'users')


class Cluster(object):
    """A running cluster: its env values (CEPH_CONF, CEPH_MON_HOST,
    CEPH_CINDER_KEY, ...; deploy/ceph/README.md) and helpers to run
    Ceph's commands on it."""

    def __init__(self, env):
        self.env = env
        self.conf = env['CEPH_CONF']
        self.fsid = env['CEPH_FSID']
        host, _, port = env['CEPH_MON_HOST'].removeprefix('v1:').rpartition(
            ':')
        self.mon_host, self.mon_port = host, port

    def key(self, user):
        return self.env['CEPH_%s_KEY' % user.upper()]

    def run(self, tool, *args, user='admin', check=True, text=True,
            timeout=COMMAND_TIMEOUT):
        """``tool`` (rbd, ceph, ...) as a cephx user of this cluster."""
        proc = subprocess.run(
            [tool, '-c', self.conf, '--id', user, *args],
            stdin=subprocess.DEVNULL, capture_output=True, text=text,
            timeout=timeout, env=_clean_env())
        if check and proc.returncode:
            raise AssertionError('%s failed (%d): %s' % (
                shlex.join(proc.args), proc.returncode, proc.stderr))
        return proc

    def rbd(self, *args, user='cinder', **kwargs):
        return self.run('rbd', *args, user=user, **kwargs).stdout


def _clean_env():
    env = dict(os.environ)
    env.pop('CEPH_CONF', None)
    env.pop('CEPH_ARGS', None)
    return env


def cluster():
    """The tests' cluster, up (brought up on first use in the process).

    :raises: Unavailable, BringUpFailed
    """
    with _lock:
        if 'error' in _cluster:
            raise _cluster['error']
        if 'cluster' not in _cluster:
            try:
                _cluster['cluster'] = _bring_up()
            except (Unavailable, BringUpFailed) as ex:
                _cluster['error'] = ex
                raise
        return _cluster['cluster']


def _bring_up():
    if os.environ.get('KVMX_CEPH') != '1':
        raise Unavailable('set KVMX_CEPH=1 to run it: deploy/ceph '
                          'installs Ceph packages and starts Ceph daemons '
                          '(as root)')
    if os.geteuid() != 0:
        raise Unavailable('deploy/ceph needs root')
    deploy = _deploy_ceph()
    directory = state_dir()
    with _users_lock(directory + '.users') as users:
        os.makedirs(users, exist_ok=True)
        port = None
        if not os.path.exists(os.path.join(directory, 'ceph.conf')):
            port = _free_port()
        try:
            deploy.install_packages(INSTALL_TIMEOUT)
            # Kept: the daemons it starts are children of this process,
            # which reaps them when it stops them.
            fixture = deploy.Cluster(directory, port)
            values, _ = fixture.up(HEALTH_TIMEOUT)
        except deploy.Failure as ex:
            raise BringUpFailed('deploy/ceph: up failed: %s' % ex)
        open(os.path.join(users, str(os.getpid())), 'w').close()
    atexit.register(_leave, fixture)
    return Cluster(values)


def _leave(fixture):
    """Unregister this process; the last user stops the cluster and
    removes it."""
    deploy = _deploy_ceph()
    with _users_lock(fixture.dir + '.users') as users:
        try:
            os.unlink(os.path.join(users, str(os.getpid())))
        except FileNotFoundError:
            pass
        others = [int(p) for p in os.listdir(users)
                  if p.isdigit() and deploy._alive(int(p))]
        if others:
            return
        fixture.down(purge=True)


# Debian's python3-rados and python3-rbd (built for its Python 3.11, whose
# ABI the venv's Python shares).
DEBIAN_BINDINGS = '/usr/lib/python3/dist-packages'


def python_bindings():
    """Make Debian's rados and rbd modules importable in this process, and
    only those (the rest of Debian's dist-packages must not shadow the
    venv's packages): links to them in a directory put on sys.path, as an
    operator links them into nova-compute's venv (README)."""
    directory = os.path.join(os.environ.get('KVMX_TEST_DIR', '/var/tmp'),
                             'kvmx-ceph-python')
    os.makedirs(directory, exist_ok=True)
    for name in os.listdir(DEBIAN_BINDINGS):
        if name.split('.')[0] in ('rados', 'rbd') and name.endswith('.so'):
            link = os.path.join(directory, name)
            try:
                os.symlink(os.path.join(DEBIAN_BINDINGS, name), link)
            except FileExistsError:
                pass
    if directory not in sys.path:
        sys.path.append(directory)
