"""The two compute hosts: namespaces, links, Open vSwitch, sshd, libvirtd.

compute1 is this machine. compute2 lives in namespaces of its own (see
layout.Host): a network namespace made with ``ip netns``, and a mount and
UTS namespace held by a process that does nothing else; every compute2
daemon joins all three with ``nsenter``.
"""

import os
import pwd
import shutil
import subprocess
import uuid

from cloud import base
from cloud import layout
from cloud import procs

HOLDER = 'compute2-namespaces'
HUGEPAGES = 300
OVS_SCHEMA = '/usr/share/openvswitch/vswitch.ovsschema'
SSH_DIR = os.path.join(layout.ETC, 'ssh')


def wrap(host, argv):
    """``argv`` as run on ``host``."""
    if host.is_local:
        return list(argv)
    pid = procs.read_pid(HOLDER)
    if pid is None:
        raise procs.DeployError(host.name, 'its namespaces are not up')
    return ['nsenter', '-t', str(pid), '-m', '-u', '-n', '--'] + list(argv)


def run(host, argv, **kwargs):
    return procs.run(wrap(host, argv), **kwargs)


def start(host, name, argv, **kwargs):
    return procs.start(host.name + '-' + name, wrap(host, argv), **kwargs)


# -- compute2's namespaces and the links between the hosts ----------------

def private_dir(mount):
    """compute2's own directory mounted over ``mount``."""
    return os.path.join(layout.COMPUTE2.state, 'mnt',
                        mount.strip('/').replace('/', '-'))


def start_host2_namespaces():
    host = layout.COMPUTE2
    if procs.read_pid(HOLDER):
        return
    if layout.NETNS not in procs.run(['ip', 'netns', 'list']).split():
        procs.run(['ip', 'netns', 'add', layout.NETNS])
    _prepare_libvirt_dirs()
    os.makedirs(os.path.join(host.state, 'instances'), mode=0o711,
                exist_ok=True)
    os.makedirs(layout.INSTANCES, mode=0o711, exist_ok=True)
    os.makedirs('/run/openvswitch', exist_ok=True)
    mounts = [(private_dir(m), m) for m in layout.HOST2_MOUNTS]
    mounts.append((os.path.join(host.state, 'instances'), layout.INSTANCES))
    ready = os.path.join(layout.RUN, 'compute2.ready')
    if os.path.exists(ready):
        os.unlink(ready)
    script = ['set -e', 'hostname %s' % layout.HOSTNAME2]
    script += ['mount --bind %s %s' % pair for pair in mounts]
    script += ['mount -t hugetlbfs hugetlbfs /dev/hugepages',
               'ip link set lo up', 'touch %s' % ready, 'exec sleep infinity']
    procs.start(HOLDER, [
        'ip', 'netns', 'exec', layout.NETNS,
        'unshare', '--mount', '--uts', '--propagation', 'private',
        'sh', '-c', '\n'.join(script)], ready=procs.path_exists(ready))


def _prepare_libvirt_dirs():
    for mount in layout.HOST2_MOUNTS:
        path = private_dir(mount)
        if os.path.isdir(path):
            continue
        if mount == '/etc/libvirt':
            # The daemons' configuration, not this host's domains,
            # networks or secrets.
            shutil.copytree(mount, path, symlinks=True,
                            ignore=_host_objects)
            # libvirt refuses to migrate to a host with its own UUID. QEMU
            # guests of this daemon stay out of the main daemon's cgroups:
            # both would name a migrating guest's cgroup alike.
            with open(os.path.join(path, 'libvirtd.conf'), 'a') as conf:
                conf.write('\nhost_uuid = "%s"\n' % uuid.uuid4())
            admit_libvirt_group(os.path.join(path, 'libvirtd.conf'))
            with open(os.path.join(path, 'qemu.conf'), 'a') as conf:
                conf.write('\ncgroup_controllers = [ ]\n')
        else:
            os.makedirs(os.path.join(path, 'qemu'))
    # The main daemon's QEMU capabilities are valid here too (same
    # binaries): probing QEMU again takes seconds.
    caches = '/var/cache/libvirt/qemu/capabilities'
    if os.path.isdir(caches):
        shutil.copytree(caches, os.path.join(
            private_dir('/var/cache/libvirt'), 'qemu', 'capabilities'),
            dirs_exist_ok=True)


