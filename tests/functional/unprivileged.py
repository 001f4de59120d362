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

"""The test process as the unprivileged ``nova`` user, as nova-compute
runs in every real deployment.

Privsep's daemons are started first, while the process is root, from the
helper command a deployment configures (``<venv>/bin/privsep-helper``
through sudo); then the process takes the ``nova`` user's real and
effective uid and gid and the groups a distribution gives it
(``libvirt``, ``kvm``).
Anything the driver does outside privsep that needs root then fails as
it would on a real compute node (EPERM, EACCES), and the commands it
runs (qemu-img, ssh, scp) are wholly the ``nova`` user's: ssh takes its
user, home, keys and known hosts from the real uid. The saved uid and
gid stay root, so the cleanup can return.
"""

import contextlib
import grp
import os
import pickle
import pwd
import subprocess
import sys
import tempfile

import fixtures

from tests.functional import second_libvirtd

NOVA_USER = 'nova'
NOVA_HOME = '/var/lib/nova'
NOVA_GROUPS = ('libvirt', 'kvm')
PRIVSEP_HELPER = os.path.join(os.path.dirname(sys.executable),
                              'privsep-helper')


def ensure_nova_user():
    """The ``nova`` system user (as distributions create it), made if
    this machine lacks it; its pwd entry. It has a shell: a cold
    migration runs commands on the other host over ssh as ``nova``
    (Nova's documentation asks for one)."""
    try:
        return pwd.getpwnam(NOVA_USER)
    except KeyError:
        subprocess.run(['useradd', '--system', '--home-dir', NOVA_HOME,
                        '--create-home', '--shell', '/bin/sh',
                        '--groups', ','.join(NOVA_GROUPS), NOVA_USER],
                       check=True)
        return pwd.getpwnam(NOVA_USER)


def private_dir(parent, name, user):
    """A 0700 directory of ``user``'s under ``parent``."""
    path = os.path.join(parent, name)
    os.makedirs(path, mode=0o700, exist_ok=True)
    os.chown(path, user.pw_uid, user.pw_gid)
    return path


class PrivsepDaemons(fixtures.Fixture):
    """Each of ``contexts`` (oslo.privsep PrivContexts) as a daemon
    started now, from ``<venv>/bin/privsep-helper``, as a deployment runs
    them; stopped at cleanup."""

    def __init__(self, test, *contexts):
        super().__init__()
        self.test = test
        self.contexts = contexts

    def _setUp(self):
        for context in self.contexts:
            self.test.flags(helper_command=PRIVSEP_HELPER,
                            group=context.cfg_section)
            self.useFixture(fixtures.MockPatchObject(
                context, 'client_mode', True))
            context.start()
            self.addCleanup(context.stop)


def give_tree(path, user):
    """Everything under ``path`` (and itself) to ``user``."""
    os.chown(path, user.pw_uid, user.pw_gid)
    for parent, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(os.path.join(parent, name), user.pw_uid, user.pw_gid,
                     follow_symlinks=False)


def private_top(path):
    """The highest directory above ``path`` (or itself) that others
    cannot traverse: where the test's nested temporary directories
    begin."""
    top = path
    while True:
        parent = os.path.dirname(top)
        if parent == top or os.stat(parent).st_mode & 0o001:
            return top
        top = parent


class AsNovaUser(fixtures.Fixture):
    """The process's real and effective uid and gid are ``user``'s, its
    groups ``user``'s own and NOVA_GROUPS, until cleanup (the saved uid
    and gid, root's, bring it back).

    The test's private temporary directory (Nova's harness keeps its
    databases there) becomes ``user``'s first: the harness stands for
    services that have their own users in a deployment."""

    def __init__(self, user):
        super().__init__()
        self.user = user

    def _setUp(self):
        give_tree(private_top(tempfile.gettempdir()), self.user)
        groups = os.getgroups()
        os.setgroups([self.user.pw_gid] +
                     [grp.getgrnam(name).gr_gid for name in NOVA_GROUPS])
        os.setresgid(self.user.pw_gid, self.user.pw_gid, 0)
        os.setresuid(self.user.pw_uid, self.user.pw_uid, 0)
        self.addCleanup(os.setgroups, groups)
        self.addCleanup(os.setresgid, 0, 0, 0)
        self.addCleanup(os.setresuid, 0, 0, 0)


