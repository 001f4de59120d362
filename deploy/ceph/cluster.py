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

"""A single-node Ceph cluster for the tests, CI and the all-in-one cloud.

One mon, one mgr and one OSD (BlueStore on a sparse file, as Ceph's own
vstart.sh does), cephx on, messenger v1 only, bound to 127.0.0.1. Every
file lives under one state directory, with its own ceph.conf: nothing is
read from or written to /etc/ceph or /var/lib/ceph. The daemons run in the
foreground (``-f``) as children started here, in their own session; their
PIDs are kept in pidfiles, their output and logs under the state directory.

Used by ``deploy/ceph/up`` and ``deploy/ceph/down``; Python stdlib only.
The cluster is driven through the ``ceph``, ``rbd``, ``ceph-authtool``,
``monmaptool`` commands of the Debian packages, always with the state
directory's ceph.conf.
"""

import contextlib
import errno
import fcntl
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

DEFAULT_DIR = '/var/lib/kvmx-ceph'
DEFAULT_PORT = 6789
HOST = '127.0.0.1'

PACKAGES = ('ceph-mon', 'ceph-osd', 'ceph-mgr', 'ceph-common',
            'qemu-block-extra', 'python3-rados', 'python3-rbd')

# The OSD's block device: a sparse file, so its size costs no disk until
# written. Room for Tempest's volumes and a few Glance images.
OSD_BLOCK_BYTES = 10 * 1024 ** 3
# BlueStore sizes its caches to this (the default, 4 GiB, is a server's).
OSD_MEMORY_TARGET = 1024 ** 3

POOLS = ('volumes', 'vms', 'images')
# Under the state directory, next to ceph.conf, keyrings and env.
SUBDIRS = ('log', 'run', 'crash', 'mon', 'mgr', 'osd')

# cephx users as Ceph's "Block Devices and OpenStack" guide creates them
# (cinder, glance); nova gets its own user for ephemeral disks in 'vms' and
# copy-on-write clones of Glance images. Volumes are attached with Cinder's
# user, as Nova does with the connection info Cinder returns.
USERS = {
    'client.cinder': {
        'mon': 'profile rbd',
        'osd': ('profile rbd pool=volumes, profile rbd pool=vms, '
                'profile rbd-read-only pool=images'),
        'mgr': 'profile rbd pool=volumes, profile rbd pool=vms',
    },
    'client.glance': {
        'mon': 'profile rbd',
        'osd': 'profile rbd pool=images',
        'mgr': 'profile rbd pool=images',
    },
    'client.nova': {
        'mon': 'profile rbd',
        'osd': 'profile rbd pool=vms, profile rbd-read-only pool=images',
        'mgr': 'profile rbd pool=vms',
    },
}

MGR_CAPS = ('mon', 'allow profile mgr', 'osd', 'allow *', 'mds', 'allow *')

# The first line of every ceph.conf written here: down --purge removes
# only a directory whose ceph.conf starts with it.
CONF_MARK = '# kvmx-ceph: single-node test cluster written by deploy/ceph/up'

# How long a daemon gets to exit on SIGTERM before SIGKILL.
STOP_TIMEOUT = 30
# How long a single ceph command may take (the cluster answers in
# milliseconds; a command that hangs means a mon that does not answer).
COMMAND_TIMEOUT = 60
LOG_TAIL = 15


class Failure(Exception):
    """Something an operator has to act on; the message says what."""


def say(*args):
    print('ceph:', *args, file=sys.stderr, flush=True)


def tail(path, start=0, lines=LOG_TAIL):
    """The last non-blank lines of a log file after offset start."""
    try:
        with open(path, 'rb') as f:
            f.seek(max(start, f.seek(0, os.SEEK_END) - 64 * 1024))
            text = f.read().decode(errors='replace')
    except FileNotFoundError:
        text = ''
    kept = [line for line in text.splitlines() if line.strip()][-lines:]
    return '\n'.join('    ' + line for line in kept) or '    (nothing)'


def size(path):
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


