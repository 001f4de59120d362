"""The OpenStack services' configuration files, as a deployment writes them.

Everything is generated here from the layout and the secrets, as plain
INI files under /etc/kvmx-cloud/<service>/; writing the same content again
leaves a file untouched, so a second ``up`` changes nothing.
"""

import configparser
import io
import os
import shutil

from cloud import base
from cloud import layout

SERVICES = ('keystone', 'placement', 'glance', 'neutron', 'nova', 'cinder')


def etc(*parts):
    return os.path.join(layout.ETC, *parts)


def ini(path, sections, mode=0o640):
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    for section, options in sections.items():
        parser[section] = {k: str(v) for k, v in options.items()
                           if v is not None}
    out = io.StringIO()
    out.write('# Written by nova-kvmx deploy/up; changes are overwritten.\n')
    parser.write(out)
    return base.write(path, out.getvalue(), mode)


def auth(user, **extra):
    """The password credentials of service user ``user``."""
    return dict({
        'auth_url': layout.url('keystone'),
        'auth_type': 'password',
        'project_domain_name': 'Default',
        'user_domain_name': 'Default',
        'project_name': 'service',
        'username': user,
        'password': base.secret('keystone-' + user),
        'region_name': layout.REGION,
    }, **extra)


def authtoken(user):
    return auth(user, www_authenticate_uri=layout.url('keystone'),
                memcached_servers=base.memcache_servers(),
                service_token_roles_required='true')


def uwsgi(service, module, config_env, processes=1, argv=()):
    """A uWSGI configuration serving ``module`` over HTTP on the service's
    loopback port; ``argv``: the application's command line arguments, for
    one that reads its configuration files from them."""
    lines = [
        '[uwsgi]',
        'http-socket = %s:%d' % (layout.ADDRESS, layout.PORTS[service]),
        'module = %s' % module,
        'virtualenv = %s' % layout.VENV,
        'master = true',
        # An application that does not load stops uWSGI, not every request.
        'need-app = true',
        'processes = %d' % processes,
        'threads = 2',
        'enable-threads = true',
        'lazy-apps = true',
        'die-on-term = true',
        'buffer-size = 65535',
        'thunder-lock = true',
        'hook-master-start = unix_signal:15 gracefully_kill_them_all',
        # Clients that keep connections alive otherwise see "connection
        # reset by peer".
        'add-header = Connection: close',
    ] + ['env = %s=%s' % item for item in sorted(config_env.items())]
    if argv:
        lines.append('pyargv = %s' % ' '.join(argv))
    path = etc(service, '%s-uwsgi.ini' % service)
    base.write(path, '\n'.join(lines) + '\n')
    return path


def lock_path(*parts):
    return {'lock_path': os.path.join(layout.STATE, *(parts + ('lock',)))}


# -- Keystone, Placement, Glance --------------------------------------------

def keystone(db_url):
    ini(etc('keystone', 'keystone.conf'), {
        'DEFAULT': {'use_stderr': 'true'},
        'database': {'connection': db_url},
        'token': {'provider': 'fernet'},
        'fernet_tokens': {'key_repository': etc('keystone', 'fernet-keys')},
        'credential': {'key_repository': etc('keystone', 'credential-keys')},
        # A retrying client: memcached restarted under Keystone is a
        # reconnection, not a failed request.
        'cache': {'enabled': 'true', 'backend': 'dogpile.cache.pymemcache',
                  'memcache_servers': base.memcache_servers(),
                  'enable_retry_client': 'true'},
    })
    return uwsgi('keystone', 'keystone.wsgi.api:application',
                 {'OS_KEYSTONE_CONFIG_DIR': etc('keystone')})


def placement(db_url):
    ini(etc('placement', 'placement.conf'), {
        'DEFAULT': {'use_stderr': 'true'},
        'placement_database': {'connection': db_url},
        'api': {'auth_strategy': 'keystone'},
        'keystone_authtoken': authtoken('placement'),
    })
    return uwsgi('placement', 'placement.wsgi.api:application',
                 {'OS_PLACEMENT_CONFIG_DIR': etc('placement')})


def glance(db_url):
    images = os.path.join(layout.STATE, 'glance')
    ini(etc('glance', 'glance-api.conf'), {
        'DEFAULT': {'use_stderr': 'true', 'enabled_backends': 'file:file',
                    'show_image_direct_url': 'false'},
        'database': {'connection': db_url},
        'glance_store': {'default_backend': 'file'},
        'file': {'filesystem_store_datadir': os.path.join(images, 'images')},
        'os_glance_staging_store': {
            'filesystem_store_datadir': os.path.join(images, 'staging')},
        'os_glance_tasks_store': {
            'filesystem_store_datadir': os.path.join(images, 'tasks')},
        'keystone_authtoken': authtoken('glance'),
        'paste_deploy': {'flavor': 'keystone'},
        'oslo_concurrency': lock_path('glance'),
    })
    copy_from_venv('glance', 'glance-api-paste.ini')
    return uwsgi('glance', 'glance.wsgi.api:application',
                 {'OS_GLANCE_CONFIG_DIR': etc('glance')}, processes=2)


def copy_from_venv(service, name, dest=None):
    """A file the service's package ships (api-paste.ini, rootwrap)."""
    src = os.path.join(layout.VENV, 'etc', service, name)
    dest = dest or etc(service, name)
    with open(src) as f:
        base.write(dest, f.read())
    return dest


# -- root helpers and privsep -------------------------------------------------

def rootwrap(service, extra_filters=''):
    """``service``'s rootwrap configuration: its own filters, plus
    ``extra_filters``, the commands found in the venv too."""
    filters = etc(service, 'rootwrap.d')
    os.makedirs(filters, exist_ok=True)
    src = os.path.join(layout.VENV, 'etc', service, 'rootwrap.d')
    for name in os.listdir(src):
        shutil.copyfile(os.path.join(src, name), os.path.join(filters, name))
    if extra_filters:
        base.write(os.path.join(filters, 'kvmx-cloud.filters'),
                   '[Filters]\n' + extra_filters)
    conf = etc(service, 'rootwrap.conf')
    ini(conf, {'DEFAULT': {
        'filters_path': filters,
        'exec_dirs': ','.join((layout.BIN, '/sbin', '/usr/sbin', '/bin',
                               '/usr/bin', '/usr/local/sbin',
                               '/usr/local/bin')),
        'use_syslog': 'False',
        'daemon_timeout': '600',
        'rlimit_nofile': '1024',
    }}, mode=0o644)
    return conf


def root_helper(service):
    return 'sudo %s/%s-rootwrap %s' % (layout.BIN, service,
                                       etc(service, 'rootwrap.conf'))


def privsep_filters(contexts, config_files):
    """rootwrap filters letting the privsep helper start exactly these
    contexts with exactly these configuration files."""
    lines = []
    for context in contexts:
        args = []
        for path in config_files:
            args += ['--config-file', path]
        lines.append('privsep-%s: RegExpFilter, privsep-helper, root, '
                     'privsep-helper, %s, --privsep_context, %s, '
                     '--privsep_sock_path, /tmp/.*\n' % (
                         context.replace('.', '-'),
                         ', '.join(a.replace('.', r'\.') for a in args),
                         context.replace('.', r'\.')))
    return ''.join(lines)
