"""nova-compute's user and what it may do as root.

Both nova-compute services run as the unprivileged ``nova`` user, as in
DevStack, Kolla and the distributions' packages: group ``libvirt``
manages libvirtd (hosts.GROUP_ACCESS), and root is reached only through
the privsep helpers nova-compute starts with its root helper, ``sudo
nova-rootwrap <rootwrap.conf>``, which this module's sudoers file allows
and nova-rootwrap's filters narrow to exactly those helpers.
"""

import grp
import os
import pwd

from cloud import configs
from cloud import layout
from cloud import procs

# sshd refuses a key login to an account whose password field is locked
# ('!'), without PAM; '*' has no password either, but is not locked.
NO_PASSWORD = '*'
SHELL = '/bin/sh'


def nova_user_up():
    """The nova user as .ci/setup and distributions make it (a system user
    in groups libvirt and kvm), with what distributions give it for
    migrations: a login shell, and key logins over SSH (Nova copies a
    cold-migrated instance's disks with ssh and scp as this user). Its
    pwd entry."""
    try:
        pwd.getpwnam(layout.NOVA_USER)
    except KeyError:
        procs.run(['useradd', '--system', '--home-dir', layout.NOVA_HOME,
                   '--create-home', '--shell', SHELL, '--groups',
                   ','.join(layout.NOVA_GROUPS), layout.NOVA_USER])
    groups = [g for g in layout.NOVA_GROUPS
              if layout.NOVA_USER not in _members(g)]
    if groups:
        procs.run(['usermod', '-a', '-G', ','.join(groups),
                   layout.NOVA_USER])
    user = pwd.getpwnam(layout.NOVA_USER)
    if user.pw_shell.endswith(('/nologin', '/false')):
        procs.run(['usermod', '--shell', SHELL, layout.NOVA_USER])
    if _password_field(layout.NOVA_USER).startswith('!'):
        procs.run(['usermod', '--password', NO_PASSWORD, layout.NOVA_USER])
    if not os.path.isdir(user.pw_dir):
        os.makedirs(user.pw_dir, mode=0o750)
        os.chown(user.pw_dir, user.pw_uid, user.pw_gid)
    return pwd.getpwnam(layout.NOVA_USER)


def _members(group):
    return grp.getgrnam(group).gr_mem


def _password_field(user):
    with open('/etc/shadow') as f:
        for line in f:
            fields = line.split(':')
            if fields[0] == user:
                return fields[1]
    return ''


def sudoers_text():
    """What nova may run as root: nova-rootwrap with Nova's rootwrap
    configuration (DevStack's rule), nothing else."""
    return '\n'.join((
        '# nova-compute of the kvmx all-in-one cloud (deploy/up): its '
        'privsep',
        '# helpers, through nova-rootwrap and its filters only.',
        'Defaults:%s !requiretty' % layout.NOVA_USER,
        '%s ALL = (root) NOPASSWD: %s *' % (
            layout.NOVA_USER, configs.root_helper('nova')[len('sudo '):]),
        ''))


def sudoers_up():
    """The sudoers file (0440), checked by visudo before it is put in
    place; whether it changed."""
    text = sudoers_text()
    try:
        with open(layout.SUDOERS) as f:
            if f.read() == text:
                return False
    except OSError:
        pass
    # sudo skips files of sudoers.d whose names have a dot.
    staged = layout.SUDOERS + '.new'
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o440)
    with os.fdopen(fd, 'w') as f:
        f.write(text)
    os.chmod(staged, 0o440)
    try:
        procs.run(['visudo', '-c', '-q', '-f', staged])
        os.rename(staged, layout.SUDOERS)
    finally:
        if os.path.exists(staged):
            os.unlink(staged)
    return True


def sudoers_down():
    for path in (layout.SUDOERS, layout.SUDOERS + '.new'):
        if os.path.exists(path):
            os.unlink(path)


def own(path, user, mode):
    """Directory ``path`` (made if missing) ``user``'s, with ``mode``."""
    os.makedirs(path, mode=mode, exist_ok=True)
    info = os.stat(path)
    if (info.st_uid, info.st_gid) != (user.pw_uid, user.pw_gid):
        os.chown(path, user.pw_uid, user.pw_gid)
    if info.st_mode & 0o7777 != mode:
        os.chmod(path, mode)


def readable_by_nova(path, user):
    """A root configuration file the nova user reads: root:nova 0640."""
    info = os.stat(path)
    if (info.st_uid, info.st_gid) != (0, user.pw_gid):
        os.chown(path, 0, user.pw_gid)
    if info.st_mode & 0o7777 != 0o640:
        os.chmod(path, 0o640)
