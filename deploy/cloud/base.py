"""The shared services under OpenStack: MariaDB, RabbitMQ, memcached.

Debian's packages, started by hand (no systemd) on the loopback address
with their data under /var/lib/kvmx-cloud.
"""

import json
import os
import secrets
import time

from cloud import layout
from cloud import procs

PACKAGES = (
    # the shared services and Open vSwitch
    'mariadb-server', 'rabbitmq-server', 'memcached', 'openvswitch-switch',
    # Neutron's agents (dhcp_release frees a deleted port's lease at once)
    'haproxy', 'dnsmasq-base', 'dnsmasq-utils', 'iproute2', 'iptables',
    'conntrack',
    # root helpers, consoles, the second host, disk copies, the tests
    'sudo', 'novnc', 'socat', 'openssh-server', 'openssh-client',
    'iputils-ping', 'python3-venv',
    # mkfs.vfat: Nova's libvirt driver formats ephemeral disks vfat
    'dosfstools',
    # libvirt and QEMU, and the test guest (as .ci/setup)
    'libvirt-daemon-system', 'libvirt-clients', 'libvirt-dev', 'pkg-config',
    'qemu-system-x86', 'qemu-utils', 'genisoimage', 'busybox-static',
    'linux-image-amd64', 'dropbear-bin', 'ethtool')


RESERVED_PORTS = '/proc/sys/net/ipv4/ip_local_reserved_ports'


def reserve_ports():
    """Keep the cloud's ports out of the kernel's ephemeral range
    (32768-60999, where they all lie): an outgoing connection made while
    the cloud comes up (pip, apt, a service's client) could otherwise hold
    one and the service meant to listen there fails to bind. Ports the
    host already reserves are kept."""
    with open(RESERVED_PORTS) as f:
        current = f.read().strip()
    reserved = set()
    for part in filter(None, current.split(',')):
        low, _, high = part.partition('-')
        reserved.update(range(int(low), int(high or low) + 1))
    missing = sorted(set(layout.PORTS.values()) - reserved)
    if missing:
        with open(RESERVED_PORTS, 'w') as f:
            f.write(','.join(filter(None, [current] + [
                str(port) for port in missing])))


def install_packages():
    missing = [p for p in PACKAGES if 'ok installed' not in procs.run(
        ['dpkg-query', '-W', '-f=${Status}', p], check=False, quiet=True)]
    if not missing:
        return
    procs.say('installing %s' % ' '.join(missing))
    env = {'DEBIAN_FRONTEND': 'noninteractive'}
    # Another job may hold dpkg's lock for a while.
    for attempt in range(30):
        try:
            procs.run(['apt-get', 'update', '-q'], env=env)
            procs.run(['apt-get', 'install', '-y', '-q',
                       '--no-install-recommends'] + missing, env=env)
            return
        except procs.DeployError as ex:
            if 'lock' not in str(ex) or attempt == 29:
                raise
            time.sleep(10)


def secret(name):
    """A generated password, the same on every run."""
    try:
        with open(layout.SECRETS) as f:
            known = json.load(f)
    except OSError:
        known = {}
    if name not in known:
        known[name] = secrets.token_hex(16)
        os.makedirs(layout.ETC, exist_ok=True)
        fd = os.open(layout.SECRETS, os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                     0o600)
        with os.fdopen(fd, 'w') as f:
            json.dump(known, f, indent=1, sort_keys=True)
    return known[name]


def write(path, text, mode=0o644):
    """Write ``text`` to ``path`` unless it holds it already; whether it
    changed."""
    try:
        with open(path) as f:
            if f.read() == text:
                return False
    except OSError:
        pass
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, 'w') as f:
        f.write(text)
    os.chmod(path, mode)
    return True


# -- MariaDB ------------------------------------------------------------------

MYSQL_CNF = os.path.join(layout.ETC, 'mariadb', 'my.cnf')
MYSQL_SOCKET = os.path.join(layout.RUN, 'mysqld.sock')
MYSQL_DATA = os.path.join(layout.STATE, 'mysql')


def start_mariadb():
    write(MYSQL_CNF, '\n'.join((
        '[client-server]',
        'socket = %s' % MYSQL_SOCKET,
        'port = %d' % layout.PORTS['mariadb'],
        '[mariadbd]',
        'user = root',
        'datadir = %s' % MYSQL_DATA,
        'bind-address = %s' % layout.ADDRESS,
        'pid-file = %s' % os.path.join(layout.RUN, 'mysqld.pid'),
        'log-error = %s' % procs.logfile('mariadb-error'),
        'max_connections = 1000',
        'innodb_buffer_pool_size = 128M',
        'character-set-server = utf8mb4',
        'collation-server = utf8mb4_general_ci', '')))
    if not os.path.isdir(os.path.join(MYSQL_DATA, 'mysql')):
        os.makedirs(MYSQL_DATA, exist_ok=True)
        procs.run(['mariadb-install-db', '--defaults-file=' + MYSQL_CNF,
                   '--auth-root-authentication-method=socket'])
    procs.start('mariadb', ['mariadbd', '--defaults-file=' + MYSQL_CNF],
                ready=procs.port_open(layout.PORTS['mariadb']))