def write_if_changed(path, text, mode=0o644):
    """Atomically write text to path unless it is there already.

    Returns whether the file changed: a second `up` rewrites nothing."""
    try:
        with open(path) as f:
            if f.read() == text:
                os.chmod(path, mode)
                return False
    except FileNotFoundError:
        pass
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path),
                               prefix='.' + os.path.basename(path))
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, 'w') as f:
            f.write(text)
        os.rename(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return True


def run(args, timeout=COMMAND_TIMEOUT, check=True, env=None):
    """Run a command (argument list); returns the CompletedProcess."""
    try:
        proc = subprocess.run(args, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True,
                              timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise Failure('%s did not finish in %d s' % (
            shlex.join(args), timeout))
    if check and proc.returncode:
        raise Failure('%s failed (exit status %d):\n%s' % (
            shlex.join(args), proc.returncode,
            (proc.stderr or proc.stdout).strip()))
    return proc


def run_parallel(commands, env=None, timeout=COMMAND_TIMEOUT):
    """Run commands at the same time; a Failure lists those that failed.

    Every change of a cluster map costs a mon round of about a second
    (paxos propose interval): the mon batches changes asked for together
    into one round."""
    procs = [(cmd, subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True,
                                    env=env))
             for cmd in commands]
    errors = []
    deadline = time.monotonic() + timeout
    for cmd, proc in procs:
        try:
            out = proc.communicate(
                timeout=max(1, deadline - time.monotonic()))[0]
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            errors.append('%s did not finish in %d s' % (
                shlex.join(cmd), timeout))
            continue
        if proc.returncode:
            errors.append('%s failed (exit status %d):\n%s' % (
                shlex.join(cmd), proc.returncode, out.strip()))
    if errors:
        raise Failure('\n'.join(errors))


# -- packages ---------------------------------------------------------------

def missing_packages(packages=PACKAGES):
    proc = subprocess.run(
        ['dpkg-query', '-W', '-f', '${Package} ${db:Status-Status}\n',
         *packages], capture_output=True, text=True)
    installed = {line.split()[0] for line in proc.stdout.splitlines()
                 if line.endswith(' installed')}
    return [p for p in packages if p not in installed]


def _apt(args, deadline):
    """apt-get, retried while another apt or dpkg holds the lock."""
    env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
    cmd = ['apt-get', '-q', '-o', 'DPkg::Lock::Timeout=60', *args]
    while True:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, env=env,
                              capture_output=True, text=True)
        if proc.returncode == 0:
            return
        out = proc.stdout + proc.stderr
        locked = 'Could not get lock' in out or 'Unable to lock' in out
        if not locked or time.monotonic() > deadline:
            raise Failure('%s failed (exit status %d):\n%s' % (
                shlex.join(cmd), proc.returncode, out.strip()[-3000:]))
        say('apt or dpkg is busy (another install?); retrying')
        time.sleep(5)


def install_packages(timeout):
    """Install whatever of PACKAGES is missing; nothing if all are there."""
    missing = missing_packages()
    if not missing:
        return False
    say('installing', ' '.join(missing))
    deadline = time.monotonic() + timeout
    _apt(['update'], deadline)
    _apt(['install', '-y', '--no-install-recommends', *missing], deadline)
    still = missing_packages()
    if still:
        raise Failure('apt-get did not install %s' % ' '.join(still))
    return True


# -- processes --------------------------------------------------------------

def _cmdline(pid):
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as f:
            return [a.decode(errors='replace')
                    for a in f.read().split(b'\0') if a]
    except (FileNotFoundError, ProcessLookupError):
        return []


