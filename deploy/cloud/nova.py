"""Nova: the API and metadata API under uWSGI, conductor, scheduler and
noVNC proxy here, and one nova-compute per host on the chosen driver.

nova-compute gets a configuration file of its own without database
sections (Nova refuses database access there) whose privsep helpers start
through Nova's root helper, as a deployment runs them; it runs as the
unprivileged nova user (see privileges).
"""

import os

from cloud import base
from cloud import configs
from cloud import hosts
from cloud import layout
from cloud import privileges
from cloud import procs
from cloud import storage

NOVA_CONF = configs.etc('nova', 'nova.conf')
DRIVERS = {'kvmx': 'kvmx.KVMXDriver', 'libvirt': 'libvirt.LibvirtDriver'}
# The privsep contexts nova-compute starts: Nova's own, os-brick's and
# os-vif's (config section, context).
CONTEXTS = (('nova_sys_admin', 'nova.privsep.sys_admin_pctxt'),
            ('privsep_osbrick', 'os_brick.privileged.default'),
            ('vif_plug_ovs_privileged', 'vif_plug_ovs.privsep.vif_plug'),
            ('vif_plug_linux_bridge_privileged',
             'vif_plug_linux_bridge.privsep.vif_plug'))
FILTERS = ('NUMATopologyFilter', 'PciPassthroughFilter')
DEFAULT_FILTERS = ('ComputeFilter', 'ComputeCapabilitiesFilter',
                   'ImagePropertiesFilter', 'ServerGroupAntiAffinityFilter',
                   'ServerGroupAffinityFilter', 'SameHostFilter',
                   'DifferentHostFilter')


def compute_conf(host):
    return configs.etc('nova', 'nova-%s.conf' % host.name)


def common():
    """What every Nova service of the cloud shares."""
    return {
        'DEFAULT': {
            'use_stderr': 'true',
            'transport_url': base.transport_url(),
            'instance_name_template': layout.INSTANCE_NAME_TEMPLATE,
            'rootwrap_config': configs.etc('nova', 'rootwrap.conf'),
        },
        'oslo_messaging_rabbit': base.messaging(),
        'keystone_authtoken': configs.authtoken('nova'),
        'service_user': configs.auth(
            'nova', send_service_user_token='true'),
        'placement': configs.auth('placement'),
        'neutron': configs.auth(
            'neutron', service_metadata_proxy='true',
            metadata_proxy_shared_secret=base.secret('metadata')),
        'glance': {'region_name': layout.REGION},
        # Cinder's API (block-storage v3) from the catalog; Nova's own
        # credentials for the calls it makes without a user's token.
        'cinder': configs.auth('nova', os_region_name=layout.REGION),
        'vnc': {'enabled': 'true',
                'novncproxy_host': layout.ADDRESS,
                'novncproxy_port': layout.PORTS['novncproxy'],
                'novncproxy_base_url': layout.url('novncproxy',
                                                  '/vnc_auto.html')},
    }


def write_configs(api_db_url, cell0_url, cell1_url, driver):
    conf = common()
    conf['DEFAULT'].update({
        'my_ip': layout.ADDRESS,
        'state_path': os.path.join(layout.STATE, 'nova'),
    })
    conf.update({
        'api': {'auth_strategy': 'keystone'},
        'api_database': {'connection': api_db_url},
        'database': {'connection': cell1_url},
        'scheduler': {'workers': '1'},
        'conductor': {'workers': '1'},
        'filter_scheduler': {
            'enabled_filters': ','.join(DEFAULT_FILTERS + FILTERS)},
        'oslo_concurrency': configs.lock_path('nova'),
    })
    configs.ini(NOVA_CONF, conf)
    configs.copy_from_venv('nova', 'api-paste.ini')
    filters = ''
    for host in layout.HOSTS:
        configs.ini(compute_conf(host), _compute_sections(host, driver))
        filters += configs.privsep_filters(
            [context for _, context in CONTEXTS], [compute_conf(host)])
    configs.rootwrap('nova', filters)
    env = {'OS_NOVA_CONFIG_DIR': configs.etc('nova'),
           'OS_NOVA_CONFIG_FILES': 'api-paste.ini;nova.conf'}
    return (configs.uwsgi('nova', 'nova.wsgi.osapi_compute:application', env,
                          processes=2),
            configs.uwsgi('nova-metadata', 'nova.wsgi.metadata:application',
                          env))


