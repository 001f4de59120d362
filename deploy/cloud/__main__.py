"""deploy/up, deploy/down and deploy/status: the all-in-one cloud.

``python3 -m cloud up [--driver kvmx|libvirt]`` brings everything up,
starting only what does not run yet; ``down [--purge]`` stops every
process it started, by PID, and removes what it made; ``status`` lists the
daemons.
"""

import argparse
import os
import subprocess
import sys
import time

from cloud import base
from cloud import cinder
from cloud import control
from cloud import hosts
from cloud import install
from cloud import layout
from cloud import neutron
from cloud import nova
from cloud import privileges
from cloud import procs
from cloud import storage
from cloud import teardown

DRIVER_FILE = os.path.join(layout.STATE, 'compute-driver')
GUEST_DIR = os.path.join(layout.STATE, 'guest-image')


def up(driver):
    started = time.monotonic()
    _check_driver(driver)
    base.reserve_ports()
    base.install_packages()
    ceph_up = storage.start_ceph()
    if install.venv_up():
        # New code: the services running the old one start again below.
        procs.stop_all(procs.running_services())
    for path in (layout.ETC, layout.STATE, layout.LOGS, layout.RUN):
        os.makedirs(path, mode=0o755, exist_ok=True)
    # nova-compute's user, which libvirtd and sshd admit.
    privileges.nova_user_up()
    hosts.local_libvirt_up()
    hosts.start_host2_namespaces()
    hosts.links_up()
    base.start_mariadb()
    base.start_rabbitmq()
    base.start_memcached()
    hosts.ssh_keys()
    for host in layout.HOSTS:
        if hosts.ovs_up(host) and host.is_local:
            # The userspace datapath's internal ports are taps of
            # ovs-vswitchd: those the DHCP agent moved into its namespaces
            # died with the old one. The agent makes its namespaces and
            # ports again when it starts.
            procs.stop('neutron-dhcp-agent')
            teardown.remove_namespaces(
                lambda netns: netns.startswith('qdhcp-'))
        hosts.sshd_up(host)
    hosts.host2_libvirt_up()
    hosts.forwarders_up()
    ceph = ceph_up()
    install.link_system_modules()
    storage.forwarders_up()
    storage.libvirt_secrets_up(ceph['CEPH_CINDER_KEY'])

    control.keystone_up()
    bootstrap('identity')
    control.placement_up()
    control.glance_up()
    neutron.server_up(neutron.write_configs(
        base.database('neutron', 'neutron')))
    cinder.up(cinder.write_configs(base.database('cinder', 'cinder')))
    cell0 = base.database('nova_cell0', 'nova')
    cell1 = base.database('nova', 'nova')
    api_ini, metadata_ini = nova.write_configs(
        base.database('nova_api', 'nova'), cell0, cell1, driver)
    nova.databases_up(cell0, cell1)
    nova.control_plane_up(api_ini, metadata_ini)
    neutron.agents_up()
    nova.computes_up(driver)
    wait_for_computes()
    bootstrap('network')
    bootstrap('flavors')
    build_guest_image()
    bootstrap('images', GUEST_DIR)
    verify()
    procs.say('cloud up in %.0f s: nova-compute on %s with compute_driver=%s;'
              ' try: OS_CLOUD=kvmx-demo OS_CLIENT_CONFIG_FILE=%s openstack '
              'server list' % (time.monotonic() - started,
                               ', '.join(h.name for h in layout.HOSTS),
                               nova.DRIVERS[driver], layout.CLOUDS_YAML))


def _check_driver(driver):
    try:
        with open(DRIVER_FILE) as f:
            current = f.read().strip()
    except OSError:
        current = None
    if current and current != driver:
        raise procs.DeployError(
            'nova-compute', 'the cloud runs compute_driver %s; run '
            'deploy/down before deploying it with %s' % (current, driver))
    os.makedirs(layout.STATE, exist_ok=True)
    with open(DRIVER_FILE, 'w') as f:
        f.write(driver + '\n')


def client_env(cloud='kvmx-admin'):
    return {'OS_CLIENT_CONFIG_FILE': layout.CLOUDS_YAML, 'OS_CLOUD': cloud,
            'PYTHONPATH': os.path.join(layout.REPO, 'deploy')}


def bootstrap(*args):
    procs.run([os.path.join(layout.BIN, 'python'), '-m', 'cloud.bootstrap']
              + list(args), env=client_env())


