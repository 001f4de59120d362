# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.

"""The network test guest (tests/functional/net_image.py) on a real
network of the local libvirtd, without Nova, and on Nova's config drive.

Each NetGuestTest defines a private libvirt network (its own bridge and
dnsmasq, a /24 of 10.0.0.0/8 nothing on the host uses) and boots the guest
on it straight from libvirt. What a cloud relies on is checked from outside, as
Tempest would: the lease, the hostname and key from a config drive or the
metadata service, SSH, interface hot-plug, power-off on the ACPI button.
"""

import http.server
import ipaddress
import json
import os
import random
import re
import shutil
import subprocess
import tempfile
import threading
import time

import fixtures
import libvirt
from lxml import etree
from lxml.builder import E
from oslo_utils import uuidutils
import testtools

from tests.functional import base
from tests.functional import guest_image
from tests.functional import net_image

URI = 'qemu:///system'
BOOT_TIMEOUT = 120
POWEROFF_TIMEOUT = 30
METADATA_IP = '169.254.169.254'
DNSMASQ_NS = 'http://libvirt.org/schemas/network/dnsmasq/1.0'


def run(*args, timeout=30):
    return subprocess.run(args, check=True, capture_output=True, text=True,
                          timeout=timeout).stdout


class PrivateNetwork(fixtures.Fixture):
    """A transient libvirt network with DHCP on a free /24, gone at
    cleanup.

    :param dhcp_options: dnsmasq ``dhcp-option=`` values (libvirt's
        dnsmasq namespace), ``{gateway}`` standing for the network's
        address, e.g. option 121 routes as Neutron's dnsmasq sends them
    """

    def __init__(self, conn, dhcp_options=()):
        super().__init__()
        self.conn = conn
        self.dhcp_options = dhcp_options

    def _setUp(self):
        suffix = uuidutils.generate_uuid()[:8]
        self.name = 'kvmxnet-' + suffix
        self.bridge = 'kvmxnb' + suffix
        for attempt in range(5):
            self.subnet = ipaddress.ip_network('10.%d.%d.0/24' % (
                random.randint(100, 254), random.randint(0, 255)))
            self.gateway = str(self.subnet[1])
            try:
                self.net = self.conn.networkCreateXML(self._xml())
                break
            except libvirt.libvirtError as e:
                # Another interface or route has that subnet: libvirt
                # refuses it ("already in use").
                if attempt == 4 or 'in use' not in str(e):
                    raise
        self.addCleanup(self.net.destroy)

    def _xml(self):
        net = E.network(
            E.name(self.name), E.bridge(name=self.bridge, stp='off'),
            E.ip(E.dhcp(E.range(start=str(self.subnet[100]),
                                end=str(self.subnet[200]))),
                 address=self.gateway, netmask='255.255.255.0'))
        if self.dhcp_options:
            options = etree.SubElement(net, '{%s}options' % DNSMASQ_NS,
                                       nsmap={'dnsmasq': DNSMASQ_NS})
            for value in self.dhcp_options:
                etree.SubElement(options, '{%s}option' % DNSMASQ_NS,
                                 value='dhcp-option=' + value.format(
                                     gateway=self.gateway))
        return etree.tostring(net, encoding='unicode')


class MetadataServer(fixtures.Fixture):
    """The EC2-style metadata service at 169.254.169.254:80 for the guests
    of one network, as Neutron's router does it: the host redirects that
    address and port, for packets coming in from the network's bridge only,
    to a server on the network's own address (nothing is bound to port 80
    of the host, and parallel tests each have theirs). It answers ``paths``
    (``{path: text}``), 404 otherwise, and keeps what is POSTed."""

    def __init__(self, network, paths):
        super().__init__()
        self.network = network
        self.paths = paths
        self.requests = []
        self.posted = []

    def _setUp(self):
        fixture = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                fixture.requests.append(self.path)
                body = fixture.paths.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.end_headers()
                self.wfile.write((body or '').encode())

            def do_POST(self):
                length = int(self.headers.get('Content-Length', 0))
                fixture.posted.append((self.path,
                                       self.rfile.read(length).decode()))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer((self.network.gateway, 0),
                                                 Handler)
        self.addCleanup(server.server_close)
        thread = threading.Thread(target=server.serve_forever,
                                  kwargs={'poll_interval': 0.2})
        thread.start()
        self.addCleanup(thread.join, 10)
        self.addCleanup(server.shutdown)
        rule = ('PREROUTING', '-i', self.network.bridge,
                '-d', METADATA_IP + '/32', '-p', 'tcp', '--dport', '80',
                '-j', 'REDIRECT', '--to-ports', str(server.server_port))
        run('iptables', '-w', '-t', 'nat', '-A', *rule)
        self.addCleanup(run, 'iptables', '-w', '-t', 'nat', '-D', *rule)


class NetGuestTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        try:
            self.conn = libvirt.open(URI)
        except libvirt.libvirtError as e:
            self.fail('libvirtd must be running for the functional tests: '
                      '%s' % e)
        self.addCleanup(self.conn.close)
        # QEMU (another user) reads the files: not under a private TMPDIR.
        self.workdir = tempfile.mkdtemp(
            prefix='kvmx-net-', dir=os.environ.get('KVMX_TEST_DIR',
                                                   '/var/tmp'))
        os.chmod(self.workdir, 0o755)
        self.addCleanup(shutil.rmtree, self.workdir, True)
        self.key = os.path.join(self.workdir, 'id_ed25519')
        run('ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C',
            'kvmx-test', '-f', self.key)
        with open(self.key + '.pub') as f:
            self.public_key = f.read()
        self.console = os.path.join(self.workdir, 'console.log')
        self.name = 'kvmx-net-' + uuidutils.generate_uuid()[:8]

    # -- the guest ----------------------------------------------------------

    def boot(self, network, config_drive=None, extra_nics=(), cmdline=''):
        """Start the guest (a transient domain, q35 under TCG) with a NIC
        on ``network``, then ``extra_nics`` (interface elements)."""
        guest = net_image.get_artifacts()
        files = {}
        for name in ('kernel', 'initramfs'):
            # libvirt relabels what a guest uses: our own copies.
            files[name] = os.path.join(self.workdir, name)
            shutil.copyfile(getattr(guest, name), files[name])
            os.chmod(files[name], 0o644)
        devices = E.devices(
            E.interface(E.source(network=network.name),
                        E.model(type='virtio'), type='network'),
            *extra_nics,
            E.serial(E.source(path=self.console), E.target(port='0'),
                     type='file'))
        if config_drive:
            devices.insert(0, E.disk(
                E.driver(name='qemu', type='raw'),
                E.source(file=config_drive),
                E.target(dev='sdz', bus='sata'), E.readonly(),
                type='file', device='cdrom'))
        xml = E.domain(
            E.name(self.name), E.memory('256', unit='MiB'), E.vcpu('1'),
            E.os(E.type('hvm', arch='x86_64', machine='q35'),
                 E.kernel(files['kernel']), E.initrd(files['initramfs']),
                 E.cmdline(' '.join((guest.cmdline, cmdline)).strip())),
            E.features(E.acpi()), E.on_poweroff('destroy'), devices,
            type='qemu')
        self.started = time.monotonic()
        self.dom = self.conn.createXML(etree.tostring(xml, encoding='unicode'))
        self.addCleanup(self._destroy)

    def _destroy(self):
        # A transient domain is gone once powered off.
        if self.running():
            self.dom.destroy()

    def running(self):
        return self.name in [d.name() for d in self.conn.listAllDomains(
            libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)]

    def wait_for_console(self, pattern, timeout=BOOT_TIMEOUT, count=1):
        """The ``count``th match of regular expression ``pattern`` (a line)
        in the console log, waited for."""
        deadline = time.monotonic() + timeout
        log = ''
        while True:
            if os.path.exists(self.console):
                with open(self.console, errors='replace') as f:
                    log = f.read()
                matches = list(re.finditer(pattern, log, re.M))
                if len(matches) >= count:
                    return matches[count - 1]
            if time.monotonic() > deadline:
                self.fail('%r not on the console %d times after %ds:\n%s'
                          % (pattern, count, timeout, log[-3000:]))
            time.sleep(0.2)

    def lease(self, nic, subnet, count=1):
        """The address ``nic`` leased (the ``count``th time), checked to be
        in ``subnet``."""
        match = self.wait_for_console(r'^%s %s (\S+)$' % (
            net_image.NET_MARKER_PREFIX, nic), count=count)
        address = ipaddress.ip_address(match.group(1))
        self.assertIn(address, subnet)
        return str(address)

    def ssh(self, address, command, timeout=60):
        """Run ``command`` as root in the guest, retried until the SSH
        server lets us in or the deadline passes; its output."""
        deadline = time.monotonic() + timeout
        args = ('ssh', '-F', '/dev/null', '-i', self.key,
                '-o', 'StrictHostKeyChecking=no',
                '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes',
                '-o', 'IdentitiesOnly=yes', '-o', 'ConnectTimeout=10',
                '-o', 'LogLevel=ERROR', 'root@' + address, command)
        while True:
            proc = subprocess.run(args, capture_output=True, text=True,
                                  timeout=timeout)
            # 255: ssh itself failed (connection, authentication).
            if proc.returncode != 255:
                self.assertEqual(0, proc.returncode, proc.stderr)
                return proc.stdout
            if time.monotonic() > deadline:
                self.fail('ssh root@%s failed for %ds: %s'
                          % (address, timeout, proc.stderr))
            time.sleep(1)

    def assert_powers_off(self):
        """The ACPI power button (virsh shutdown) powers the guest off."""
        self.dom.shutdownFlags(libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN)
        deadline = time.monotonic() + POWEROFF_TIMEOUT
        while self.running():
            if time.monotonic() > deadline:
                self.fail('%s still running %ds after the power button'
                          % (self.name, POWEROFF_TIMEOUT))
            time.sleep(0.2)
        self.wait_for_console('^%s ' % guest_image.POWEROFF_MARKER_PREFIX, 1)

    # -- the tests ----------------------------------------------------------

    def config_drive(self, meta_data):
        """An ISO 9660 config drive labelled config-2, as Nova makes it."""
        root = os.path.join(self.workdir, 'config-drive')
        os.makedirs(os.path.join(root, 'openstack', 'latest'))
        with open(os.path.join(root, 'openstack', 'latest',
                               'meta_data.json'), 'w') as f:
            json.dump(meta_data, f)
        iso = os.path.join(self.workdir, 'disk.config')
        run('genisoimage', '-o', iso, '-ldots', '-allow-lowercase',
            '-allow-multidot', '-l', '-quiet', '-J', '-r', '-V', 'config-2',
            root)
        os.chmod(iso, 0o644)
        return iso

    def test_config_drive_dhcp_ssh_hotplug_poweroff(self):
        net = self.useFixture(PrivateNetwork(self.conn))
        iso = self.config_drive({
            'uuid': uuidutils.generate_uuid(), 'name': self.name,
            'hostname': self.name + '.novalocal',
            'public_keys': {'kvmx-test': self.public_key}})
        # A second NIC on a tap that leads nowhere: no DHCP server there.
        self.boot(net, config_drive=iso, cmdline='kvmx.dhcp_wait=6',
                  extra_nics=[E.interface(E.model(type='virtio'),
                                          type='ethernet')])

        self.wait_for_console('^%s config-drive hostname=%s keys=1$' % (
            net_image.META_MARKER_PREFIX, self.name))
        self.wait_for_console('^%s ready$' % net_image.SSH_MARKER_PREFIX)
        booted = self.wait_for_console(
            '^%s ' % guest_image.BOOT_MARKER_PREFIX).string
        # Every module loaded (a failed insmod says so).
        self.assertNotIn('KVMX-GUEST-WARNING', booted)
        address = self.lease('eth0', net.subnet)
        self.wait_for_console('^%s eth1 after 6s$'
                              % net_image.NOLEASE_MARKER_PREFIX)
        self.assertEqual(self.name + '\n', self.ssh(address, 'hostname'))

        # What Tempest's RemoteClient runs, with its prologue.
        out = self.ssh(address, 'set -eu -o pipefail; PATH=$PATH:/sbin; '
                       'grep -c ^processor /proc/cpuinfo; '
                       'grep MemTotal /proc/meminfo; '
                       'lsblk -lb --nodeps; '
                       'dev=$(blkid -L config-2 -o device); '
                       'sudo mount $dev /mnt; '
                       'cat /mnt/openstack/latest/meta_data.json; echo; '
                       'sudo umount /mnt; '
                       'cat /var/run/udhcpc.eth0.pid; '
                       'ping -c1 -w10 %s' % net.gateway)
        lines = out.splitlines()
        self.assertEqual('1', lines[0])
        self.assertTrue(lines[1].startswith('MemTotal:'), lines[1])
        self.assertEqual(['NAME', 'MAJ:MIN', 'RM', 'SIZE', 'RO', 'TYPE',
                          'MOUNTPOINT'], lines[2].split())
        # Only the CD-ROM: this guest has no disk.
        self.assertEqual(['sr0', '11:0', '1'], lines[3].split()[:3])
        self.assertEqual('rom', lines[3][lines[2].index('TYPE'):][:3])
        self.assertEqual(self.name, json.loads(lines[4])['name'])
        self.assertTrue(lines[5].isdigit(), lines[5])
        self.assertIn('1 packets received', out)

        # Interface hot-plug, as Nova's interface attach does it.
        mac = '52:54:00:%02x:%02x:%02x' % tuple(
            random.randint(0, 255) for _ in range(3))
        nic = etree.tostring(E.interface(
            E.source(network=net.name), E.mac(address=mac),
            E.model(type='virtio'), type='network'), encoding='unicode')
        self.dom.attachDeviceFlags(nic, libvirt.VIR_DOMAIN_AFFECT_LIVE)
        second = self.lease('eth2', net.subnet)
        self.assertNotEqual(address, second)
        self.assertEqual(self.name + '\n', self.ssh(second, 'hostname'))
        # Unplugged and plugged again at once: the new eth2 is not the one
        # the guest's DHCP client had, and gets a lease of its own.
        self.dom.detachDeviceFlags(nic, libvirt.VIR_DOMAIN_AFFECT_LIVE)
        deadline = time.monotonic() + BOOT_TIMEOUT
        while mac in self.dom.XMLDesc(0):
            self.assertLess(time.monotonic(), deadline, 'NIC not unplugged')
            time.sleep(0.2)
        self.dom.attachDeviceFlags(nic, libvirt.VIR_DOMAIN_AFFECT_LIVE)
        self.assertEqual(second, self.lease('eth2', net.subnet, count=2))
        self.assertEqual(self.name + '\n', self.ssh(second, 'hostname'))

        self.assert_powers_off()

    def test_metadata_service_on_a_classless_route(self):
        # As Neutron's dnsmasq does for a network without a router:
        # option 121 routes the metadata service to the DHCP server's
        # address; the default route comes with them (RFC 3442: the router
        # option is then ignored).
        net = self.useFixture(PrivateNetwork(self.conn, dhcp_options=[
            '121,%s/32,{gateway},0.0.0.0/0,{gateway}' % METADATA_IP]))
        md = self.useFixture(MetadataServer(net, {
            '/latest/meta-data/local-hostname': self.name + '.novalocal',
            '/latest/meta-data/public-keys/': '0=kvmx-test',
            '/latest/meta-data/public-keys/0/openssh-key': self.public_key,
        }))
        self.boot(net, cmdline='kvmx.metadata_wait=90')

        address = self.lease('eth0', net.subnet)
        self.wait_for_console('^%s metadata hostname=%s keys=1$' % (
            net_image.META_MARKER_PREFIX, self.name))
        self.assertEqual(self.name + '\n', self.ssh(address, 'hostname'))
        routes = [' '.join(route.split()) for route in
                  self.ssh(address, 'ip -4 route').splitlines()]
        self.assertIn('default via %s dev eth0 metric 2' % net.gateway,
                      routes)
        self.assertIn('%s via %s dev eth0 metric 2' % (
            METADATA_IP, net.gateway), routes)
        self.assertIn('/latest/meta-data/public-keys/0/openssh-key',
                      md.requests)
        # Tempest's metadata checks, with curl.
        self.assertEqual(self.name + '.novalocal', self.ssh(
            address, 'curl http://%s/latest/meta-data/local-hostname'
            % METADATA_IP))
        self.ssh(address, 'curl -X POST -d s3cret http://%s/openstack/'
                 '2013-10-17/password' % METADATA_IP)
        self.assertEqual([('/openstack/2013-10-17/password', 's3cret')],
                         md.posted)
        self.assert_powers_off()