def _compute_sections(host, driver):
    conf = common()
    helper = '%s privsep-helper --config-file %s' % (
        configs.root_helper('nova'), compute_conf(host))
    conf['DEFAULT'].update({
        'compute_driver': DRIVERS[driver],
        # Ports are wired within seconds here: a build whose port never is
        # fails after a minute rather than Nova's five.
        'vif_plugging_timeout': '60',
        # One shared CPU per host: Nova's initial ratio (4) would hold four
        # unpinned guests per host, fewer than Tempest's classes keep.
        'cpu_allocation_ratio': '16.0',
        'my_ip': host.mgmt_ip,
        'state_path': os.path.join(host.state, 'nova'),
        'instances_path': layout.INSTANCES,
    })
    conf.update({
        # One CPU for pinned guests, one shared: a pinned flavor, a
        # hugepage flavor and unpinned guests all fit on each host.
        # Neutron's OVS agent wires a port on the userspace datapath only
        # once its tap exists, which for a live migration's destination is
        # when the migration has started: no event can come before it
        # (Neutron creates the tap early, ovs_create_tap, only on the
        # kernel datapath).
        'compute': {'cpu_shared_set': '0', 'cpu_dedicated_set': '1',
                    'live_migration_wait_for_vif_plug': 'false'},
        'libvirt': {'virt_type': 'qemu',
                    'connection_uri': 'qemu:///system',
                    'live_migration_scheme': 'ssh',
                    'live_migration_inbound_addr': host.mgmt_ip,
                    # Hotplug slots for Tempest's attach tests on q35
                    # guests, as Nova's own q35 CI job sets them.
                    'num_pcie_ports': '16',
                    # Cinder's connection info names its cephx user and
                    # secret; these are Nova's own, the same ones here.
                    'rbd_user': layout.CEPH_USER,
                    'rbd_secret_uuid': storage.secret_uuid()},
        # nova-compute runs as nova: the database's loopback TCP port,
        # not its UNIX socket (root's), as DevStack and Kolla configure it.
        'os_vif_ovs': {'ovsdb_connection': 'tcp:%s:%d' % (
            layout.ADDRESS, layout.OVSDB_PORT)},
        'oslo_concurrency': configs.lock_path(host.name, 'nova'),
    })
    conf['vnc'].update({'server_listen': host.mgmt_ip,
                        'server_proxyclient_address': host.mgmt_ip})
    for section, _ in CONTEXTS:
        conf[section] = {'helper_command': helper}
    return conf


def manage(*args):
    return procs.run(['nova-manage', '--config-file', NOVA_CONF] + list(args))


def databases_up(cell0_url, cell1_url):
    if procs.read_pid('nova-conductor'):
        return
    manage('api_db', 'sync')
    cells = manage('cell_v2', 'list_cells', '--verbose')
    if ' cell0 ' not in cells:
        manage('cell_v2', 'map_cell0', '--database_connection', cell0_url)
    if ' cell1 ' not in cells:
        manage('cell_v2', 'create_cell', '--name', 'cell1', '--verbose')
    manage('db', 'sync')


def control_plane_up(api_ini, metadata_ini):
    procs.start('nova-api', ['uwsgi', '--ini', api_ini],
                ready=procs.port_open(layout.PORTS['nova']), timeout=180)
    procs.start('nova-metadata', ['uwsgi', '--ini', metadata_ini],
                ready=procs.port_open(layout.PORTS['nova-metadata']),
                timeout=180)
    for service in ('conductor', 'scheduler'):
        procs.start('nova-' + service, ['nova-' + service, '--config-file',
                                        NOVA_CONF])
    procs.start('nova-novncproxy', [
        'nova-novncproxy', '--config-file', NOVA_CONF, '--web',
        '/usr/share/novnc'], ready=procs.port_open(layout.PORTS['novncproxy']))


def computes_up(driver):
    """Both nova-compute services, as the nova user (see privileges)."""
    if driver == 'libvirt':
        _check_no_foreign_domains()
    user = privileges.nova_user_up()
    privileges.sudoers_up()
    for host in layout.HOSTS:
        # Its state_path (lock_path within), its instances directory
        # (QEMU's user passes through it) and its configuration file.
        privileges.own(os.path.join(host.state, 'nova'), user, 0o750)
        privileges.own(instances_dir(host), user, 0o711)
        privileges.readable_by_nova(compute_conf(host), user)
        hosts.start(host, 'nova-compute', hosts.as_nova([
            os.path.join(layout.BIN, 'nova-compute'),
            '--config-file', compute_conf(host)]), env=hosts.as_nova_env())


def instances_dir(host):
    """``host``'s instances directory, seen from this host (compute2's is
    mounted at layout.INSTANCES in its own mount namespace)."""
    return layout.INSTANCES if host.is_local else os.path.join(
        host.state, 'instances')


def _check_no_foreign_domains():
    """Nova's libvirt driver takes every domain of its libvirtd for an
    instance of its own, and a new nova-compute refuses to start on a host
    with instances ("My hypervisor has existing instances"): say so before
    starting it, naming the domains."""
    if procs.read_pid('compute1-nova-compute'):
        return
    prefix = layout.INSTANCE_NAME_TEMPLATE.split('%')[0]
    others = [name for name in procs.run(
        ['virsh', '-c', 'qemu:///system', 'list', '--all', '--name']).split()
        if not name.startswith(prefix)]
    if others:
        raise procs.DeployError(
            'compute1-nova-compute', "Nova's libvirt driver would take this "
            "machine's other domains for its instances and refuse to start: "
            + ', '.join(others))
