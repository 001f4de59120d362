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

"""A second libvirt host on this machine, for real live migrations.

libvirtd and virtlogd run in their own mount and UTS namespaces: their
run, state, cache, log and configuration directories are private bind
mounts over the usual paths (so they do not meet the main daemons' sockets,
domains or pid files), hugetlbfs is mounted afresh, the hostname (Nova's
node name) and libvirt's host UUID are their own (libvirt refuses to
migrate to a host with its own UUID), and libvirtd listens on TCP on a
loopback address of its own, which is where the source's libvirtd and
QEMU send the migration. QEMU guests of this daemon live outside the
main daemon's cgroups (``cgroup_controllers = []``): both would otherwise
name a guest's cgroup after its domain ID and name, which the two daemons
number independently. Its VNC ports are a range of their own, for the
same reason as its address.

``binds`` adds more private mounts: a directory the main host sees at one
path and this host at another, e.g. the destination's own instances
directory at the source's instances path, for a block migration between
two hosts that do not share it.

``ssh=True`` also runs an sshd in those namespaces, on the host's address,
trusting a key of its own; a client configuration scoped to that address
and to root (``/etc/ssh/ssh_config.d``, removed afterwards) gives root on
this machine that key and the host's key, as an operator sets up SSH
between compute hosts for Nova's disk copies. A user of ``ssh_users``
logs in with the key its home holds for the host (``SSH_USER_KEYS``),
e.g. ``nova``'s given by tests/functional/unprivileged.py. This sshd runs
without PAM, and so refuses any login to an account whose password is
locked (``!``, as a system user's is), where a deployment's sshd (with
PAM) lets a key in: in the host's namespace, the password of those users
is none (``*``) instead.

``index`` tells apart two such hosts of one test process: each has its
own address and VNC ports.
"""

import os
import shutil
import signal
import subprocess
import time
import uuid

import fixtures
import libvirt

STARTUP_TIMEOUT = 60
SSH_PORT = 22022    # not 22: the machine may run an sshd on every address
SSH_CLIENT_CONF_DIR = '/etc/ssh/ssh_config.d'
# The public keys a user other than root logs in with, in its home (the
# same home on both hosts here, as a deployment gives each compute host's
# nova user the same key): %s is the host's address.
SSH_USER_KEYS = '.ssh/kvmx-test-%s.authorized_keys'
STOP_TIMEOUT = 30
_MOUNTS = ('/run/libvirt', '/var/lib/libvirt', '/etc/libvirt',
           '/var/cache/libvirt', '/var/log/libvirt')


def _main_domains(directory, names):
    """The main daemon's persistent domains (and their autostart links),
    left out of this host's copy of /etc/libvirt: this host would have
    them defined too, and a test would find another's guests there."""
    if os.path.normpath(directory) != '/etc/libvirt/qemu':
        return set()
    return {name for name in names
            if name.endswith('.xml') or name == 'autostart'}