class NovaConfigDriveTest(base.RealLibvirtTestCase):
    """The guest as a Nova server through our driver: uploaded as the
    command line entry writes it (the PVH kernel), it finds the hostname
    Nova gave the server and the server's key on Nova's own config drive,
    as Tempest's test_host_name_is_same_as_server_name needs."""

    def test_hostname_and_key_from_novas_config_drive(self):
        guest = net_image.get_artifacts()
        image_id = self._upload(
            guest.root_disk, 'qcow2', 'kvmx-net',
            kernel_id=self._upload(guest.kernel, 'aki', 'kvmx-net-kernel'),
            ramdisk_id=self._upload(guest.initramfs, 'ari',
                                    'kvmx-net-initrd'),
            os_command_line=guest.cmdline)
        key = os.path.join(self.useFixture(fixtures.TempDir()).path, 'key')
        run('ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', key)
        with open(key + '.pub') as f:
            self.api.post_keypair({'keypair': {'name': 'kvmx-test',
                                               'public_key': f.read()}})
        server = self._build_server(
            name='Net Guest_1', image_uuid=image_id,
            flavor_id=self.create_flavor(), networks='none')
        server.update(config_drive=True, key_name='kvmx-test')
        server = self.wait_for_status(self.api.post_server(
            {'server': server}), 'ACTIVE')

        # Nova's hostname for "Net Guest_1".
        self.wait_for_console(server, '%s config-drive hostname=net-guest-1 '
                              'keys=1' % net_image.META_MARKER_PREFIX)
        self.wait_for_console(server, '%s ready'
                              % net_image.SSH_MARKER_PREFIX)
        self.api.post_server_action(server['id'], {'os-stop': None})
        self.wait_for_status(server, 'SHUTOFF')
        self.wait_for_console(server, guest_image.POWEROFF_MARKER_PREFIX)