def _host_objects(directory, names):
    """What copytree leaves out of /etc/libvirt: the objects libvirtd has
    defined on this host."""
    if os.path.basename(directory) == 'qemu':
        return [n for n in names if n.endswith('.xml') or n in (
            'autostart', 'networks', 'checkpoint', 'snapshot')]
    return [n for n in names if n in ('secrets', 'storage')]


def links_up():
    """The management and provider veth links between the two hosts."""
    links = procs.run(['ip', '-o', 'link', 'show']).split()
    for here, there in (layout.MGMT_LINK, layout.PHYS_LINK):
        if here + ':' not in links and not any(
                w.startswith(here + '@') for w in links):
            procs.run(['ip', 'link', 'add', here, 'type', 'veth', 'peer',
                       'name', there, 'netns', layout.NETNS])
        procs.run(['ip', 'link', 'set', here, 'up'])
        procs.run(['ip', '-n', layout.NETNS, 'link', 'set', there, 'up'])
    for host, dev, netns in ((layout.COMPUTE1, layout.MGMT_LINK[0], []),
                             (layout.COMPUTE2, layout.MGMT_LINK[1],
                              ['-n', layout.NETNS])):
        cidr = '%s/%d' % (host.mgmt_ip, layout.MGMT_PREFIX)
        if cidr not in procs.run(['ip'] + netns + ['-o', 'addr', 'show',
                                                   'dev', dev]):
            procs.run(['ip'] + netns + ['addr', 'add', cidr, 'dev', dev])


# -- libvirtd for the nova user ---------------------------------------------

LIBVIRTD_CONF = '/etc/libvirt/libvirtd.conf'
# What DevStack writes: group libvirt manages libvirtd through its
# read-write socket without polkit (Debian's polkit rule says the same;
# no polkit runs here). nova-compute is in that group.
GROUP_ACCESS = ('unix_sock_group = "libvirt"', 'unix_sock_rw_perms = "0770"',
                'auth_unix_rw = "none"')


def admit_libvirt_group(path):
    """libvirtd configuration ``path`` with GROUP_ACCESS (once); whether
    it changed. .ci/setup writes the same into this machine's."""
    with open(path) as f:
        lines = [line.strip() for line in f]
    missing = [line for line in GROUP_ACCESS if line not in lines]
    if not missing:
        return False
    with open(path, 'a') as conf:
        conf.write('\n# nova-compute (group libvirt) manages libvirtd '
                   'without polkit\n' + '\n'.join(missing) + '\n')
    return True


def as_nova_env():
    """The environment of a process of the nova user's."""
    return {'HOME': layout.NOVA_HOME, 'USER': layout.NOVA_USER,
            'LOGNAME': layout.NOVA_USER}


def as_nova(argv):
    """``argv`` run as the nova user, its group and supplementary
    groups (libvirt, kvm), no capabilities."""
    return ['setpriv', '--reuid', layout.NOVA_USER, '--regid',
            layout.NOVA_USER, '--init-groups', '--'] + list(argv)


def admits_nova(host):
    """Whether ``host``'s libvirtd lets the nova user manage it."""
    return not subprocess.run(
        wrap(host, as_nova(['virsh', '-c', 'qemu:///system', 'version'])),
        env=dict(os.environ, **as_nova_env()), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, timeout=60).returncode


# -- this machine's libvirtd and huge pages -------------------------------

def local_libvirt_up():
    """Huge pages, then virtlogd and libvirtd, as .ci/setup makes them."""
    pages = '/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages'
    try:
        with open(pages) as f:
            if int(f.read()) < HUGEPAGES:
                with open(pages, 'w') as out:
                    out.write('%d\n' % HUGEPAGES)
    except OSError:
        pass
    os.makedirs('/dev/hugepages', exist_ok=True)
    if subprocess.run(['mountpoint', '-q', '/dev/hugepages']).returncode:
        procs.run(['mount', '-t', 'hugetlbfs', 'hugetlbfs',
                   '/dev/hugepages'], check=False)
    admit_libvirt_group(LIBVIRTD_CONF)
    # Started here (and so stopped by down) only if not running already.
    for daemon in ('virtlogd', 'libvirtd'):
        if subprocess.run(['pgrep', '-x', daemon],
                          stdout=subprocess.DEVNULL).returncode:
            procs.start('compute1-' + daemon, [daemon])
    _wait_for_local_libvirtd()
    if not admits_nova(layout.COMPUTE1):
        _restart_local_libvirtd()


