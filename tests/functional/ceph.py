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

"""The tests' own Ceph cluster: brought up once, shared, torn down after.

deploy/ceph/up makes a single-node cluster in a state directory of the
tests (``$KVMX_TEST_DIR/kvmx-ceph-tests``, on a free port chosen when it
is created: the all-in-one cloud's cluster, on 6789 in its own directory,
is left alone). The first test of a process that needs it brings it up
(about 15-40 s, more when the Debian packages are installed first); the
process registers as a user, and the last user to exit stops it and
removes its directory (``down --purge``). The Ceph tests are scheduled
on one test worker (``group_regex`` in .stestr.conf), so a run brings the
cluster up once.

When the cluster cannot be brought up (not root, no packages and no
network to install them, a port conflict), :func:`cluster` raises
:class:`Unavailable` with deploy/ceph/up's message, which the tests turn
into a skip that says why.
"""

import atexit
import contextlib
import fcntl
import os
import shlex
import socket
import subprocess
import threading

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
UP = os.path.join(REPO, 'deploy', 'ceph', 'up')
DOWN = os.path.join(REPO, 'deploy', 'ceph', 'down')
# A cold up may install packages (and wait for another install's lock).
UP_TIMEOUT = 900
COMMAND_TIMEOUT = 120

_lock = threading.Lock()
_cluster = {}


class Unavailable(Exception):
    """The tests' Ceph cluster cannot be brought up; the message says why."""


def state_dir():
    return os.path.join(os.environ.get('KVMX_TEST_DIR', '/var/tmp'),
                        'kvmx-ceph-tests')


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _parse_env(text):
    env = {}
    for line in text.splitlines():
        if line.startswith('export '):
            name, _, value = line[len('export '):].partition('=')
            env[name] = shlex.split(value)[0]
    return env


@contextlib.contextmanager
def _users_lock(directory):
    """Serialises registering, leaving and the last user's down."""
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, 'users.lock'), 'a') as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield os.path.join(directory, 'users')


def _alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


class Cluster(object):
    """A running cluster: its env values (CEPH_CONF, CEPH_MON_HOST,
    CEPH_CINDER_KEY, ...) and helpers to run Ceph's commands on it."""

    def __init__(self, env):
        self.env = env
        self.conf = env['CEPH_CONF']
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

    def rbd(self, *args, **kwargs):
        return self.run('rbd', *args, user='cinder', **kwargs).stdout


def _clean_env():
    env = dict(os.environ)
    env.pop('CEPH_CONF', None)
    env.pop('CEPH_ARGS', None)
    return env


def cluster():
    """The tests' cluster, up (brought up on first use in the process).

    :raises: Unavailable
    """
    with _lock:
        if 'error' in _cluster:
            raise Unavailable(_cluster['error'])
        if 'cluster' not in _cluster:
            try:
                _cluster['cluster'] = _bring_up()
            except Unavailable as ex:
                _cluster['error'] = str(ex)
                raise
        return _cluster['cluster']


def _bring_up():
    if os.geteuid() != 0:
        raise Unavailable('deploy/ceph/up needs root')
    directory = state_dir()
    with _users_lock(directory + '.users') as users:
        os.makedirs(users, exist_ok=True)
        env = dict(_clean_env(), KVMX_CEPH_DIR=directory)
        if not os.path.exists(os.path.join(directory, 'ceph.conf')):
            env['KVMX_CEPH_PORT'] = str(_free_port())
        try:
            proc = subprocess.run([UP, '--print-env'], env=env,
                                  stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True,
                                  timeout=UP_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise Unavailable('deploy/ceph/up did not finish in %d s'
                              % UP_TIMEOUT)
        if proc.returncode:
            raise Unavailable('deploy/ceph/up failed: %s' % (
                proc.stderr.strip().splitlines() or ['?'])[-1])
        open(os.path.join(users, str(os.getpid())), 'w').close()
    atexit.register(_leave, directory)
    return Cluster(_parse_env(proc.stdout))


def _leave(directory):
    """Unregister this process; the last user stops the cluster and
    removes it."""
    with _users_lock(directory + '.users') as users:
        try:
            os.unlink(os.path.join(users, str(os.getpid())))
        except FileNotFoundError:
            pass
        others = [int(p) for p in os.listdir(users)
                  if p.isdigit() and _alive(int(p))]
        if others:
            return
        subprocess.run([DOWN, '--purge', '--dir', directory],
                       stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=COMMAND_TIMEOUT, env=_clean_env())
