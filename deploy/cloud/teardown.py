"""deploy/down: the cloud's guests, daemons, namespaces, links and files
go; nothing else on the machine is touched."""

import os
import shutil
import subprocess

from cloud import hosts
from cloud import layout
from cloud import privileges
from cloud import procs
from cloud import storage

# What Neutron's DHCP agent makes: a namespace per network, with dnsmasq
# and haproxy daemonized in it (sessions of their own).
NEUTRON_NETNS_PREFIXES = ('qdhcp-',)
# Stopped after the OpenStack services.
BASE = ('mariadb', 'rabbitmq', 'memcached', 'compute2-namespaces')


def down(purge=False):
    remove_guests()
    # This machine's Open vSwitch runtime is ours to remove if we ran it,
    # or if what is left of it is stale.
    ran_ovs = procs.read_pid('compute1-ovsdb-server') is not None or \
        not procs.unix_socket_listens(os.path.join(
            hosts.ovs_rundir(layout.COMPUTE1), 'db.sock'))
    names = procs.running()
    procs.say('stopping %d daemons' % len(names))
    # The OpenStack services first, so that none of them acts on the
    # disappearance of the daemons under it.
    base_daemons = [n for n in names if n in BASE]
    procs.stop_all([n for n in names if n not in BASE])
    procs.stop_all(base_daemons)
    rbd_left = storage.down()
    # RabbitMQ's port mapper daemonizes out of RabbitMQ's session.
    procs.run(['epmd', '-port', str(layout.PORTS['epmd']), '-kill'],
              check=False)
    remove_namespaces(lambda netns: netns == layout.NETNS or
                      netns.startswith(NEUTRON_NETNS_PREFIXES))
    for link in (layout.MGMT_LINK[0], layout.PHYS_LINK[0],
                 layout.HOST_PROVIDER_PORT):
        if os.path.exists('/sys/class/net/' + link):
            procs.run(['ip', 'link', 'delete', link], check=False)
    if ran_ovs:
        _remove_ovs_runtime()
    for path in (layout.SSH_CLIENT_CONF,):
        if os.path.exists(path):
            os.unlink(path)
    privileges.sudoers_down()
    for path in (layout.ETC, layout.STATE, layout.LOGS, layout.RUN):
        shutil.rmtree(path, ignore_errors=True)
    if purge:
        shutil.rmtree(layout.OPT, ignore_errors=True)
    left = rbd_left + leftovers()
    if left:
        raise procs.DeployError('down', 'left behind:\n  ' +
                                '\n  '.join(left))
    procs.say('cloud removed%s' % (' (and %s)' % layout.OPT if purge
                                   else '; %s kept for the next up' %
                                   layout.OPT))


def leftovers():
    """What of the cloud is still on the machine: processes, namespaces,
    links, domains, files."""
    found = []
    marks = (b'kvmx-cloud', b'openvswitch/db.sock',
             b'-port %d' % layout.PORTS['epmd'], layout.CEPH_CONF.encode())
    for entry in os.listdir('/proc'):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open('/proc/%s/cmdline' % entry, 'rb') as f:
                argv = f.read().replace(b'\0', b' ').strip()
        except OSError:
            continue
        if argv and any(mark in argv for mark in marks) and \
                procs.alive(int(entry)):
            found.append('process %s: %s' % (entry, argv[:120].decode(
                'utf-8', 'replace')))
    found += ['network namespace %s' % n for n in _namespaces()
              if n == layout.NETNS or n.startswith(NEUTRON_NETNS_PREFIXES)]
    found += ['link %s' % link for link in os.listdir('/sys/class/net')
              if link.startswith('kvmx-')]
    prefix = layout.INSTANCE_NAME_TEMPLATE.split('%')[0]
    found += ['domain %s' % name for name in subprocess.run(
        ['virsh', '-c', 'qemu:///system', 'list', '--all', '--name'],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True).stdout.split() if name.startswith(prefix)]
    found += ['libvirt secret %s' % s for s in storage.local_secrets()]
    found += [path for path in (layout.ETC, layout.STATE, layout.LOGS,
                                layout.RUN, layout.SSH_CLIENT_CONF,
                                layout.SUDOERS)
              if os.path.exists(path)]
    return found


def remove_namespaces(which):
    """Kill what runs in the network namespaces ``which`` selects, then
    delete them."""
    for netns in _namespaces():
        if which(netns):
            pids = [int(p) for p in procs.run(
                ['ip', 'netns', 'pids', netns], check=False).split()
                if p.isdigit()]
            procs.kill_all(pids)
            procs.run(['ip', 'netns', 'delete', netns], check=False)


def _namespaces():
    return [line.split()[0] for line in procs.run(
        ['ip', 'netns', 'list'], check=False).splitlines() if line.strip()]


def remove_guests():
    """Destroy and undefine the cloud's domains: on this machine's libvirtd
    those named by the cloud's instance name template, on compute2's every
    domain (it is the cloud's own daemon)."""
    prefix = layout.INSTANCE_NAME_TEMPLATE.split('%')[0]
    uris = [('qemu:///system', prefix)]
    if procs.read_pid('compute2-libvirtd'):
        uris.append(('qemu+unix:///system?socket=%s' % os.path.join(
            hosts.private_dir('/run/libvirt'), 'libvirt-sock'), ''))
    for uri, name_prefix in uris:
        names = subprocess.run(
            ['virsh', '-c', uri, 'list', '--all', '--name'],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True).stdout.split()
        for name in names:
            if not name.startswith(name_prefix):
                continue
            procs.say('removing domain %s' % name)
            procs.run(['virsh', '-c', uri, 'destroy', name], check=False)
            procs.run(['virsh', '-c', uri, 'undefine', name,
                       '--managed-save', '--nvram'], check=False)


def _remove_ovs_runtime():
    """What this machine's Open vSwitch, started by up, leaves: its
    sockets in /run/openvswitch and the tap devices of its bridges'
    internal ports (the userspace datapath's)."""
    for bridge in ('br-int', 'br-phys'):
        if os.path.exists('/sys/class/net/%s/tun_flags' % bridge):
            procs.run(['ip', 'link', 'delete', bridge], check=False)
    hosts.forget_ovs_runtime(hosts.ovs_rundir(layout.COMPUTE1))