def _wait_for_local_libvirtd():
    procs.wait_for('libvirtd', lambda: procs.succeeds(
        ['virsh', '-c', 'qemu:///system', 'version']), timeout=60,
        interval=0.5)


def _restart_local_libvirtd():
    """This machine's libvirtd started before its configuration admitted
    group libvirt: started again, only while it runs no domain and has no
    client (another user's tests), as it was started (by up, or by
    .ci/setup as ``libvirtd -d``)."""
    name = 'libvirtd'
    running = procs.run(['virsh', '-c', 'qemu:///system', 'list',
                         '--state-running', '--name']).split()
    clients = [line for line in procs.run(
        ['virt-admin', 'srv-clients-list', 'libvirtd']).splitlines()[2:]
        if line.strip()]
    if running or clients:
        raise procs.DeployError(name, "this machine's libvirtd does not let "
                                "group libvirt (nova-compute) manage it, and "
                                "cannot be restarted with %s now (domains "
                                "running: %s; clients: %d): restart it when "
                                "idle, %s configures it" % (
                                    LIBVIRTD_CONF,
                                    ', '.join(running) or 'none',
                                    len(clients), '.ci/setup'))
    procs.say('restarting libvirtd: %s now lets group libvirt manage it'
              % LIBVIRTD_CONF)
    if procs.read_pid('compute1-libvirtd'):
        procs.stop('compute1-libvirtd')
        procs.start('compute1-libvirtd', ['libvirtd'])
    else:
        # Its PID file (compute2's libvirtd has its own, elsewhere).
        with open('/run/libvirtd.pid') as f:
            pid = int(f.read().strip())
        with open('/proc/%d/comm' % pid) as f:
            if f.read().strip() != 'libvirtd':
                raise procs.DeployError(name, '/run/libvirtd.pid names '
                                        'another process (%d)' % pid)
        procs.kill_all([pid])
        procs.run(['libvirtd', '-d'])
    _wait_for_local_libvirtd()
    if not admits_nova(layout.COMPUTE1):
        raise procs.DeployError(name, 'group libvirt cannot manage it after '
                                'a restart with %s' % LIBVIRTD_CONF)


def host2_libvirt_up():
    host = layout.COMPUTE2
    # pid files in its private /run/libvirt, not the main daemons' ones.
    start(host, 'virtlogd', ['virtlogd', '-p', '/run/libvirt/virtlogd.pid'],
          ready=procs.path_exists(os.path.join(
              private_dir('/run/libvirt'), 'virtlogd-sock')))
    admit_libvirt_group(os.path.join(private_dir('/etc/libvirt'),
                                     'libvirtd.conf'))
    start(host, 'libvirtd', ['libvirtd', '-p', '/run/libvirt/libvirtd.pid'],
          timeout=120,
          ready=procs.path_exists(os.path.join(
              private_dir('/run/libvirt'), 'libvirt-sock')))
    if not admits_nova(host):
        raise procs.DeployError('compute2-libvirtd', 'group libvirt cannot '
                                'manage it (it started before its '
                                'libvirtd.conf let it): deploy/down, then up')


# -- Open vSwitch, userspace datapath ---------------------------------------

def ovs_rundir(host):
    """Where ``host``'s Open vSwitch sockets are, seen from this host."""
    return ('/run/openvswitch' if host.is_local
            else private_dir('/run/openvswitch'))


