"""Neutron: ML2/OVS on Open vSwitch's userspace datapath.

The API (uWSGI), the RPC server and the periodic workers run here with the
DHCP and metadata agents; each compute host runs its own Open vSwitch
agent against its own Open vSwitch, under the host name its nova-compute
has (Neutron binds a port to the agent of the port's host).
"""

import os

from cloud import base
from cloud import configs
from cloud import hosts
from cloud import layout
from cloud import procs

CONTEXTS = ('neutron.privileged.default',
            'neutron.privileged.dhcp_release_cmd',
            'neutron.privileged.ovs_vsctl_cmd',
            'neutron.privileged.namespace_cmd',
            'neutron.privileged.conntrack_cmd',
            'neutron.privileged.link_cmd')
NEUTRON_CONF = configs.etc('neutron', 'neutron.conf')
ML2_CONF = configs.etc('neutron', 'ml2_conf.ini')
OVSDB = 'unix:/run/openvswitch/db.sock'


def agent_conf(name, host=None):
    return configs.etc('neutron', '%s%s.ini' % (
        name, '-' + host.name if host else ''))


def write_configs(db_url):
    state = os.path.join(layout.STATE, 'neutron')
    configs.ini(NEUTRON_CONF, {
        'DEFAULT': {
            'use_stderr': 'true',
            'core_plugin': 'ml2',
            'service_plugins': '',
            'auth_strategy': 'keystone',
            'transport_url': base.transport_url(),
            'state_path': state,
            'allow_overlapping_ips': 'true',
            'notify_nova_on_port_status_changes': 'true',
            'notify_nova_on_port_data_changes': 'true',
            'rpc_workers': '1',
            'rpc_state_report_workers': '1',
            'api_workers': '1',
            'api_paste_config': configs.etc('neutron', 'api-paste.ini'),
        },
        'database': {'connection': db_url},
        'oslo_messaging_rabbit': base.messaging(),
        'keystone_authtoken': configs.authtoken('neutron'),
        'nova': configs.auth('nova'),
        'oslo_concurrency': configs.lock_path('neutron'),
        'agent': {
            'root_helper': configs.root_helper('neutron'),
            'root_helper_daemon': 'sudo %s/neutron-rootwrap-daemon %s' % (
                layout.BIN, configs.etc('neutron', 'rootwrap.conf')),
        },
    })
    configs.ini(ML2_CONF, {
        'ml2': {'type_drivers': 'flat,vlan',
                'tenant_network_types': 'vlan',
                'mechanism_drivers': 'openvswitch',
                'extension_drivers': 'port_security'},
        'ml2_type_flat': {'flat_networks': layout.PHYSNET},
        'ml2_type_vlan': {'network_vlan_ranges': '%s:%s' % (
            layout.PHYSNET, layout.VLAN_RANGE)},
    })
    configs.copy_from_venv('neutron', 'api-paste.ini')
    filters = ''
    for host in layout.HOSTS:
        files = [NEUTRON_CONF, agent_conf('openvswitch_agent', host)]
        configs.ini(files[1], {
            'DEFAULT': {'state_path': os.path.join(host.state, 'neutron')},
            'oslo_concurrency': configs.lock_path(host.name, 'neutron'),
            'ovs': {'bridge_mappings': '%s:br-phys' % layout.PHYSNET,
                    'datapath_type': 'netdev',
                    'ovsdb_connection': OVSDB},
            'agent': {'tunnel_types': ''},
            'securitygroup': {'firewall_driver': 'openvswitch',
                              'enable_security_group': 'true'},
        })
        filters += configs.privsep_filters(CONTEXTS, files)
    configs.ini(agent_conf('dhcp_agent'), {
        'DEFAULT': {'interface_driver': 'openvswitch',
                    'enable_isolated_metadata': 'true',
                    'force_metadata': 'true'},
        'ovs': {'ovsdb_connection': OVSDB},
    })
    filters += configs.privsep_filters(
        CONTEXTS, [NEUTRON_CONF, agent_conf('dhcp_agent')])
    configs.ini(agent_conf('metadata_agent'), {
        'DEFAULT': {
            'nova_metadata_host': layout.ADDRESS,
            'nova_metadata_port': layout.PORTS['nova-metadata'],
            'metadata_proxy_shared_secret': base.secret('metadata'),
            'metadata_proxy_socket': os.path.join(state, 'metadata_proxy'),
        },
    })
    filters += configs.privsep_filters(
        CONTEXTS, [NEUTRON_CONF, agent_conf('metadata_agent')])
    configs.rootwrap('neutron', filters)
    return configs.uwsgi(
        'neutron', 'neutron.wsgi.api:application',
        {'OS_NEUTRON_CONFIG_DIR': configs.etc('neutron'),
         'OS_NEUTRON_CONFIG_FILES': 'neutron.conf;ml2_conf.ini'},
        processes=2)


def server_up(uwsgi_ini):
    if procs.read_pid('neutron-api') is None:
        procs.run(['neutron-db-manage', '--config-file', NEUTRON_CONF,
                   '--config-file', ML2_CONF, 'upgrade', 'head'])
    server_files = ['--config-file', NEUTRON_CONF, '--config-file', ML2_CONF]
    procs.start('neutron-api', ['uwsgi', '--ini', uwsgi_ini],
                ready=procs.port_open(layout.PORTS['neutron']))
    procs.start('neutron-rpc-server', ['neutron-rpc-server'] + server_files)
    procs.start('neutron-periodic-workers',
                ['neutron-periodic-workers'] + server_files)


def agents_up():
    """The DHCP and metadata agents here, an OVS agent per host."""
    for host in layout.HOSTS:
        hosts.start(host, 'neutron-openvswitch-agent', [
            os.path.join(layout.BIN, 'neutron-openvswitch-agent'),
            '--config-file', NEUTRON_CONF,
            '--config-file', agent_conf('openvswitch_agent', host)])
    for agent in ('dhcp_agent', 'metadata_agent'):
        procs.start('neutron-' + agent.replace('_', '-'), [
            'neutron-' + agent.replace('_', '-'),
            '--config-file', NEUTRON_CONF,
            '--config-file', agent_conf(agent)])
