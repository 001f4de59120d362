"""The two compute hosts: namespaces, links, Open vSwitch, sshd, libvirtd.

compute1 is this machine. compute2 lives in namespaces of its own (see
layout.Host): a network namespace made with ``ip netns``, and a mount and
UTS namespace held by a process that does nothing else; every compute2
daemon joins all three with ``nsenter``.
"""

import os
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
    # Started here (and so stopped by down) only if not running already.
    for daemon in ('virtlogd', 'libvirtd'):
        if subprocess.run(['pgrep', '-x', daemon],
                          stdout=subprocess.DEVNULL).returncode:
            procs.start('compute1-' + daemon, [daemon])
    procs.wait_for('libvirtd', lambda: procs.succeeds(
        ['virsh', '-c', 'qemu:///system', 'version']), timeout=60,
        interval=0.5)


def host2_libvirt_up():
    host = layout.COMPUTE2
    # pid files in its private /run/libvirt, not the main daemons' ones.
    start(host, 'virtlogd', ['virtlogd', '-p', '/run/libvirt/virtlogd.pid'],
          ready=procs.path_exists(os.path.join(
              private_dir('/run/libvirt'), 'virtlogd-sock')))
    start(host, 'libvirtd', ['libvirtd', '-p', '/run/libvirt/libvirtd.pid'],
          timeout=120,
          ready=procs.path_exists(os.path.join(
              private_dir('/run/libvirt'), 'libvirt-sock')))


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
    """root's key, both hosts' host keys, and root's client configuration
    for the hosts' management addresses."""
    os.makedirs(SSH_DIR, mode=0o700, exist_ok=True)
    key = os.path.join(SSH_DIR, 'id_ed25519')
    for path in [key] + [host_key(h) for h in layout.HOSTS]:
        if not os.path.exists(path):
            procs.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C',
                       'kvmx-cloud', '-f', path])
    with open(key + '.pub') as f:
        base.write(os.path.join(SSH_DIR, 'authorized_keys'), f.read(), 0o600)
    known = []
    for host in layout.HOSTS:
        with open(host_key(host) + '.pub') as f:
            known.append('[%s]:%d %s' % (host.mgmt_ip, layout.SSH_PORT,
                                         f.read().strip()))
    base.write(os.path.join(SSH_DIR, 'known_hosts'), '\n'.join(known) + '\n')
    base.write(layout.SSH_CLIENT_CONF, '\n'.join((
        '# The compute hosts of the kvmx all-in-one cloud (deploy/up).',
        'Host %s' % ' '.join(h.mgmt_ip for h in layout.HOSTS),
        '    Port %d' % layout.SSH_PORT,
        '    User root',
        '    IdentityFile ' + key,
        '    IdentitiesOnly yes',
        '    UserKnownHostsFile ' + os.path.join(SSH_DIR, 'known_hosts'),
        '    StrictHostKeyChecking yes',
        '    BatchMode yes', '')))


def host_key(host):
    return os.path.join(SSH_DIR, host.name + '_host_key')


def sshd_up(host):
    config = os.path.join(SSH_DIR, host.name + '_sshd_config')
    base.write(config, '\n'.join((
        'ListenAddress %s:%d' % (host.mgmt_ip, layout.SSH_PORT),
        'HostKey ' + host_key(host),
        'AuthorizedKeysFile ' + os.path.join(SSH_DIR, 'authorized_keys'),
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