def _alive(pid):
    """Whether pid runs (a zombie waiting to be reaped does not)."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            state = f.read().rpartition(')')[2].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ('Z', 'X')


class Daemon:
    """One Ceph daemon of the cluster, e.g. ``mon.a``."""

    def __init__(self, cluster, kind, ident):
        self.cluster = cluster
        self.kind = kind
        self.ident = ident
        self.name = '%s.%s' % (kind, ident)
        self.binary = 'ceph-' + kind
        self.data = os.path.join(cluster.dir, kind, 'ceph-' + ident)
        self.keyring = os.path.join(self.data, 'keyring')
        self.pidfile = os.path.join(cluster.dir, 'run', self.name + '.pid')
        self.out = os.path.join(cluster.dir, 'log', self.name + '.out')
        self.log = os.path.join(cluster.dir, 'log',
                                'ceph-%s.log' % self.name)
        self.proc = None  # a Popen when started by this process
        self.offsets = (0, 0)  # sizes of out and log when started

    def command(self):
        return [self.binary, '-f', '-c', self.cluster.conf, '-i', self.ident]

    def _ours(self, pid):
        """Whether pid is this daemon of this cluster (not a reused PID)."""
        argv = _cmdline(pid)
        if not argv or os.path.basename(argv[0]) != self.binary:
            return False
        pairs = set(zip(argv, argv[1:]))
        return ('-c', self.cluster.conf) in pairs and (
            '-i', self.ident) in pairs

    def pid(self):
        """The running daemon's PID, or None.

        From its pidfile; a daemon of this cluster found running without
        one (a pidfile removed by hand) is adopted."""
        try:
            with open(self.pidfile) as f:
                pid = int(f.read().strip())
        except (FileNotFoundError, ValueError):
            pid = None
        if pid and _alive(pid) and self._ours(pid):
            return pid
        for entry in os.listdir('/proc'):
            if entry.isdigit() and self._ours(int(entry)) and _alive(
                    int(entry)):
                write_if_changed(self.pidfile, '%s\n' % entry)
                return int(entry)
        return None

    def start(self):
        say('starting %s (log %s)' % (self.name, self.log))
        self.offsets = (size(self.out), size(self.log))
        with open(self.out, 'ab') as out:
            self.proc = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, cwd=self.cluster.dir,
                env=self.cluster.env(), start_new_session=True)
        write_if_changed(self.pidfile, '%d\n' % self.proc.pid)

    def check_running(self):
        """Raise a Failure naming this daemon if it is not running."""
        if self.proc is not None and self.proc.poll() is None:
            return
        if self.proc is None and self.pid():
            return
        status = ('exited with status %s' % self.proc.returncode
                  if self.proc is not None else 'is not running')
        raise Failure(self.failure(status))

    def failure(self, what):
        """The message for a daemon that failed: its output, its log (what
        it wrote since started here)."""
        out_start, log_start = self.offsets
        return '%s %s. Last lines of %s:\n%s\nand of %s:\n%s' % (
            self.name, what, self.out, tail(self.out, out_start), self.log,
            tail(self.log, log_start))

    def stop(self, timeout=STOP_TIMEOUT):
        """SIGTERM, then SIGKILL after timeout; returns the PID stopped."""
        pid = self.pid()
        if pid is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.pidfile)
            return None
        say('stopping %s (pid %d)' % (self.name, pid))
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.1)
            if not _alive(pid):
                break
            if sig == signal.SIGTERM:
                say('%s did not exit %d s after SIGTERM: SIGKILL' % (
                    self.name, timeout))
        else:
            raise Failure('%s (pid %d) survived SIGKILL' % (self.name, pid))
        if self.proc is not None and self.proc.pid == pid:
            # Started by this process (a test driving the cluster from
            # Python): its zombie is ours to reap.
            self.proc.wait()
        os.unlink(self.pidfile)
        return pid


# -- the cluster ------------------------------------------------------------

class Cluster:

    def __init__(self, state_dir=None, port=None):
        self.dir = os.path.abspath(
            state_dir or os.environ.get('KVMX_CEPH_DIR') or DEFAULT_DIR)
        port = port or os.environ.get('KVMX_CEPH_PORT')
        self.requested_port = int(port) if port else None
        self.conf = os.path.join(self.dir, 'ceph.conf')
        self.env_file = os.path.join(self.dir, 'env')
        self.mon = Daemon(self, 'mon', 'a')
        self.mgr = Daemon(self, 'mgr', 'x')
        self.osd = Daemon(self, 'osd', '0')
        self.daemons = (self.mon, self.mgr, self.osd)

    # -- files --

    def keyring(self, user):
        """The client keyring's path: ceph.conf's `keyring` finds it."""
        return os.path.join(self.dir, 'ceph.%s.keyring' % user)

    def render_conf(self, fsid, port):
        d = self.dir
        daemon_common = [
            'log file = %s/log/$cluster-$name.log' % d,
            'admin socket = %s/run/$cluster-$name.asok' % d,
        ]
        sections = {
            'global': [
                'fsid = %s' % fsid,
                'mon host = v1:%s:%d' % (HOST, port),
                'public addr = %s' % HOST,
                'cluster addr = %s' % HOST,
                'ms bind msgr2 = false',
                'auth cluster required = cephx',
                'auth service required = cephx',
                'auth client required = cephx',
                'auth allow insecure global id reclaim = false',
                '# Clients find their keyring here by name, e.g.',
                '# ceph.client.cinder.keyring for --id cinder.',
                'keyring = %s/$cluster.$name.keyring' % d,
                'run dir = %s/run' % d,
                'crash dir = %s/crash' % d,
                'osd pool default size = 1',
                'osd pool default min size = 1',
                'osd pool default pg num = 8',
                'osd pool default pgp num = 8',
                'osd pool default pg autoscale mode = off',
                'mon allow pool size one = true',
                'mon warn on pool no redundancy = false',
                '# HEALTH_WARN below 2 % free on the state directory\'s',
                '# filesystem, the mon stops below 1 %.',
                'mon data avail warn = 2',
                'mon data avail crit = 1',
            ],
            'mon': ['mon data = %s/mon/$cluster-$id' % d,
                    'keyring = $mon_data/keyring',
                    '# The cluster and audit logs (ceph.log, ceph.audit.log',
                    '# in /var/log/ceph otherwise).',
                    'mon cluster log file = default=%s/log/$cluster.'
                    '$channel.log cluster=%s/log/$cluster.log' % (d, d),
                    ] + daemon_common,
            'mgr': ['mgr data = %s/mgr/$cluster-$id' % d,
                    'keyring = $mgr_data/keyring'] + daemon_common,
            'osd': ['osd data = %s/osd/$cluster-$id' % d,
                    'keyring = $osd_data/keyring',
                    'osd objectstore = bluestore',
                    'bluestore block create = true',
                    'bluestore block size = %d' % OSD_BLOCK_BYTES,
                    'osd memory target = %d' % OSD_MEMORY_TARGET,
                    ] + daemon_common,
        }
        lines = [CONF_MARK]
        for name, options in sections.items():
            lines += ['', '[%s]' % name] + ['    ' + o for o in options]
        return '\n'.join(lines) + '\n'

    def read_conf(self):
        """(fsid, mon host) of the existing ceph.conf."""
        values = {}
        with open(self.conf) as f:
            for line in f:
                key, sep, value = line.partition('=')
                if sep:
                    values[key.strip()] = value.strip()
        return values['fsid'], values['mon host']

    @property
    def port(self):
        return int(self.read_conf()[1].rpartition(':')[2])

    def env(self):
        env = dict(os.environ)
        # CEPH_ARGS/CEPH_CONF of the caller (e.g. an --id) must not change
        # what the admin commands here do.
        env.pop('CEPH_ARGS', None)
        env.pop('CEPH_CONF', None)
        return env

    @contextlib.contextmanager
    def locked(self):
        """One up or down at a time on this state directory."""
        with open(os.path.join(self.dir, 'lock'), 'a') as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            yield

    # -- commands --

    def ceph(self, *args, timeout=COMMAND_TIMEOUT, check=True):
        """`ceph` as client.admin; parsed JSON output."""
        proc = run(['ceph', '-c', self.conf, '--connect-timeout', '10',
                    '--format', 'json', *args],
                   timeout=timeout, check=check, env=self.env())
        if proc.returncode:
            return None
        return json.loads(proc.stdout) if proc.stdout.strip() else None

    def tool(self, *args):
        return run(list(args), env=self.env()).stdout

    # -- creation --

    def create_conf(self):
        if os.path.exists(self.conf):
            fsid, mon_host = self.read_conf()
            if (self.requested_port and
                    self.requested_port != self.port):
                raise Failure(
                    '%s was made for mon host %s, not port %d: use that '
                    'port, or another state directory, or remove this one '
                    '(deploy/ceph/down --purge)' % (
                        self.conf, mon_host, self.requested_port))
            return
        os.makedirs(self.dir, mode=0o755, exist_ok=True)
        fsid = str(uuid.uuid4())
        port = self.requested_port or DEFAULT_PORT
        say('new cluster %s in %s' % (fsid, self.dir))
        write_if_changed(self.conf, self.render_conf(fsid, port))

    def create_mon(self):
        """Keys, monmap and the mon's store (ceph-mon --mkfs)."""
        admin = self.keyring('client.admin')
        if os.path.exists(self.mon.data):
            if not os.path.exists(admin):
                raise Failure('%s is missing: the cluster cannot be '
                              'administered; remove it with '
                              'deploy/ceph/down --purge' % admin)
            return
        if not os.path.exists(admin):
            self.tool('ceph-authtool', '--create-keyring', admin,
                      '--gen-key', '-n', 'client.admin',
                      '--cap', 'mon', 'allow *', '--cap', 'osd', 'allow *',
                      '--cap', 'mds', 'allow *', '--cap', 'mgr', 'allow *')
            os.chmod(admin, 0o600)
        fsid, _ = self.read_conf()
        with tempfile.TemporaryDirectory(dir=self.dir) as tmp:
            keyring = os.path.join(tmp, 'mon.keyring')
            monmap = os.path.join(tmp, 'monmap')
            self.tool('ceph-authtool', '--create-keyring', keyring,
                      '--gen-key', '-n', 'mon.', '--cap', 'mon', 'allow *')
            self.tool('ceph-authtool', keyring, '--import-keyring', admin)
            self.tool('monmaptool', '--create', '--fsid', fsid,
                      '--addv', self.mon.ident,
                      '[v1:%s:%d]' % (HOST, self.port), monmap)
            os.makedirs(self.mon.data)
            try:
                self.tool('ceph-mon', '-c', self.conf, '--mkfs',
                          '-i', self.mon.ident, '--monmap', monmap,
                          '--keyring', keyring)
            except BaseException:
                shutil.rmtree(self.mon.data)
                raise

    def create_mgr(self):
        if os.path.exists(self.mgr.keyring):
            return
        os.makedirs(self.mgr.data, exist_ok=True)
        key = self.ceph('auth', 'get-or-create', self.mgr.name, *MGR_CAPS)
        write_if_changed(self.mgr.keyring,
                         '[%s]\n\tkey = %s\n' % (self.mgr.name,
                                                 key[0]['key']), 0o600)

    def create_osd(self):
        """Register osd.0 with its cephx key, then mkfs its BlueStore.

        The keyring is written before the OSD first talks to the mon (an
        OSD without one exits with "failed to fetch mon config"); uuid and
        key are kept, so an interrupted creation is resumed with them."""
        if os.path.exists(os.path.join(self.osd.data, 'ready')):
            return
        os.makedirs(self.osd.data, exist_ok=True)
        uuid_file = os.path.join(self.osd.data, 'kvmx-osd-uuid')
        if not os.path.exists(self.osd.keyring):
            key = self.tool('ceph-authtool', '--gen-print-key').strip()
            write_if_changed(uuid_file, str(uuid.uuid4()) + '\n')
            write_if_changed(self.osd.keyring,
                             '[%s]\n\tkey = %s\n' % (self.osd.name, key),
                             0o600)
        with open(uuid_file) as f:
            osd_uuid = f.read().strip()
        with open(self.osd.keyring) as f:
            key = f.read().split('key = ')[1].split()[0]
        with tempfile.NamedTemporaryFile('w', dir=self.dir) as secret:
            json.dump({'cephx_secret': key}, secret)
            secret.flush()
            self.ceph('osd', 'new', osd_uuid, self.osd.ident,
                      '-i', secret.name)
        say('creating the BlueStore of %s (%d GiB sparse file)' % (
            self.osd.name, OSD_BLOCK_BYTES // 1024 ** 3))
        self.tool('ceph-osd', '-c', self.conf, '-i', self.osd.ident,
                  '--mkfs', '--osd-uuid', osd_uuid)

    # -- waiting --

    def wait(self, what, ready, daemons, deadline, status=None):
        """Poll `ceph status` until ready(status) or the deadline.

        Starts with status if given (a second up asks the cluster once).
        Fails at once naming a daemon of daemons that exits meanwhile; at
        the deadline, naming the last of them, the one waited for."""
        while True:
            for daemon in daemons:
                daemon.check_running()
            if status and ready(status):
                return status
            if time.monotonic() > deadline:
                raise Failure(self.health_detail() + daemons[-1].failure(
                    'runs, but %s did not happen in time' % what))
            time.sleep(0.5 if status is not None else 0)
            status = self.ceph('status', timeout=15, check=False) or {}

    def health_detail(self):
        proc = run(['ceph', '-c', self.conf, '--connect-timeout', '5',
                    'health', 'detail'], check=False, env=self.env())
        return 'ceph health detail: %s\n' % (
            proc.stdout or proc.stderr).strip()

    @staticmethod
    def has_quorum(status):
        return bool(status.get('quorum_names'))

    @staticmethod
    def mgr_available(status):
        return status['mgrmap']['available']

    @staticmethod
    def osd_up(status):
        osdmap = status['osdmap']
        osdmap = osdmap.get('osdmap', osdmap)  # nested in older releases
        return osdmap['num_up_osds'] == osdmap['num_in_osds'] == 1

    @staticmethod
    def healthy(status):
        pgmap = status['pgmap']
        clean = sum(s['count'] for s in pgmap.get('pgs_by_state', ())
                    if s['state_name'] == 'active+clean')
        return (status['health']['status'] == 'HEALTH_OK'
                and clean == pgmap['num_pgs'])

    # -- pools and users --

    def ensure_pools(self):
        """Create the missing pools, size 1, initialised for RBD."""
        pools = {p['pool_name']: p
                 for p in self.ceph('osd', 'pool', 'ls', 'detail')}
        admin = ['ceph', '-c', self.conf, '--connect-timeout', '10']
        create = [n for n in POOLS if n not in pools]
        resize = [n for n in POOLS if n in pools and pools[n]['size'] != 1]
        init = [n for n in POOLS if 'rbd' not in pools.get(n, {}).get(
            'application_metadata', {})]
        if create:
            say('creating pools', ', '.join(create))
        for commands in (
                [admin + ['osd', 'pool', 'create', n] for n in create],
                [admin + ['osd', 'pool', 'set', n, 'size', '1',
                          '--yes-i-really-mean-it'] for n in resize],
                [['rbd', '-c', self.conf, 'pool', 'init', n]
                 for n in init]):
            run_parallel(commands, self.env())
        return bool(create or resize or init)

    def ensure_users(self):
        """Create the missing cephx users, fix their caps, write keyrings."""
        changed = False
        entities = {e['entity']: e
                    for e in self.ceph('auth', 'ls')['auth_dump']}
        for user, caps in USERS.items():
            flat = [x for cap in caps.items() for x in cap]
            if user not in entities:
                say('creating cephx user', user)
                self.ceph('auth', 'get-or-create', user, *flat)
                changed = True
            elif entities[user]['caps'] != caps:
                say('setting the caps of', user)
                self.ceph('auth', 'caps', user, *flat)
                changed = True
        if changed:
            entities = {e['entity']: e
                        for e in self.ceph('auth', 'ls')['auth_dump']}
        for user in USERS:
            write_if_changed(self.keyring(user), '[%s]\n\tkey = %s\n' % (
                user, entities[user]['key']), 0o600)
        return entities, changed

    def env_values(self, entities):
        fsid, mon_host = self.read_conf()
        values = {
            'CEPH_DIR': self.dir,
            'CEPH_CONF': self.conf,
            'CEPH_FSID': fsid,
            'CEPH_MON_HOST': mon_host,
            'CEPH_ADMIN_KEYRING': self.keyring('client.admin'),
        }
        for user in USERS:
            short = user.split('.', 1)[1].upper()
            values['CEPH_%s_KEYRING' % short] = self.keyring(user)
        for user in USERS:
            short = user.split('.', 1)[1].upper()
            values['CEPH_%s_KEY' % short] = entities[user]['key']
        return values

    def write_env(self, values):
        text = ('# The Ceph test cluster of deploy/ceph/up. In a shell:\n'
                '#   set -a; . %s; set +a\n'
                '# CEPH_CONF is honoured by the ceph, rbd and rados '
                'commands.\n# CEPH_<USER>_KEY is the cephx key, e.g. for '
                '`virsh secret-set-value`.\n' % self.env_file)
        text += ''.join('%s=%s\n' % (k, shlex.quote(v))
                        for k, v in values.items())
        write_if_changed(self.env_file, text, 0o600)

    # -- up and down --

    def port_free(self):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((HOST, self.port))
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    return False
                raise
        return True

    def start_mon(self):
        if self.mon.pid():
            return
        if not self.port_free():
            raise Failure(
                '%s:%d is in use by another program, maybe the mon of '
                'another Ceph cluster (`ss -ltnp "sport = :%d"` shows '
                'which). One cluster per port: stop it, or give this one '
                'another port (KVMX_CEPH_PORT / --port) in a new state '
                'directory.' % (HOST, self.port, self.port))
        self.mon.start()

    def up(self, timeout):
        """Create what is missing, start what is stopped, wait HEALTH_OK.

        Returns (env values, whether anything was started or changed)."""
        os.makedirs(self.dir, mode=0o755, exist_ok=True)
        if not self.ours():
            # down --purge removes the state directory: never make one of
            # a directory holding something else.
            raise Failure('%s holds files and no ceph.conf of ours: give '
                          'an empty or new directory' % self.dir)
        with self.locked():
            for sub in SUBDIRS:
                os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
            deadline = time.monotonic() + timeout
            self.create_conf()
            self.create_mon()
            self.start_mon()
            status = self.wait('a mon quorum', self.has_quorum, [self.mon],
                               deadline)
            self.create_mgr()
            self.create_osd()
            for daemon in (self.mgr, self.osd):
                if not daemon.pid():
                    daemon.start()
            status = self.wait('the mgr becoming available',
                               self.mgr_available, [self.mon, self.mgr],
                               deadline, status)
            status = self.wait('the OSD coming up', self.osd_up,
                               [self.mon, self.mgr, self.osd], deadline,
                               status)
            pools_changed = self.ensure_pools()
            entities, users_changed = self.ensure_users()
            started = any(d.proc for d in self.daemons)
            # A status from before the pools or the daemons changed does
            # not tell whether their PGs are active.
            self.wait('HEALTH_OK with every PG active+clean', self.healthy,
                      list(self.daemons), deadline,
                      None if started or pools_changed else status)
            values = self.env_values(entities)
            self.write_env(values)
        return values, started or pools_changed or users_changed

    def down(self, purge=False, timeout=STOP_TIMEOUT):
        """Stop the daemons (OSD first); with purge, remove the state."""
        if not os.path.exists(self.conf):
            # No cluster (yet): no daemon can run. What up made before
            # writing ceph.conf can go.
            if purge and os.path.isdir(self.dir):
                self.purge()
            return []
        with self.locked():
            # The OSD first: it tells the mon it goes down, and waits for
            # an answer.
            stopped = {d.name: d.stop(timeout) for d in reversed(
                self.daemons)}
            stopped = {name: pid for name, pid in stopped.items() if pid}
            # A daemon orphaned when up exited is reaped by PID 1 -- here a
            # second or two later: wait for that too, so that no <defunct>
            # entry is left behind.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and any(
                    os.path.exists('/proc/%d' % p) for p in stopped.values()):
                time.sleep(0.1)
            if purge:
                self.purge()
        return list(stopped)

    def ours(self):
        """Whether the state directory is one of ours (or still empty)."""
        try:
            with open(self.conf) as f:
                return f.readline().rstrip('\n') == CONF_MARK
        except FileNotFoundError:
            # Nothing but what up makes before it writes ceph.conf.
            return set(os.listdir(self.dir)) <= set(SUBDIRS) | {'lock'}

    def purge(self):
        if not self.ours():
            raise Failure('%s is not a state directory of deploy/ceph/up '
                          '(no ceph.conf of ours): not removing it'
                          % self.dir)
        say('removing', self.dir)
        shutil.rmtree(self.dir)