class SecondLibvirtd(fixtures.Fixture):
    def __init__(self, workdir, hostname, binds=(), ssh=False,
                 group=None, index=None, ssh_users=()):
        """:param binds: ((directory, path it is mounted at), ...)
        :param group: a group whose members may manage this libvirtd
            through its socket (as Debian's polkit rule lets the
            ``libvirt`` group; this machine runs no polkit)
        :param index: 0, 1 for two hosts of one test process
        :param ssh_users: names of the users besides root who log in
        """
        super().__init__()
        self.group = group
        self.root = os.path.join(workdir, 'libvirtd-' + hostname)
        self.hostname = hostname
        self.binds = binds
        self.ssh = ssh
        self.ssh_users = ssh_users
        # A loopback address of its own: parallel test workers each run
        # one, all on libvirt's default port.
        # With an index, above 127.127/16, which no pid reaches (pid_max
        # is 2**22 at most).
        pid = os.getpid()
        first = (pid >> 16) & 0xff or 1
        if index is not None:
            first = 128 + index
        self.address = '127.%d.%d.%d' % (first, (pid >> 8) & 0xff,
                                         pid & 0xff or 1)
        self.index = index
        self.uri = 'qemu+unix:///system?socket=%s' % os.path.join(
            self.root, 'run-libvirt', 'libvirt-sock')

    def _mount_dir(self, mount):
        """The directory of this host's own that is ``mount`` to it."""
        return os.path.join(self.root, mount.strip('/').replace('/', '-'))

    def local_path(self, path):
        """Where ``path`` under one of this host's private mounts (its
        libvirtd's files: NVRAM, managed-save images...) is on this
        machine."""
        for mount in _MOUNTS:
            if os.path.commonpath((path, mount)) == mount:
                return os.path.join(self._mount_dir(mount),
                                    os.path.relpath(path, mount))
        raise ValueError('%s is not under a private mount of %s' % (
            path, self.hostname))

    def _setUp(self):
        dirs = {mount: self._mount_dir(mount) for mount in _MOUNTS}
        for mount, path in dirs.items():
            if mount == '/etc/libvirt':
                shutil.copytree(mount, path, symlinks=True,
                                ignore=_main_domains)
            else:
                os.makedirs(os.path.join(path, 'qemu'))
        # The main daemon's QEMU capabilities cache is valid here too (same
        # binaries): probing QEMU again takes seconds.
        shutil.copytree('/var/cache/libvirt/qemu/capabilities',
                        os.path.join(dirs['/var/cache/libvirt'], 'qemu',
                                     'capabilities'), dirs_exist_ok=True)
        with open(os.path.join(dirs['/etc/libvirt'], 'libvirtd.conf'),
                  'a') as conf:
            conf.write('\nhost_uuid = "%s"\nlisten_tls = 0\nlisten_tcp = 1\n'
                       'listen_addr = "%s"\nauth_tcp = "none"\n' % (
                           uuid.uuid4(), self.address))
            if self.group:
                conf.write('unix_sock_group = "%s"\n'
                           'unix_sock_rw_perms = "0770"\n'
                           'auth_unix_rw = "none"\n' % self.group)
        with open(os.path.join(dirs['/etc/libvirt'], 'qemu.conf'),
                  'a') as conf:
            # VNC ports of its own: both daemons share the network and
            # each picks the first port it finds free, a race when guests
            # start on both at once.
            # With an index, each host of the process has half of them.
            vnc, ports = 20000 + (os.getpid() % 1000) * 40, 40
            if self.index is not None:
                ports = 20
                vnc += self.index * ports
            conf.write('\ncgroup_controllers = [ ]\n'
                       'migration_address = "%s"\n'
                       'remote_display_port_min = %d\n'
                       'remote_display_port_max = %d\n' % (
                           self.address, vnc, vnc + ports - 1))
        script = ['set -e', 'hostname %s' % self.hostname]
        script += ['mount --bind %s %s' % (path, mount)
                   for mount, path in dirs.items()]
        script += ['mount --bind %s %s' % bind for bind in self.binds]
        script += ['mount -t hugetlbfs hugetlbfs /dev/hugepages']
        if self.ssh and self.ssh_users:
            script += ['mount --bind %s /etc/shadow' % self._shadow()]
        if self.ssh:
            script += ['mkdir -p /run/sshd',
                       '/usr/sbin/sshd -f %s' % self._configure_ssh()]
        script += [
            'virtlogd -p /run/libvirt/virtlogd.pid &',
            'exec libvirtd --listen -p /run/libvirt/libvirtd.pid']
        self.log = open(os.path.join(self.root, 'libvirtd.log'), 'w')
        self.addCleanup(self.log.close)
        self.process = subprocess.Popen(
            ['unshare', '--mount', '--uts', '--propagation', 'private',
             'sh', '-c', '\n'.join(script)],
            stdout=self.log, stderr=subprocess.STDOUT)
        self.addCleanup(self._stop)
        self._wait_until_up()

    def _configure_ssh(self):
        """Keys, sshd's configuration and root's client configuration for
        this host's address; returns the sshd configuration's path."""
        ssh_dir = os.path.join(self.root, 'ssh')
        os.makedirs(ssh_dir, mode=0o700)
        for key in ('host_key', 'client_key'):
            subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '',
                            '-f', os.path.join(ssh_dir, key)], check=True)

        def path(name):
            return os.path.join(ssh_dir, name)

        shutil.copy(path('client_key.pub'), path('authorized_keys'))
        with open(path('host_key.pub')) as public, \
                open(path('known_hosts'), 'w') as known:
            known.write('[%s]:%d %s' % (self.address, SSH_PORT,
                                        public.read()))
        self.sshd_pidfile = path('sshd.pid')
        with open(path('sshd_config'), 'w') as conf:
            conf.write('\n'.join((
                'ListenAddress %s:%d' % (self.address, SSH_PORT),
                'HostKey ' + path('host_key'),
                'PidFile ' + self.sshd_pidfile,
                # Root's, then the user's own (read as that user).
                'AuthorizedKeysFile %s %s' % (
                    path('authorized_keys'), SSH_USER_KEYS % self.address),
                'PermitRootLogin prohibit-password',
                'PasswordAuthentication no',
                'KbdInteractiveAuthentication no',
                'UsePAM no',
                'StrictModes no',
                'Subsystem sftp internal-sftp', '')))
        client_conf = os.path.join(
            SSH_CLIENT_CONF_DIR, 'kvmx-test-%s.conf' % self.address)
        with open(client_conf, 'w') as conf:
            conf.write('\n'.join((
                'Match host %s localuser root' % self.address,
                '    Port %d' % SSH_PORT,
                '    User root',
                '    IdentityFile ' + path('client_key'),
                '    IdentitiesOnly yes',
                '    UserKnownHostsFile ' + path('known_hosts'),
                '    StrictHostKeyChecking yes', '')))
        self.addCleanup(os.unlink, client_conf)
        return path('sshd_config')

    def _shadow(self):
        """A copy of /etc/shadow where the passwords of ``ssh_users`` are
        none rather than locked; its path."""
        path = os.path.join(self.root, 'shadow')
        with open('/etc/shadow') as f:
            entries = f.read().splitlines()
        for i, entry in enumerate(entries):
            fields = entry.split(':')
            if fields[0] in self.ssh_users and fields[1].startswith('!'):
                fields[1] = '*'
                entries[i] = ':'.join(fields)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, 'w') as f:
            f.write('\n'.join(entries) + '\n')
        return path

    def stop_sshd(self):
        """The host's sshd goes away, as when it is down or firewalled
        (as root, also from a test running as nova)."""
        _as_root(self._stop_sshd)

    def _stop_sshd(self):
        with open(self.sshd_pidfile) as f:
            pid = int(f.read())
        os.unlink(self.sshd_pidfile)
        os.kill(pid, signal.SIGTERM)

    def run_inside(self, *command):
        """Run a command in this host's mount namespace, as root; its
        output."""
        return _as_root(
            subprocess.run,
            ['nsenter', '-t', str(self.process.pid), '-m', '--'] +
            list(command), check=True, timeout=STOP_TIMEOUT,
            stdout=subprocess.PIPE, text=True).stdout

    def _wait_until_up(self):
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise AssertionError('second libvirtd exited (%s), see %s' % (
                    self.process.returncode, self.log.name))
            try:
                libvirt.open(self.uri).close()
                return
            except libvirt.libvirtError:
                if time.monotonic() > deadline:
                    raise AssertionError('second libvirtd not up after %ds'
                                         % STARTUP_TIMEOUT)
                time.sleep(0.2)

    def connection(self):
        conn = libvirt.open(self.uri)
        self.addCleanup(conn.close)
        return conn

    def _stop(self):
        """Destroy the guests left on this host, stop both daemons."""
        try:
            conn = libvirt.open(self.uri)
            for dom in conn.listAllDomains():
                if dom.isActive():
                    dom.destroy()
                dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE)
            conn.close()
        except libvirt.libvirtError:
            pass
        pidfile = os.path.join(self.root, 'run-libvirt', 'virtlogd.pid')
        if self.ssh and os.path.exists(self.sshd_pidfile):
            self.stop_sshd()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT)
        if os.path.exists(pidfile):
            with open(pidfile) as f:
                os.kill(int(f.read()), signal.SIGTERM)


def _as_root(func, *args, **kwargs):
    # unprivileged imports this module (for SshLogin): imported here.
    from tests.functional import unprivileged
    return unprivileged.as_root(func, *args, **kwargs)