def openstack(*args):
    return procs.run(['openstack'] + list(args), env=client_env())


def wait_for_computes():
    """Both nova-compute services up and their nodes mapped to cell1."""
    names = {os.uname().nodename, layout.HOSTNAME2}

    def registered():
        out = openstack('compute', 'service', 'list', '--service',
                        'nova-compute', '-f', 'value', '-c', 'Host',
                        '-c', 'State')
        return {line.split()[0] for line in out.splitlines()
                if line.endswith(' up')} >= names
    procs.wait_for('both nova-compute services up', registered, timeout=300,
                   interval=3, service='nova-compute',
                   log=procs.logfile('compute2-nova-compute'))
    nova.manage('cell_v2', 'discover_hosts', '--verbose')


def verify():
    """Every daemon still runs; Nova's and Cinder's services are up and
    Neutron's agents alive, as the APIs report them."""
    for name in procs.running():
        if procs.read_pid(name) is None:
            raise procs.DeployError(name, 'is not running',
                                    procs.logfile(name))

    def all_up(*argv):
        states = openstack(*argv).split()
        return states and all(state in ('up', 'True') for state in states)
    procs.wait_for('Nova services up', lambda: all_up(
        'compute', 'service', 'list', '-f', 'value', '-c', 'State'),
        timeout=120, interval=3)
    procs.wait_for('Neutron agents alive', lambda: all_up(
        'network', 'agent', 'list', '-f', 'value', '-c', 'Alive'),
        timeout=120, interval=3)
    procs.wait_for('Cinder services up', lambda: all_up(
        'volume', 'service', 'list', '-f', 'value', '-c', 'State'),
        timeout=120, interval=3, service='cinder-volume',
        log=procs.logfile('cinder-volume'))


def build_guest_image():
    if os.path.exists(os.path.join(GUEST_DIR, 'cmdline')):
        return
    procs.run([os.path.join(layout.BIN, 'python'), '-m',
               'tests.functional.net_image', GUEST_DIR],
              env={'PYTHONPATH': layout.REPO})


def run_tempest(args):
    """Tempest's curated list (or ``--regex``) against the cloud; the
    results kept per driver for benchmarks/tempest_compare.py."""
    from cloud import tempest_run
    return tempest_run.run(_current_driver(), args.regex, args.concurrency)


def _current_driver():
    try:
        with open(DRIVER_FILE) as f:
            return f.read().strip()
    except OSError:
        raise procs.DeployError('tempest', 'the cloud is not up: run '
                                'deploy/up first')


def status():
    """Each daemon, its PID and the user it runs as."""
    for name in procs.running():
        pid = procs.read_pid(name)
        print('%-36s %-8s %s' % (name, pid or 'not running',
                                 procs.user_of(pid) if pid else ''))
    # deploy/ceph's daemons keep their PID files in its state directory.
    for name, pid in storage.running_daemons().items():
        print('%-36s %-8s %s' % (name, pid, procs.user_of(pid)))


def main(argv=None):
    parser = argparse.ArgumentParser(prog='deploy')
    sub = parser.add_subparsers(dest='command', required=True)
    up_parser = sub.add_parser('up', help='bring the cloud up')
    up_parser.add_argument('--driver', choices=sorted(nova.DRIVERS),
                           default='kvmx',
                           help='compute_driver of both nova-compute '
                           'services (default: kvmx)')
    down_parser = sub.add_parser('down', help='stop and remove the cloud')
    down_parser.add_argument('--purge', action='store_true',
                             help='also remove the virtualenvs in %s'
                             % layout.OPT)
    sub.add_parser('status', help='list the daemons')
    tempest_parser = sub.add_parser(
        'tempest', help="run Tempest's curated list against the cloud")
    tempest_parser.add_argument('--regex', help='run the tests matching '
                                'this instead of the curated list')
    tempest_parser.add_argument('--concurrency', type=int, default=2)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error('run as root')
    try:
        if args.command == 'up':
            up(args.driver)
        elif args.command == 'down':
            teardown.down(purge=args.purge)
        elif args.command == 'tempest':
            return run_tempest(args)
        else:
            status()
    except (procs.DeployError, subprocess.TimeoutExpired) as ex:
        print('deploy %s failed: %s' % (args.command, ex), file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