def regain_root():
    """Root again, from the saved uid and gid (AsNovaUser keeps them):
    for a child process only (as_root, a Popen's preexec_fn)."""
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)


def as_root(func, *args, **kwargs):
    """``func(*args, **kwargs)`` for the harness, as root, after
    AsNovaUser: in a child process that takes back the saved root uid, so
    that neither the test process nor nova-compute's threads in it are
    ever root again.
    For what only the harness does as root (kill QEMU as a crash would,
    read a file QEMU owns); ``func``'s (picklable) result or exception
    comes back."""
    if os.geteuid() == 0:
        return func(*args, **kwargs)
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:
        # The child never returns into the test: it ends here, whatever
        # happens.
        try:
            os.close(reader)
            try:
                regain_root()
                outcome = (True, func(*args, **kwargs))
            except BaseException as exc:
                outcome = (False, exc)
            try:
                data = pickle.dumps(outcome)
            except Exception as exc:
                data = pickle.dumps((False, RuntimeError(
                    'as_root: %r: unpicklable outcome (%s)' % (func, exc))))
            with os.fdopen(writer, 'wb') as out:
                out.write(data)
        finally:
            os._exit(0)
    os.close(writer)
    with os.fdopen(reader, 'rb') as source:
        data = source.read()
    os.waitpid(pid, 0)
    if not data:
        raise RuntimeError('as_root: %r: the child said nothing' % func)
    ok, value = pickle.loads(data)
    if not ok:
        raise value
    return value


class SshLogin(fixtures.Fixture):
    """``user`` logs in to ``host`` (a SecondLibvirtd with ssh) as itself
    with a key of its own, as a deployment sets up the ``nova`` user of
    every compute host (Nova's cold migration copies disks with scp and
    runs commands over ssh): the key, the host's key in its known hosts
    and the public key the host trusts are in its home (``~/.ssh``, made
    if missing), its client configuration for the host's address in
    ``/etc/ssh/ssh_config.d``; all removed at cleanup. Set up as root,
    before AsNovaUser."""

    def __init__(self, user, host):
        super().__init__()
        self.user = user
        self.host = host

    def _setUp(self):
        ssh_dir = os.path.join(self.user.pw_dir, '.ssh')
        if not os.path.isdir(ssh_dir):
            private_dir(self.user.pw_dir, '.ssh', self.user)
            self.addCleanup(_rmdir_if_empty, ssh_dir)
        name = os.path.join(ssh_dir, 'kvmx-test-%s' % self.host.address)
        subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '',
                        '-C', '%s@kvmx-test' % self.user.pw_name,
                        '-f', name], check=True, timeout=30)
        with open(name + '.pub') as f:
            public = f.read()
        authorized = os.path.join(
            self.user.pw_dir,
            second_libvirtd.SSH_USER_KEYS % self.host.address)
        with open(os.path.join(self.host.root, 'ssh',
                               'host_key.pub')) as f:
            host_key = f.read()
        known = name + '.known_hosts'
        for path, text in ((authorized, public), (known, '[%s]:%d %s' % (
                self.host.address, second_libvirtd.SSH_PORT, host_key))):
            with open(path, 'w') as f:
                f.write(text)
        for path in (name, name + '.pub', authorized, known):
            self.addCleanup(_unlink_quietly, path)
            os.chmod(path, 0o600)
            os.chown(path, self.user.pw_uid, self.user.pw_gid)
        client_conf = os.path.join(
            second_libvirtd.SSH_CLIENT_CONF_DIR, 'kvmx-test-%s-%s.conf' % (
                self.host.address, self.user.pw_name))
        with open(client_conf, 'w') as conf:
            conf.write('\n'.join((
                'Match host %s localuser %s' % (self.host.address,
                                                self.user.pw_name),
                '    Port %d' % second_libvirtd.SSH_PORT,
                '    User ' + self.user.pw_name,
                '    IdentityFile ' + name,
                '    IdentitiesOnly yes',
                '    UserKnownHostsFile ' + known,
                '    StrictHostKeyChecking yes',
                '    BatchMode yes', '')))
        self.addCleanup(_unlink_quietly, client_conf)


def _unlink_quietly(path):
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _rmdir_if_empty(path):
    with contextlib.suppress(OSError):
        os.rmdir(path)