def sql(statement):
    return procs.run(['mariadb', '--defaults-file=' + MYSQL_CNF, '-N', '-e',
                      statement])


def database(name, user):
    """Create database ``name`` with its own user (password ``user``'s
    secret); its SQLAlchemy URL."""
    password = secret('db-' + user)
    sql("CREATE DATABASE IF NOT EXISTS `%s` CHARACTER SET utf8mb4; "
        "CREATE USER IF NOT EXISTS '%s'@'%s' IDENTIFIED BY '%s'; "
        "GRANT ALL PRIVILEGES ON `%s`.* TO '%s'@'%s';" % (
            name, user, layout.ADDRESS, password, name, user,
            layout.ADDRESS))
    return 'mysql+pymysql://%s:%s@%s:%d/%s?charset=utf8' % (
        user, password, layout.ADDRESS, layout.PORTS['mariadb'], name)


# -- RabbitMQ -----------------------------------------------------------------

RABBIT_BASE = os.path.join(layout.STATE, 'rabbitmq')


def rabbit_env():
    return {
        'HOME': RABBIT_BASE,
        'RABBITMQ_MNESIA_BASE': os.path.join(RABBIT_BASE, 'mnesia'),
        'RABBITMQ_LOG_BASE': os.path.join(layout.LOGS, 'rabbitmq'),
        'RABBITMQ_NODENAME': 'kvmx-cloud@localhost',
        'RABBITMQ_NODE_IP_ADDRESS': layout.ADDRESS,
        'RABBITMQ_NODE_PORT': str(layout.PORTS['rabbitmq']),
        'RABBITMQ_DIST_PORT': str(layout.PORTS['rabbitmq-dist']),
        'ERL_EPMD_ADDRESS': layout.ADDRESS,
        'ERL_EPMD_PORT': str(layout.PORTS['epmd']),
        'RABBITMQ_CONFIG_FILE': os.path.join(layout.ETC, 'rabbitmq',
                                             'rabbitmq'),
        'RABBITMQ_ENABLED_PLUGINS_FILE': os.path.join(
            layout.ETC, 'rabbitmq', 'enabled_plugins'),
        # The distribution port listens on the loopback address only.
        'RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS':
            '-kernel inet_dist_use_interface {127,0,0,1}',
        'RABBITMQ_CTL_ERL_ARGS':
            '-kernel inet_dist_use_interface {127,0,0,1}',
    }


def start_rabbitmq():
    os.makedirs(RABBIT_BASE, exist_ok=True)
    write(os.path.join(layout.ETC, 'rabbitmq', 'rabbitmq.conf'),
          'listeners.tcp.1 = %s:%d\nloopback_users = none\n' % (
              layout.ADDRESS, layout.PORTS['rabbitmq']))
    write(os.path.join(layout.ETC, 'rabbitmq', 'enabled_plugins'), '[].\n')
    procs.start('rabbitmq', ['/usr/lib/rabbitmq/bin/rabbitmq-server'],
                env=rabbit_env(),
                ready=procs.port_open(layout.PORTS['rabbitmq']), timeout=180)
    rabbitmqctl('await_startup', '--timeout', '120')
    users = rabbitmqctl('list_users', '--quiet')
    if 'openstack' not in users.split():
        rabbitmqctl('add_user', 'openstack', secret('rabbitmq'))
    rabbitmqctl('set_permissions', 'openstack', '.*', '.*', '.*')


def rabbitmqctl(*args):
    return procs.run(['/usr/lib/rabbitmq/bin/rabbitmqctl'] + list(args),
                     env=rabbit_env())


def messaging():
    """oslo.messaging's options of every service: quorum queues, which
    RabbitMQ keeps on disk, so that a message sent just before a broker
    restart (a boot in flight) is delivered after it, not lost."""
    return {'rabbit_quorum_queue': 'true'}


def transport_url():
    return 'rabbit://openstack:%s@%s:%d/' % (
        secret('rabbitmq'), layout.ADDRESS, layout.PORTS['rabbitmq'])


# -- memcached ----------------------------------------------------------------

def start_memcached():
    procs.start('memcached', [
        'memcached', '-u', 'root', '-l', layout.ADDRESS,
        '-p', str(layout.PORTS['memcached']), '-U', '0', '-m', '64'],
        ready=procs.port_open(layout.PORTS['memcached']))


def memcache_servers():
    return '%s:%d' % (layout.ADDRESS, layout.PORTS['memcached'])
