"""The cloud's contents, made through the APIs with openstacksdk: service
users and endpoints, the demo project, the provider network, the flavors
and the test image. Run with the cloud's virtualenv::

    /opt/kvmx-cloud/venv/bin/python -m cloud.bootstrap STAGE

Every stage only adds what is missing.
"""

import os
import sys

import openstack

from cloud import base
from cloud import layout

SERVICES = (
    # user, service name, type, endpoint URL
    ('placement', 'placement', 'placement', layout.url('placement')),
    ('glance', 'glance', 'image', layout.url('glance')),
    ('neutron', 'neutron', 'network', layout.url('neutron')),
    ('nova', 'nova', 'compute', layout.url('nova', '/v2.1')),
    # Cinder's v3 API under the type of today's clients and Tempest
    # (block-storage) and under the one Nova looks up ([cinder]
    # catalog_info: volumev3).
    ('cinder', 'cinder', 'block-storage', layout.url('cinder', '/v3')),
    ('cinder', 'cinderv3', 'volumev3', layout.url('cinder', '/v3')),
)

# name: (vCPUs, MiB, GiB of root disk, extra specs). Tempest uses the
# first two (kvmx.tiny and kvmx.small, for resizes); the NFV flavors use
# each host's one dedicated CPU ([compute] cpu_dedicated_set).
FLAVORS = {
    'kvmx.tiny': (1, 128, 1, {}),
    'kvmx.small': (1, 192, 2, {}),
    'pinned': (1, 128, 1, {'hw:cpu_policy': 'dedicated'}),
    'pinned.hugepage': (1, 128, 1, {'hw:cpu_policy': 'dedicated',
                                    'hw:mem_page_size': '2MB'}),
    # Defined for completeness: a realtime guest needs two dedicated CPUs
    # on one host and CAP_SYS_RESOURCE, which this machine lacks.
    'realtime': (2, 256, 1, {'hw:cpu_policy': 'dedicated',
                             'hw:cpu_realtime': 'yes',
                             'hw:cpu_realtime_mask': '^0',
                             'hw:emulator_threads_policy': 'share',
                             'hw:mem_page_size': '2MB'}),
}
IMAGE = 'kvmx-guest'


def identity(cloud):
    service = cloud.identity.find_project('service') or \
        cloud.identity.create_project(name='service', domain_id='default')
    roles = {r.name: r for r in cloud.identity.roles()}
    for role in ('service', 'member'):
        if role not in roles:
            roles[role] = cloud.identity.create_role(name=role)
    for user, name, kind, url in SERVICES:
        account = _user(cloud, user, service)
        for role in ('admin', 'service'):
            cloud.identity.assign_project_role_to_user(
                service, account, roles[role])
        entry = cloud.identity.find_service(name) or \
            cloud.identity.create_service(name=name, type=kind)
        have = {e.interface for e in cloud.identity.endpoints(
            service_id=entry.id)}
        for interface in ('public', 'internal', 'admin'):
            if interface not in have:
                cloud.identity.create_endpoint(
                    service_id=entry.id, interface=interface, url=url,
                    region_id=layout.REGION)
    demo = cloud.identity.find_project('demo') or \
        cloud.identity.create_project(name='demo', domain_id='default')
    cloud.identity.assign_project_role_to_user(
        demo, _user(cloud, 'demo', demo), roles['member'])


def _user(cloud, name, project):
    return cloud.identity.find_user(name) or cloud.identity.create_user(
        name=name, password=base.secret('keystone-' + name),
        default_project_id=project.id, domain_id='default')


def network(cloud):
    """The shared provider network on physnet1 with its subnet, and the
    demo project's default security group open to SSH and ping."""
    net = cloud.network.find_network(layout.PROVIDER_NET)
    if net is None:
        net = cloud.network.create_network(
            name=layout.PROVIDER_NET, shared=True,
            provider_network_type='flat',
            provider_physical_network=layout.PHYSNET)
    if not list(cloud.network.subnets(network_id=net.id)):
        cloud.network.create_subnet(
            name=layout.PROVIDER_NET + '-subnet', network_id=net.id,
            ip_version=4, cidr=layout.PROVIDER_CIDR,
            gateway_ip=layout.PROVIDER_GATEWAY, enable_dhcp=True,
            allocation_pools=[{'start': layout.PROVIDER_POOL[0],
                               'end': layout.PROVIDER_POOL[1]}])
    demo = cloud.identity.find_project('demo')
    groups = list(cloud.network.security_groups(project_id=demo.id,
                                                name='default'))
    group = groups[0] if groups else cloud.network.create_security_group(
        name='default', project_id=demo.id)
    have = {(r.protocol, r.port_range_min) for r in
            cloud.network.security_group_rules(security_group_id=group.id,
                                               direction='ingress')}
    for protocol, port in (('tcp', 22), ('icmp', None)):
        if (protocol, port) not in have:
            cloud.network.create_security_group_rule(
                security_group_id=group.id, direction='ingress',
                ethertype='IPv4', protocol=protocol, port_range_min=port,
                port_range_max=port, project_id=demo.id)


def flavors(cloud):
    for name, (vcpus, ram, disk, specs) in FLAVORS.items():
        flavor = cloud.compute.find_flavor(name)
        if flavor is None:
            flavor = cloud.compute.create_flavor(
                name=name, vcpus=vcpus, ram=ram, disk=disk, is_public=True)
            if specs:
                cloud.compute.create_flavor_extra_specs(flavor, specs)


def images(cloud, directory):
    """Upload the test guest from ``directory`` (kernel, initramfs,
    root.qcow2, cmdline): the kernel and ramdisk as their own images, the
    root disk referring to them."""
    if cloud.image.find_image(IMAGE):
        return
    ids = {}
    for name, disk_format, path in (
            ('kvmx-guest-kernel', 'aki', 'kernel'),
            ('kvmx-guest-ramdisk', 'ari', 'initramfs')):
        ids[disk_format] = _upload(cloud, name, disk_format, disk_format,
                                   os.path.join(directory, path)).id
    with open(os.path.join(directory, 'cmdline')) as f:
        cmdline = f.read().strip()
    _upload(cloud, IMAGE, 'qcow2', 'bare',
            os.path.join(directory, 'root.qcow2'), kernel_id=ids['aki'],
            ramdisk_id=ids['ari'], os_command_line=cmdline)


def _upload(cloud, name, disk_format, container_format, path, **properties):
    existing = cloud.image.find_image(name)
    if existing is not None:
        return existing
    return cloud.image.create_image(
        name=name, filename=path, disk_format=disk_format,
        container_format=container_format, visibility='public',
        allow_duplicates=True, wait=True, **properties)


def main(argv):
    cloud = openstack.connect(cloud='kvmx-admin')
    stage = argv[1]
    if stage == 'images':
        images(cloud, argv[2])
    else:
        {'identity': identity, 'network': network,
         'flavors': flavors}[stage](cloud)


if __name__ == '__main__':
    sys.exit(main(sys.argv))
