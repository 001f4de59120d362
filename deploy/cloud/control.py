"""Keystone, Placement and Glance: databases, bootstrap, start."""

import os

from cloud import base
from cloud import configs
from cloud import layout
from cloud import procs

ADMIN_USER = 'admin'


def keystone_up():
    """Keystone; its database is synchronised and bootstrapped (admin
    user, identity endpoints) before it first starts."""
    uwsgi_ini = configs.keystone(base.database('keystone', 'keystone'))
    conf = configs.etc('keystone', 'keystone.conf')

    def manage(*args):
        procs.run(['keystone-manage', '--config-file', conf] + list(args))

    write_clouds_yaml()
    first = procs.read_pid('keystone') is None
    if first:
        manage('db_sync')
    for repo in ('fernet', 'credential'):
        if not os.path.isdir(configs.etc('keystone', repo + '-keys')):
            manage('%s_setup' % repo, '--keystone-user', 'root',
                   '--keystone-group', 'root')
    procs.start('keystone', ['uwsgi', '--ini', uwsgi_ini],
                ready=procs.port_open(layout.PORTS['keystone']))
    if not first:
        return
    manage('bootstrap', '--bootstrap-password', base.secret('keystone-admin'),
           '--bootstrap-admin-url', layout.url('keystone', '/v3'),
           '--bootstrap-internal-url', layout.url('keystone', '/v3'),
           '--bootstrap-public-url', layout.url('keystone', '/v3'),
           '--bootstrap-region-id', layout.REGION)


def write_clouds_yaml():
    """clouds.yaml for the openstack client: ``kvmx-admin`` (admin of the
    admin project) and ``kvmx-demo`` (a member of the demo project)."""
    entries = []
    for name, user, project in (('kvmx-admin', ADMIN_USER, 'admin'),
                                ('kvmx-demo', 'demo', 'demo')):
        entries.append('\n'.join((
            '  %s:' % name,
            '    region_name: %s' % layout.REGION,
            '    identity_api_version: 3',
            '    auth:',
            '      auth_url: %s/v3' % layout.url('keystone'),
            '      username: %s' % user,
            '      password: %s' % base.secret('keystone-' + user),
            '      project_name: %s' % project,
            '      user_domain_name: Default',
            '      project_domain_name: Default')))
    base.write(layout.CLOUDS_YAML, 'clouds:\n' + '\n'.join(entries) + '\n',
               mode=0o600)


def placement_up():
    uwsgi_ini = configs.placement(base.database('placement', 'placement'))
    if procs.read_pid('placement') is None:
        procs.run(['placement-manage', '--config-file',
                   configs.etc('placement', 'placement.conf'), 'db', 'sync'])
    procs.start('placement', ['uwsgi', '--ini', uwsgi_ini],
                ready=procs.port_open(layout.PORTS['placement']))


def glance_up():
    uwsgi_ini = configs.glance(base.database('glance', 'glance'))
    if procs.read_pid('glance') is None:
        procs.run(['glance-manage', '--config-dir', configs.etc('glance'),
                   'db_sync'])
    procs.start('glance', ['uwsgi', '--ini', uwsgi_ini],
                ready=procs.port_open(layout.PORTS['glance']))
