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

"""The single-node Ceph of deploy/ceph: up, use it, up again, down.

Skipped unless KVMX_CEPH=1: deploy/ceph/up installs Debian packages and
runs Ceph daemons as root. The test's cluster has its own state directory
and mon port, so a cluster the all-in-one cloud runs from the default
directory is left alone (the machine needs room for both: ~0.5 GiB).
"""

import json
import os
import shlex
import socket
import subprocess
import tempfile
import time

from oslotest import base

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
UP = os.path.join(REPO, 'deploy', 'ceph', 'up')
DOWN = os.path.join(REPO, 'deploy', 'ceph', 'down')
DAEMONS = ('mon.a', 'mgr.x', 'osd.0')
USERS = ('cinder', 'glance', 'nova')
# A cold up may install packages (and wait for another install's lock).
SCRIPT_TIMEOUT = 500


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def parse_env(text):
    """{name: value} of the `export NAME=value` lines of up --print-env."""
    env = {}
    for line in text.splitlines():
        name, _, value = line.removeprefix('export ').partition('=')
        env[name] = shlex.split(value)[0]
    return env


def rss_mib(pid):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) // 1024


class CephFixtureTest(base.BaseTestCase):

    def setUp(self):
        super().setUp()
        if os.environ.get('KVMX_CEPH') != '1':
            self.skipTest('set KVMX_CEPH=1 to run it: deploy/ceph/up '
                          'installs Ceph packages and starts Ceph daemons '
                          '(as root)')
        self.dir = tempfile.mkdtemp(
            prefix='kvmx-ceph-', dir=os.environ.get('KVMX_TEST_DIR',
                                                    '/var/tmp'))
        self.env = dict(os.environ, KVMX_CEPH_DIR=self.dir,
                        KVMX_CEPH_PORT=str(free_port()))
        self.env.pop('CEPH_CONF', None)
        self.env.pop('CEPH_ARGS', None)
        self.addCleanup(subprocess.run, [DOWN, '--purge'], env=self.env,
                        stdin=subprocess.DEVNULL, capture_output=True)
        self.figures = []

    def script(self, *args):
        """Run up or down; returns (stdout, seconds taken)."""
        start = time.monotonic()
        proc = subprocess.run(args, env=self.env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True,
                              timeout=SCRIPT_TIMEOUT)
        took = time.monotonic() - start
        self.assertEqual(0, proc.returncode, '%s failed:\n%s%s' % (
            shlex.join(args), proc.stdout, proc.stderr))
        return proc.stdout, took

    def run_ok(self, *args, user='admin', **kwargs):
        proc = self.run_as(*args, user=user, **kwargs)
        self.assertEqual(0, proc.returncode, '%s failed: %s' % (
            shlex.join(proc.args), proc.stderr))
        return proc.stdout

    def run_as(self, tool, *args, user='admin', text=True):
        """A ceph/rbd command as a cephx user, with that user's keyring."""
        return subprocess.run(
            [tool, '-c', self.ceph_env['CEPH_CONF'], '--id', user,
             '--keyring', self.ceph_env['CEPH_%s_KEYRING' % user.upper()],
             *args], stdin=subprocess.DEVNULL, capture_output=True,
            text=text, timeout=120)

    def ceph(self, *args):
        return json.loads(self.run_ok('ceph', '--format', 'json', *args))

    def pids(self):
        pids = {}
        for name in DAEMONS:
            with open(os.path.join(self.dir, 'run', name + '.pid')) as f:
                pids[name] = int(f.read())
        return pids

    def processes(self):
        """PIDs of processes, zombies included, using this cluster."""
        found = []
        for entry in os.listdir('/proc'):
            try:
                with open('/proc/%s/cmdline' % entry, 'rb') as f:
                    argv = f.read()
            except (FileNotFoundError, NotADirectoryError,
                    ProcessLookupError):
                continue
            if self.dir.encode() in argv:
                found.append(int(entry))
        return found

    def assertGone(self, pids):
        self.assertEqual([], self.processes())
        self.assertEqual([], [p for p in pids.values()
                              if os.path.exists('/proc/%d' % p)])

    def assertHealthy(self):
        status = self.ceph('status')
        self.assertEqual('HEALTH_OK', status['health']['status'])
        self.assertEqual(self.ceph_env['CEPH_FSID'], status['fsid'])

    def test_up_use_up_down(self):
        out, cold = self.script(UP, '--print-env')
        self.ceph_env = parse_env(out)
        self.assertEqual(
            'v1:127.0.0.1:%s' % self.env['KVMX_CEPH_PORT'],
            self.ceph_env['CEPH_MON_HOST'])
        self.assertEqual(os.path.join(self.dir, 'ceph.conf'),
                         self.ceph_env['CEPH_CONF'])
        self.assertHealthy()
        pools = {p['pool_name']: p
                 for p in self.ceph('osd', 'pool', 'ls', 'detail')}
        for name in ('volumes', 'vms', 'images'):
            self.assertEqual(1, pools[name]['size'])
            self.assertIn('rbd', pools[name]['application_metadata'])
        pids = self.pids()
        rss = {name: rss_mib(pid) for name, pid in pids.items()}

        self.check_cinder_rbd()
        self.check_caps_enforced()
        self.check_qemu_librbd()
        self.run_ok('rbd', 'create', '--size', '4M', 'volumes/kept',
                    user='cinder')

        # Up again: nothing started, nothing rewritten.
        files = [self.ceph_env['CEPH_CONF'],
                 os.path.join(self.dir, 'env')] + [
            self.ceph_env['CEPH_%s_KEYRING' % u.upper()]
            for u in ('admin',) + USERS]
        mtimes = {f: os.stat(f).st_mtime_ns for f in files}
        out, warm = self.script(UP, '--print-env')
        self.assertEqual(self.ceph_env, parse_env(out))
        self.assertEqual(pids, self.pids())
        self.assertEqual(mtimes, {f: os.stat(f).st_mtime_ns for f in files})

        # Down keeps the data; up restarts the daemons on it.
        _, down = self.script(DOWN)
        self.assertGone(pids)
        _, restart = self.script(UP)
        self.assertHealthy()
        self.assertNotEqual(pids, self.pids())
        self.assertIn('kept', self.run_ok('rbd', 'ls', 'volumes',
                                          user='cinder').split())

        self.check_failing_daemon_named()

        pids = self.pids()
        _, purge = self.script(DOWN, '--purge')
        self.assertGone(pids)
        self.assertFalse(os.path.exists(self.dir))

        figures = ('cold up %.1f s, warm up %.1f s, down %.1f s, up on '
                   'existing data %.1f s, down --purge %.1f s; RSS MiB %s'
                   % (cold, warm, down, restart, purge, rss))
        print(figures)
        self.assertLess(warm, 30, figures)

    def check_cinder_rbd(self):
        data = os.urandom(1024 * 1024 + 512)
        with tempfile.NamedTemporaryFile(dir=self.dir) as f:
            f.write(data)
            f.flush()
            self.run_ok('rbd', 'import', f.name, 'volumes/data',
                        user='cinder')
        info = json.loads(self.run_ok('rbd', 'info', '--format', 'json',
                                      'volumes/data', user='cinder'))
        self.assertEqual(len(data), info['size'])
        self.assertEqual(data, self.run_ok('rbd', 'export', 'volumes/data',
                                           '-', user='cinder', text=False))
        self.run_ok('rbd', 'rm', 'volumes/data', user='cinder')
        self.assertNotIn('data', self.run_ok('rbd', 'ls', 'volumes',
                                             user='cinder').split())

    def check_caps_enforced(self):
        # Glance writes its pool, not Cinder's; Nova writes 'vms'.
        self.run_ok('rbd', 'create', '--size', '4M', 'images/g',
                    user='glance')
        self.run_ok('rbd', 'rm', 'images/g', user='glance')
        denied = self.run_as('rbd', 'create', '--size', '4M', 'volumes/g',
                             user='glance')
        self.assertNotEqual(0, denied.returncode)
        self.assertIn('Operation not permitted', denied.stderr)
        self.assertNotIn('g', self.run_ok('rbd', 'ls', 'volumes').split())
        self.run_ok('rbd', 'create', '--size', '4M', 'vms/n', user='nova')
        self.run_ok('rbd', 'rm', 'vms/n', user='nova')

    def check_failing_daemon_named(self):
        # An OSD whose key is not the one registered exits at once: up
        # fails naming it, with what it wrote.
        self.script(DOWN)
        keyring = os.path.join(self.dir, 'osd', 'ceph-0', 'keyring')
        with open(keyring) as f:
            good = f.read()
        other = subprocess.run(['ceph-authtool', '--gen-print-key'],
                               capture_output=True, text=True, check=True)
        with open(keyring, 'w') as f:
            f.write('[osd.0]\n\tkey = %s\n' % other.stdout.strip())
        try:
            proc = subprocess.run([UP], env=self.env, capture_output=True,
                                  text=True, timeout=SCRIPT_TIMEOUT)
        finally:
            with open(keyring, 'w') as f:
                f.write(good)
        self.assertNotEqual(0, proc.returncode)
        self.assertIn('osd.0 exited with status', proc.stderr)
        self.assertIn('failed to fetch mon config', proc.stderr)

    def check_qemu_librbd(self):
        # QEMU's own librbd, as libvirt's QEMU opens the guests' disks;
        # the keyring is found by ceph.conf's `keyring` from the user name.
        target = 'rbd:volumes/q:id=cinder:conf=%s' % (
            self.ceph_env['CEPH_CONF'])
        proc = subprocess.run(['qemu-img', 'create', '-f', 'raw', target,
                               '16M'], capture_output=True, text=True,
                              timeout=120, env=self.env)
        self.assertEqual(0, proc.returncode, proc.stderr)
        proc = subprocess.run(['qemu-img', 'info', '--output', 'json',
                               target], capture_output=True, text=True,
                              timeout=120, env=self.env)
        self.assertEqual(0, proc.returncode, proc.stderr)
        self.assertEqual(16 * 1024 ** 2,
                         json.loads(proc.stdout)['virtual-size'])
        self.run_ok('rbd', 'rm', 'volumes/q', user='cinder')