def ovs_up(host):
    """``host``'s Open vSwitch with its provider bridge; whether
    ovs-vswitchd was started now."""
    db = os.path.join(host.state, 'ovs', 'conf.db')
    rundir = ovs_rundir(host)
    db_sock = os.path.join(rundir, 'db.sock')
    if procs.read_pid(host.name + '-ovsdb-server') is None:
        if procs.unix_socket_listens(db_sock):
            raise procs.DeployError(
                'openvswitch', 'another Open vSwitch already runs on %s '
                '(%s)' % (host.name, db_sock))
        # Left by daemons gone without a stop (a restart that kept /run):
        # a stale socket would pass for a ready one.
        forget_ovs_runtime(rundir)
    if not os.path.exists(db):
        os.makedirs(os.path.dirname(db), exist_ok=True)
        procs.run(['ovsdb-tool', 'create', db, OVS_SCHEMA])
    start(host, 'ovsdb-server', [
        'ovsdb-server', db, '--remote=punix:/run/openvswitch/db.sock',
        '--remote=ptcp:%d:%s' % (layout.OVSDB_PORT, layout.ADDRESS),
        '--remote=db:Open_vSwitch,Open_vSwitch,manager_options',
        '--unixctl=/run/openvswitch/ovsdb-server.ctl',
        '--pidfile=/run/openvswitch/ovsdb-server.pid'],
        ready=lambda: procs.unix_socket_listens(db_sock))
    run(host, ['ovs-vsctl', '--no-wait', 'init'])
    started = start(host, 'ovs-vswitchd', [
        'ovs-vswitchd', 'unix:/run/openvswitch/db.sock',
        '--unixctl=/run/openvswitch/ovs-vswitchd.ctl',
        '--pidfile=/run/openvswitch/ovs-vswitchd.pid'],
        ready=lambda: procs.unix_socket_listens(
            os.path.join(rundir, 'ovs-vswitchd.ctl')))
    # The provider bridge with this host's end of the provider link; the
    # OVS agent makes br-int and patches it to br-phys.
    bridge = 'br-phys'
    link = layout.PHYS_LINK[0 if host.is_local else 1]
    run(host, ['ovs-vsctl', '--may-exist', 'add-br', bridge, '--', 'set',
               'bridge', bridge, 'datapath_type=netdev'])
    run(host, ['ovs-vsctl', '--may-exist', 'add-port', bridge, link])
    if host.is_local:
        gw = layout.HOST_PROVIDER_PORT
        run(host, ['ovs-vsctl', '--may-exist', 'add-port', bridge, gw, '--',
                   'set', 'interface', gw, 'type=internal'])
        procs.wait_for(gw, lambda: os.path.exists('/sys/class/net/' + gw),
                       timeout=30, interval=0.2)
        cidr = '%s/%s' % (layout.PROVIDER_GATEWAY,
                          layout.PROVIDER_CIDR.split('/')[1])
        if cidr not in procs.run(['ip', '-o', 'addr', 'show', 'dev', gw]):
            procs.run(['ip', 'addr', 'add', cidr, 'dev', gw])
        procs.run(['ip', 'link', 'set', gw, 'up'])
    return started


def forget_ovs_runtime(rundir):
    """Remove the sockets and PID files Open vSwitch's daemons leave in
    ``rundir``."""
    if not os.path.isdir(rundir):
        return
    for name in os.listdir(rundir):
        if name.startswith(('db.sock', 'ovsdb-server', 'ovs-vswitchd',
                            'br-')):
            try:
                os.unlink(os.path.join(rundir, name))
            except OSError:
                pass


# -- SSH between the hosts (Nova's disk copies, libvirt's migrations) -----

