"""Tempest against the all-in-one cloud: its configuration and its runs.

``tempest.conf`` is written for this cloud (its endpoints, admin
credentials, the two computes, the kvmx flavors and the test image, the
shared provider network for servers and for SSH validation); the curated
list is ``deploy/tempest-include.txt`` less ``deploy/tempest-exclude.txt``
(each exclusion with its reason). Results of a run are kept per driver in
/opt/kvmx-cloud/tempest-results, which ``down`` keeps, so that runs on both
drivers can be compared (benchmarks/tempest_compare.py).

Run with the cloud's virtualenv (it asks the cloud for IDs)::

    python -m cloud.tempest config
"""

import configparser
import os
import sys

import openstack

from cloud import base
from cloud import bootstrap
from cloud import cinder
from cloud import layout
from cloud import nova

WORKSPACE = layout.TEMPEST_WORKSPACE
CONF = layout.TEMPEST_CONF


def settings(cloud):
    image = cloud.image.find_image(bootstrap.IMAGE, ignore_missing=False)
    flavor = cloud.compute.find_flavor('kvmx.tiny', ignore_missing=False)
    flavor_alt = cloud.compute.find_flavor('kvmx.small',
                                           ignore_missing=False)
    return {
        'DEFAULT': {'log_file': os.path.join(WORKSPACE, 'tempest.log')},
        'auth': {
            'admin_username': 'admin',
            'admin_password': base.secret('keystone-admin'),
            'admin_project_name': 'admin',
            'admin_domain_name': 'Default',
            'use_dynamic_credentials': 'true',
            # No L3 agent here: every test server is on the shared
            # provider network.
            'create_isolated_networks': 'false',
        },
        'identity': {
            'uri_v3': layout.url('keystone', '/v3'),
            'auth_version': 'v3',
            'region': layout.REGION,
        },
        'compute': {
            'image_ref': image.id,
            'image_ref_alt': image.id,
            'flavor_ref': flavor.id,
            'flavor_ref_alt': flavor_alt.id,
            'fixed_network_name': layout.PROVIDER_NET,
            'min_compute_nodes': str(len(layout.HOSTS)),
            'build_timeout': '300',
            'ready_wait': '0',
            'max_microversion': 'latest',
        },
        'compute-feature-enabled': {
            'live_migration': 'true',
            'block_migration_for_live_migration': 'true',
            'volume_backed_live_migration': 'false',
            'block_migrate_cinder_iscsi': 'false',
            'can_migrate_between_any_hosts': 'true',
            'cold_migration': 'true',
            'resize': 'true',
            'pause': 'true',
            'suspend': 'true',
            'shelve': 'true',
            'shelve_migrate': 'true',
            'rescue': 'true',
            'stable_rescue': 'false',
            'snapshot': 'true',
            'console_output': 'true',
            'vnc_console': 'true',
            'spice_console': 'false',
            'serial_console': 'false',
            'interface_attach': 'true',
            'metadata_service': 'true',
            'config_drive': 'true',
            'personality': 'false',
            'change_password': 'false',
            'swap_volume': 'false',
            'volume_multiattach': 'false',
            'attach_encrypted_volume': 'false',
            'scheduler_enabled_filters': ','.join(
                nova.DEFAULT_FILTERS + nova.FILTERS),
        },
        'image': {
            'disk_formats': 'qcow2,raw,ami,ari,aki',
            'container_formats': 'bare,ami,ari,aki',
        },
        'image-feature-enabled': {'import_image': 'false'},
        'network': {
            'shared_physical_network': 'true',
            'floating_network_name': '',
            'public_network_id': '',
            'project_network_cidr': layout.PROVIDER_CIDR,
        },
        'network-feature-enabled': {
            'floating_ips': 'false',
            'ipv6': 'false',
            'port_security': 'true',
        },
        'service_available': {
            'nova': 'true', 'neutron': 'true', 'glance': 'true',
            'cinder': 'true', 'swift': 'false', 'horizon': 'false',
        },
        # Cinder with one backend, Ceph's RBD driver (deploy/cloud/cinder.py).
        'volume': {
            'catalog_type': 'block-storage',
            'region': layout.REGION,
            'backend_names': cinder.BACKEND,
            'storage_protocol': 'ceph',
            'vendor_name': 'Open Source',
            'volume_size': '1',
            'build_timeout': '300',
            'max_microversion': 'latest',
        },
        'volume-feature-enabled': {
            'backup': 'false',
            'snapshot': 'true',
            'clone': 'true',
            'manage_volume': 'false',
            'manage_snapshot': 'false',
            # Nova's extend_volume on a running server, from Cinder's
            # external event.
            'extend_attached_volume': 'true',
        },
        'validation': {
            'run_validation': 'true',
            'connect_method': 'fixed',
            'auth_method': 'keypair',
            'ip_version_for_ssh': '4',
            'network_for_ssh': layout.PROVIDER_NET,
            'image_ssh_user': 'root',
            'image_alt_ssh_user': 'root',
            'ssh_timeout': '300',
            'ping_timeout': '120',
            'security_group': 'true',
            'security_group_rules': 'true',
        },
        'scenario': {'dhcp_client': 'udhcpc'},
        'oslo_concurrency': {'lock_path': os.path.join(WORKSPACE, 'lock')},
    }


def write_config():
    cloud = openstack.connect(cloud='kvmx-admin')
    parser = configparser.ConfigParser(interpolation=None)
    for section, options in settings(network_checked(cloud)).items():
        parser[section] = options
    os.makedirs(os.path.dirname(CONF), exist_ok=True)
    with open(CONF, 'w') as f:
        parser.write(f)
    print(CONF)


def network_checked(cloud):
    """The cloud, once its provider network has a subnet with DHCP."""
    net = cloud.network.find_network(layout.PROVIDER_NET,
                                     ignore_missing=False)
    if not any(s.is_dhcp_enabled for s in cloud.network.subnets(
            network_id=net.id)):
        raise SystemExit('%s has no DHCP subnet: run deploy/up'
                         % layout.PROVIDER_NET)
    return cloud


if __name__ == '__main__':
    if sys.argv[1:] != ['config']:
        raise SystemExit('usage: python -m cloud.tempest config')
    write_config()
