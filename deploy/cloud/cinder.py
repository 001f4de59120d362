"""Cinder: the API under uWSGI, the scheduler and the volume service here,
with one backend, Ceph's RBD driver on the cluster's ``volumes`` pool as
cephx user ``cinder``.

The connection info Cinder gives Nova names that user and the libvirt
secret holding its key (``rbd_secret_uuid``), which both compute hosts'
libvirtd hold (storage.libvirt_secrets_up); QEMU opens the volume itself
through librbd. cinder-volume's privsep helpers start through Cinder's
root helper, as Nova's do.
"""

import os

from cloud import base
from cloud import configs
from cloud import layout
from cloud import procs
from cloud import storage

CINDER_CONF = configs.etc('cinder', 'cinder.conf')
BACKEND = 'ceph'
# The privsep contexts of cinder-volume: Cinder's own and os-brick's
# (config section, context).
CONTEXTS = (('cinder_sys_admin', 'cinder.privsep.sys_admin_pctxt'),
            ('privsep_osbrick', 'os_brick.privileged.default'))


def write_configs(db_url):
    """cinder.conf and the API's uWSGI configuration (returned)."""
    state = os.path.join(layout.STATE, 'cinder')
    helper = '%s privsep-helper --config-file %s' % (
        configs.root_helper('cinder'), CINDER_CONF)
    conf = {
        'DEFAULT': {
            'use_stderr': 'true',
            'transport_url': base.transport_url(),
            'auth_strategy': 'keystone',
            'my_ip': layout.ADDRESS,
            'state_path': state,
            'image_conversion_dir': os.path.join(state, 'conversion'),
            'rootwrap_config': configs.etc('cinder', 'rootwrap.conf'),
            'api_paste_config': configs.etc('cinder', 'api-paste.ini'),
            'resource_query_filters_file': configs.etc(
                'cinder', 'resource_filters.json'),
            'glance_api_servers': layout.url('glance'),
            'enabled_backends': BACKEND,
        },
        'database': {'connection': db_url},
        'oslo_messaging_rabbit': base.messaging(),
        'keystone_authtoken': configs.authtoken('cinder'),
        'service_user': configs.auth('cinder',
                                     send_service_user_token='true'),
        # Nova's external events (a volume extended under a server).
        'nova': configs.auth('cinder', interface='public'),
        'oslo_concurrency': configs.lock_path('cinder'),
        BACKEND: {
            'volume_driver': 'cinder.volume.drivers.rbd.RBDDriver',
            'volume_backend_name': BACKEND,
            'rbd_ceph_conf': layout.CEPH_CONF,
            'rbd_pool': layout.VOLUME_POOL,
            'rbd_user': layout.CEPH_USER,
            'rbd_secret_uuid': storage.secret_uuid(),
            'report_discard_supported': 'true',
        },
    }
    for section, _ in CONTEXTS:
        conf[section] = {'helper_command': helper}
    configs.ini(CINDER_CONF, conf)
    configs.copy_from_venv('cinder', 'api-paste.ini')
    configs.copy_from_venv('cinder', 'resource_filters.json')
    configs.rootwrap('cinder', configs.privsep_filters(
        [context for _, context in CONTEXTS], [CINDER_CONF]))
    # cinder.wsgi.api reads its configuration files from its arguments.
    return configs.uwsgi('cinder', 'cinder.wsgi.api:application', {},
                         argv=('--config-file', CINDER_CONF))


def up(uwsgi_ini):
    if procs.read_pid('cinder-api') is None:
        procs.run(['cinder-manage', '--config-file', CINDER_CONF, 'db',
                   'sync'])
    procs.start('cinder-api', ['uwsgi', '--ini', uwsgi_ini],
                ready=procs.port_open(layout.PORTS['cinder']), timeout=180)
    for service in ('scheduler', 'volume'):
        procs.start('cinder-' + service, [
            'cinder-' + service, '--config-file', CINDER_CONF])
