"""Block storage under Cinder: deploy/ceph's single-node cluster, reached
from both compute hosts, and the key of Cinder's cephx user in each
host's libvirtd.

The cluster is deploy/ceph's (``deploy/ceph/up``, in its default state
directory): this module starts it, forwards its mon's and OSD's ports into
compute2's network namespace (QEMU's librbd there connects to the
addresses the cluster advertises, 127.0.0.1), and defines the libvirt
secret QEMU opens Cinder's RBD volumes with, as an operator does on every
compute host (Ceph's "Block Devices and OpenStack" guide). ``down`` removes
the volumes Cinder left and stops the cluster, keeping its data.
"""

import json
import os
import shlex
import subprocess
import uuid

from cloud import base
from cloud import hosts
from cloud import layout
from cloud import procs

SECRET_XML = os.path.join(layout.ETC, 'ceph', 'client.cinder-secret.xml')
# deploy/ceph's daemons, by their PID files (deploy/status lists them).
DAEMONS = ('mon.a', 'mgr.x', 'osd.0')


def start_ceph():
    """Start ``deploy/ceph/up`` (packages, cluster, HEALTH_OK: half a
    minute to two) while the rest of the cloud comes up; the returned
    function waits for it and returns the cluster's env values
    (CEPH_CONF, CEPH_CINDER_KEY, ...: deploy/ceph/README.md)."""
    os.makedirs(layout.LOGS, exist_ok=True)
    log = procs.logfile('ceph-up')
    with open(log, 'w') as out:
        process = subprocess.Popen(
            [os.path.join(layout.CEPH_TOOLS, 'up'), '--dir',
             layout.CEPH_DIR], stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT)

    def wait():
        if process.wait(timeout=1500):
            raise procs.DeployError('ceph', 'deploy/ceph/up exited %d'
                                    % process.returncode, log)
        return ceph_env()
    return wait


def ceph_env():
    values = {}
    with open(layout.CEPH_ENV) as f:
        for line in f:
            if '=' in line and not line.startswith('#'):
                name, _, value = line.strip().partition('=')
                values[name] = shlex.split(value)[0]
    return values


def ceph(tool, *args, user='admin'):
    """Ceph's command ``tool`` (ceph, rbd) on the cluster as ``user``."""
    return procs.run([tool, '-c', layout.CEPH_CONF, '--id', user] +
                     list(args), timeout=120)


def ceph_ports():
    """The ports a client connects to: the mon's and the OSDs' public
    ones (the OSD takes its ports from Ceph's range when it starts)."""
    ports = {int(ceph_env()['CEPH_MON_HOST'].rsplit(':', 1)[1])}
    for osd in json.loads(ceph('ceph', 'osd', 'dump', '-f', 'json'))['osds']:
        for addr in osd['public_addrs']['addrvec']:
            ports.add(int(addr['addr'].rsplit(':', 1)[1]))
    return ports


def forwarders_up():
    """compute2 reaches the cluster at the addresses it advertises; the
    forwarders of ports the cluster no longer uses (an OSD started again
    took others) stop."""
    ports = ceph_ports()
    for port in sorted(ports):
        hosts.forward('ceph-%d' % port, port)
    keep = {'%sforward-ceph-%d' % (host, port) for port in ports
            for host in ('', layout.COMPUTE2.name + '-')}
    procs.stop_all([name for name in procs.running()
                    if 'forward-ceph-' in name and name not in keep])


def secret_uuid():
    """The UUID of the libvirt secret holding client.cinder's key: the
    same on both hosts, in cinder.conf and in nova.conf."""
    return str(uuid.UUID(base.secret('ceph-secret-uuid')))


def libvirt_secrets_up(key):
    """client.cinder's key as a libvirt secret in both hosts' libvirtd."""
    base.write(SECRET_XML, '\n'.join((
        "<secret ephemeral='no' private='no'>",
        '  <uuid>%s</uuid>' % secret_uuid(),
        "  <usage type='ceph'><name>%s</name></usage>" %
        layout.CEPH_SECRET_USAGE,
        '</secret>', '')))
    keyfile = os.path.join(layout.RUN, 'client.cinder.key')
    for host in layout.HOSTS:
        virsh = ['virsh', '-c', 'qemu:///system']
        held = hosts.run(host, virsh + ['secret-get-value', secret_uuid()],
                         check=False, quiet=True).strip()
        if held == key:
            continue
        hosts.run(host, virsh + ['secret-define', '--file', SECRET_XML])
        # From a file: a key on a command line is seen by every process.
        base.write(keyfile, key, mode=0o600)
        try:
            hosts.run(host, virsh + ['secret-set-value', '--secret',
                                     secret_uuid(), '--file', keyfile])
        finally:
            os.unlink(keyfile)
        procs.say('libvirt secret %s (client.cinder) defined on %s'
                  % (secret_uuid(), host.name))


def local_secrets():
    """UUIDs of this machine's libvirt secrets of the cloud (compute2's
    go with its libvirtd)."""
    out = procs.run(['virsh', '-c', 'qemu:///system', 'secret-list'],
                    check=False, quiet=True)
    return [line.split()[0] for line in out.splitlines()
            if line.rstrip().endswith(layout.CEPH_SECRET_USAGE)]


def running_daemons():
    """{name: PID} of the cluster's daemons that run."""
    found = {}
    for name in DAEMONS:
        try:
            with open(os.path.join(layout.CEPH_DIR, 'run',
                                   name + '.pid')) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            continue
        if procs.alive(pid):
            found['ceph-' + name] = pid
    return found


def down():
    """Cinder's volumes (its database goes with the cloud) removed, the
    cluster stopped, its data kept; the local libvirt secret undefined.
    Returns the images that could not be removed."""
    for uuid_ in local_secrets():
        procs.run(['virsh', '-c', 'qemu:///system', 'secret-undefine',
                   uuid_], check=False)
    if not os.path.exists(layout.CEPH_CONF):
        return []
    left = []
    if running_daemons():
        for image in volume_images():
            spec = '%s/%s' % (layout.VOLUME_POOL, image)
            procs.say('removing RBD image %s' % spec)
            try:
                ceph('rbd', 'snap', 'purge', spec, user=layout.CEPH_USER)
                ceph('rbd', 'rm', '--no-progress', spec,
                     user=layout.CEPH_USER)
            except procs.DeployError as ex:
                left.append('RBD image %s: %s' % (spec, ex))
    procs.run([os.path.join(layout.CEPH_TOOLS, 'down'), '--dir',
               layout.CEPH_DIR])
    return left


def volume_images():
    return ceph('rbd', 'ls', layout.VOLUME_POOL,
                user=layout.CEPH_USER).split()
