"""Where the all-in-one cloud lives: paths, addresses, ports, names.

One place for every fixed choice, so that up, down, the tests and Tempest
agree. The layout is a deployment's: configuration under /etc, state under
/var/lib, logs under /var/log, PID files under /run; the OpenStack code in
a virtualenv under /opt that ``down`` keeps (it is an install, not state)
unless asked to purge it.
"""

import os

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))

ETC = '/etc/kvmx-cloud'
STATE = '/var/lib/kvmx-cloud'
LOGS = '/var/log/kvmx-cloud'
RUN = '/run/kvmx-cloud'
PIDS = os.path.join(RUN, 'pids')
OPT = '/opt/kvmx-cloud'
VENV = os.path.join(OPT, 'venv')
TEMPEST_VENV = os.path.join(OPT, 'tempest-venv')
BIN = os.path.join(VENV, 'bin')
CLOUDS_YAML = os.path.join(ETC, 'clouds.yaml')
TEMPEST_WORKSPACE = os.path.join(STATE, 'tempest')
TEMPEST_CONF = os.path.join(TEMPEST_WORKSPACE, 'etc', 'tempest.conf')
# Kept by down, so that runs on both drivers can be compared.
TEMPEST_RESULTS = os.path.join(OPT, 'tempest-results')
SSH_CLIENT_CONF = '/etc/ssh/ssh_config.d/kvmx-cloud.conf'
# nova-compute runs as this unprivileged user (as .ci/setup and
# distributions make it: groups libvirt and kvm); it may run its privsep
# helpers through nova-rootwrap with sudo, as this file says.
NOVA_USER = 'nova'
NOVA_HOME = '/var/lib/nova'
NOVA_GROUPS = ('libvirt', 'kvm')
SUDOERS = '/etc/sudoers.d/kvmx-cloud-nova'
SECRETS = os.path.join(ETC, 'secrets.json')

# Every API, the database, the message bus and memcached listen on the
# loopback address only, on ports of a range of their own.
ADDRESS = '127.0.0.1'
PORTS = {
    'mariadb': 33306,
    'rabbitmq': 35672,
    'rabbitmq-dist': 35673,
    'epmd': 34369,
    'memcached': 31211,
    'keystone': 35000,
    'placement': 38778,
    'glance': 39292,
    'neutron': 39696,
    'nova': 38774,
    'nova-metadata': 38775,
    'cinder': 38776,
    'novncproxy': 36080,
}


# Each host's ovsdb-server also listens on this port of its loopback
# address (compute2's in its own network namespace), where nova-compute,
# unprivileged, reaches it for os-vif (os-vif's default; the UNIX socket
# is root's).
OVSDB_PORT = 6640


def url(service, path=''):
    return 'http://%s:%d%s' % (ADDRESS, PORTS[service], path)


class Host(object):
    """A compute host of the cloud.

    ``compute1`` is this machine itself. ``compute2`` is a second host on
    the same machine: its own network, mount and UTS namespaces (its own
    hostname, libvirtd, Open vSwitch, instances directory, sshd), joined to
    this one by two veth links -- the management network (libvirt's
    migrations, disk copies over SSH, VNC) and the provider network the
    guests' ports are on. Its services reach the control plane's loopback
    ports through forwarders (``forwarded`` below), as a compute node
    reaches a controller's addresses.
    """

    def __init__(self, name, mgmt_ip, ovs_port_suffix):
        self.name = name
        self.mgmt_ip = mgmt_ip
        self.etc = os.path.join(ETC, name)
        self.state = os.path.join(STATE, name)
        self.ovs_suffix = ovs_port_suffix

    @property
    def is_local(self):
        return self.name == 'compute1'

    def __repr__(self):
        return self.name


MGMT_PREFIX = 24
COMPUTE1 = Host('compute1', '172.30.237.1', '1')
COMPUTE2 = Host('compute2', '172.30.237.2', '2')
HOSTS = (COMPUTE1, COMPUTE2)

# compute2's namespaces: the network one under /run/netns (``ip netns``),
# the mount and UTS ones held by a process of their own.
NETNS = 'kvmx-compute2'
HOSTNAME2 = 'kvmx-compute2'
MGMT_LINK = ('kvmx-mgmt1', 'kvmx-mgmt2')      # this host's end, compute2's
PHYS_LINK = ('kvmx-phys1', 'kvmx-phys2')
# Private mounts of compute2 over the paths its daemons use.
HOST2_MOUNTS = ('/run/libvirt', '/var/lib/libvirt', '/etc/libvirt',
                '/var/cache/libvirt', '/var/log/libvirt', '/run/openvswitch')
# The control-plane ports compute2's services use (through forwarders).
FORWARDED = ('rabbitmq', 'keystone', 'placement', 'glance', 'neutron',
             'cinder')

# Both hosts' instances directory has the same path (Nova's rule for live
# migration); compute2 sees its own directory there.
INSTANCES = os.path.join(STATE, 'instances')
SSH_PORT = 2222

# Tenant networking: Neutron ML2/OVS on Open vSwitch's userspace (netdev)
# datapath; one provider network, flat, on physnet1, which each host's
# br-phys carries over the provider veth link (VLAN tenant networks on the
# same physnet). This host has an address on it, so the guests are
# reachable from here (Tempest's SSH validation).
PHYSNET = 'physnet1'
VLAN_RANGE = '100:199'
PROVIDER_NET = 'kvmx-net'
PROVIDER_CIDR = '172.30.238.0/24'
PROVIDER_GATEWAY = '172.30.238.1'
PROVIDER_POOL = ('172.30.238.10', '172.30.238.250')
HOST_PROVIDER_PORT = 'kvmx-gw'

# Block storage: deploy/ceph's single-node cluster in its default state
# directory (its mon on 127.0.0.1:6789), Cinder's volumes in its `volumes`
# pool as its cephx user `cinder`, whose key both hosts' libvirtd hold as
# a secret (usage name CEPH_SECRET_USAGE) for QEMU's librbd.
CEPH_TOOLS = os.path.join(REPO, 'deploy', 'ceph')
CEPH_DIR = '/var/lib/kvmx-ceph'
CEPH_CONF = os.path.join(CEPH_DIR, 'ceph.conf')
CEPH_ENV = os.path.join(CEPH_DIR, 'env')
VOLUME_POOL = 'volumes'
CEPH_USER = 'cinder'
CEPH_SECRET_USAGE = 'kvmx-cloud client.cinder secret'

# Guests of the cloud on this machine's libvirtd are told apart from other
# domains (the functional tests', an operator's) by this name.
INSTANCE_NAME_TEMPLATE = 'kvmx-cloud-%08x'
REGION = 'RegionOne'