def ssh_keys():
    """root's and the nova user's keys, both hosts' host keys, and the
    client configuration of root and nova for the hosts' management
    addresses: root's for libvirtd's ``qemu+ssh`` migrations (the source
    libvirtd connects to the destination's), nova's for Nova's disk copies
    (nova-compute runs ssh and scp itself)."""
    os.makedirs(SSH_DIR, mode=0o711, exist_ok=True)
    # Traversable, not listable: nova reaches its own key and the known
    # hosts; every private key stays its owner's alone.
    os.chmod(SSH_DIR, 0o711)
    nova = pwd.getpwnam(layout.NOVA_USER)
    keys = {'root': os.path.join(SSH_DIR, 'id_ed25519'),
            layout.NOVA_USER: os.path.join(SSH_DIR, 'nova_id_ed25519')}
    for path in list(keys.values()) + [host_key(h) for h in layout.HOSTS]:
        if not os.path.exists(path):
            procs.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C',
                       'kvmx-cloud', '-f', path])
    key = keys[layout.NOVA_USER]
    if os.stat(key).st_uid != nova.pw_uid:
        os.chown(key, nova.pw_uid, nova.pw_gid)
    # Each user's authorized keys: sshd reads them as that user.
    for user, path in keys.items():
        with open(path + '.pub') as f:
            base.write(authorized_keys(user), f.read(),
                       0o600 if user == 'root' else 0o644)
    known = []
    for host in layout.HOSTS:
        with open(host_key(host) + '.pub') as f:
            known.append('[%s]:%d %s' % (host.mgmt_ip, layout.SSH_PORT,
                                         f.read().strip()))
    base.write(os.path.join(SSH_DIR, 'known_hosts'), '\n'.join(known) + '\n')
    lines = ['# The compute hosts of the kvmx all-in-one cloud (deploy/up).']
    for user, path in sorted(keys.items()):
        lines += [
            'Match host %s localuser %s' % (
                ','.join(h.mgmt_ip for h in layout.HOSTS), user),
            '    Port %d' % layout.SSH_PORT,
            '    User ' + user,
            '    IdentityFile ' + path,
            '    IdentitiesOnly yes',
            '    UserKnownHostsFile ' + os.path.join(SSH_DIR, 'known_hosts'),
            '    StrictHostKeyChecking yes',
            '    BatchMode yes']
    base.write(layout.SSH_CLIENT_CONF, '\n'.join(lines + ['']))


def authorized_keys(user):
    return os.path.join(SSH_DIR, 'authorized_keys.' + user)


def host_key(host):
    return os.path.join(SSH_DIR, host.name + '_host_key')


def sshd_up(host):
    config = os.path.join(SSH_DIR, host.name + '_sshd_config')
    base.write(config, '\n'.join((
        'ListenAddress %s:%d' % (host.mgmt_ip, layout.SSH_PORT),
        'HostKey ' + host_key(host),
        'AuthorizedKeysFile ' + authorized_keys('%u'),
        'AllowUsers root ' + layout.NOVA_USER,
        'PermitRootLogin prohibit-password',
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        'UsePAM no',
        'Subsystem sftp internal-sftp', '')))
    os.makedirs('/run/sshd', mode=0o755, exist_ok=True)
    start(host, 'sshd', ['/usr/sbin/sshd', '-D', '-e', '-f', config])
    procs.wait_for('sshd of %s' % host.name, lambda: procs.succeeds(
        ['ssh', host.mgmt_ip, 'true']), timeout=30,
        service=host.name + '-sshd',
        log=procs.logfile(host.name + '-sshd'))


# -- compute2 reaches the control plane ------------------------------------

def forwarders_up():
    """compute2's services reach the control plane's loopback ports at the
    same addresses in their own network namespace (see forward)."""
    for service in layout.FORWARDED:
        forward(service, layout.PORTS[service])


def forward(name, port):
    """A forwarder in compute2's network namespace listens on ``port`` of
    the loopback address and carries each connection through a UNIX
    socket (filesystem, not network, so it crosses namespaces) to a
    forwarder here that connects to the same port: daemons ``forward-NAME``
    on both hosts."""
    directory = os.path.join(layout.RUN, 'forward')
    os.makedirs(directory, mode=0o700, exist_ok=True)
    sock = os.path.join(directory, name + '.sock')
    procs.start('forward-%s' % name, [
        'socat', 'UNIX-LISTEN:%s,fork,unlink-early,mode=600' % sock,
        'TCP:%s:%d' % (layout.ADDRESS, port)],
        ready=procs.path_exists(sock))
    start(layout.COMPUTE2, 'forward-%s' % name, [
        'socat', 'TCP-LISTEN:%d,bind=%s,fork,reuseaddr' % (
            port, layout.ADDRESS), 'UNIX-CONNECT:%s' % sock])
