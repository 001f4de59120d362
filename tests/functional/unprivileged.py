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
through sudo); then the process takes the ``nova`` user's effective uid
and gid and the groups a distribution gives it (``libvirt``, ``kvm``).
Anything the driver does outside privsep that needs root then fails as
it would on a real compute node (EPERM, EACCES). The real and saved uid
stay root, so the cleanup can return.
"""

import grp
import os
import pwd
import subprocess
import sys
import tempfile

import fixtures

NOVA_USER = 'nova'
NOVA_HOME = '/var/lib/nova'
NOVA_GROUPS = ('libvirt', 'kvm')
PRIVSEP_HELPER = os.path.join(os.path.dirname(sys.executable),
                              'privsep-helper')


def ensure_nova_user():
    """The ``nova`` system user (as distributions create it), made if
    this machine lacks it; its pwd entry."""
    try:
        return pwd.getpwnam(NOVA_USER)
    except KeyError:
        subprocess.run(['useradd', '--system', '--home-dir', NOVA_HOME,
                        '--create-home', '--shell', '/usr/sbin/nologin',
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
    """The process's effective uid and gid are ``user``'s, its groups
    ``user``'s own and NOVA_GROUPS, until cleanup.

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
        os.setegid(self.user.pw_gid)
        os.seteuid(self.user.pw_uid)
        self.addCleanup(os.setgroups, groups)
        self.addCleanup(os.setegid, 0)
        self.addCleanup(os.seteuid, 0)
