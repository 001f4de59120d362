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

"""The serial console of a real guest: the API's remote console, its
token resolved as nova-serialproxy resolves it, and the guest's boot
read from the TCP port QEMU listens on, on the local libvirtd."""

import os
import socket
import threading
import time
from urllib import parse

from lxml import etree
from nova.console import serial
from nova import context as nova_context
from nova import objects

from tests.functional import base
from tests.functional import console_proxy
from tests.functional import guest_image

HOST = '127.0.0.1'


def free_port(count=1):
    """The first of ``count`` loopback ports free just now, outside the
    kernel's ephemeral range so no outgoing connection takes one
    meanwhile."""
    for port in range(20000, 32000, 7):
        if all(_free(p) for p in range(port, port + count)):
            return port
    raise AssertionError('no free port on the loopback')


def _free(port):
    with socket.socket() as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def read_until(sock, text, timeout):
    """What ``sock`` gives until ``text`` came (or ``timeout`` passed)."""
    deadline = time.monotonic() + timeout
    output = b''
    sock.settimeout(1)
    while text.encode() not in output and time.monotonic() < deadline:
        try:
            data = sock.recv(4096)
        except socket.timeout:
            continue
        if not data:
            break
        output += data
    return output.decode(errors='replace')


def serial_ports(dom):
    """The ports the TCP serial ports of the libvirt domain ``dom`` listen
    on."""
    return [int(source.get('service')) for source in etree.fromstring(
        dom.XMLDesc(0)).findall("./devices/serial[@type='tcp']/source")]


def console_port(testcase, server):
    """(host, port) the API's serial console token resolves to, as
    nova-serialproxy resolves it."""
    microversion = testcase.api.microversion
    testcase.api.microversion = '2.6'
    try:
        remote = testcase.remote_console(server, 'serial', 'serial')
    finally:
        testcase.api.microversion = microversion
    [token] = parse.parse_qs(parse.urlparse(remote['url']).query)['token']
    auth = objects.ConsoleAuthToken.validate(
        nova_context.get_admin_context(), token)
    testcase.assertEqual(server['id'], auth.instance_uuid)
    return auth.host, auth.port


class SerialReader(threading.Thread):
    """Connects to a TCP serial port as soon as it listens (the guest's
    QEMU starts before its kernel prints anything) and keeps what it
    reads until ``text`` came or the deadline passed."""

    def __init__(self, port, text, timeout):
        super().__init__(daemon=True)
        self.port, self.text = port, text
        self.deadline = time.monotonic() + timeout
        self.output = ''

    def run(self):
        while time.monotonic() < self.deadline:
            try:
                sock = socket.create_connection((HOST, self.port), timeout=1)
            except OSError:
                time.sleep(0.05)
                continue
            with sock:
                self.output = read_until(sock, self.text,
                                         self.deadline - time.monotonic())
            return


class SerialConsoleTest(base.RealLibvirtTestCase):
    # [serial_console] is read when the compute service starts.
    START_COMPUTE = False

    def setUp(self):
        super().setUp()
        # A range of one port: the guest's, then none for a second one.
        self.port = free_port()
        self.flags(enabled=True, proxyclient_address=HOST,
                   port_range='%d:%d' % (self.port, self.port + 1),
                   group='serial_console')
        self.start_compute()

    def boot(self, image_id, flavor_id):
        return self._create_server(image_uuid=image_id, flavor_id=flavor_id,
                                   networks='none', expected_state='BUILD')

    def test_boot_read_on_the_serial_console(self):
        reader = SerialReader(self.port, guest_image.BOOT_MARKER_PREFIX,
                              base.STATE_TIMEOUT)
        reader.start()
        image_id = self.create_bootable_image()
        flavor_id = self.create_flavor()
        server = self.wait_for_status(self.boot(image_id, flavor_id),
                                      'ACTIVE')

        # The domain libvirt holds listens on the range's port, and logs.
        root = etree.fromstring(self.domain(server).XMLDesc(0))
        [tcp] = root.findall("./devices/serial[@type='tcp']")
        self.assertEqual(('bind', HOST, str(self.port)), tuple(
            tcp.find('source').get(name)
            for name in ('mode', 'host', 'service')))
        self.assertIsNotNone(tcp.find('log'))

        # The API's console, resolved as nova-serialproxy resolves it.
        self.api.microversion = '2.6'
        remote = self.remote_console(server, 'serial', 'serial')
        self.assertEqual('serial', remote['protocol'])
        url = parse.urlparse(remote['url'])
        self.assertEqual(('ws', '127.0.0.1:6083'), (url.scheme, url.netloc))
        [token] = parse.parse_qs(url.query)['token']
        auth = objects.ConsoleAuthToken.validate(
            nova_context.get_admin_context(), token)
        self.assertEqual((server['id'], HOST, self.port),
                         (auth.instance_uuid, auth.host, auth.port))

        # What the guest printed, read from that port.
        reader.join(base.STATE_TIMEOUT)
        self.assertIn(guest_image.BOOT_MARKER_PREFIX, reader.output)
        # And console output still has it.
        self.wait_for_console(server, guest_image.BOOT_MARKER_PREFIX)

        # A hard reboot gives the port back and takes it again (the range
        # has no other).
        self.api.post_server_action(server['id'], {'reboot': {'type': 'HARD'}})
        # (While the domain is made again Nova answers 404 for the
        # console, as with its libvirt driver.)
        self.wait_for_task_done(server)
        self.wait_for_console(server, guest_image.BOOT_MARKER_PREFIX, 2)
        self.assertEqual([self.port], serial_ports(self.domain(server)))

        # No port left for another guest: its build fails, leaving the
        # first guest's port alone.
        self.api.microversion = 'latest'
        other = self.wait_for_status(self.boot(image_id, flavor_id), 'ERROR')
        self.assertFalse(self.domain_exists(other))
        self.assertIn((HOST, self.port), serial.ALLOCATED_PORTS)
        self._delete_server(other)

        # Once the server is deleted its port is free again.
        self._delete_server(server)
        self.assertNotIn((HOST, self.port), serial.ALLOCATED_PORTS)
        with socket.socket() as s:
            s.bind((HOST, self.port))


class SpiceConsoleTest(base.RealLibvirtTestCase):
    """SPICE on this host's QEMU (which has it), beside VNC."""

    START_COMPUTE = False

    def setUp(self):
        super().setUp()
        self.flags(enabled=True, server_listen=HOST,
                   server_proxyclient_address=HOST, group='spice')
        self.start_compute()

    def test_spice_console(self):
        server = self._create_server(
            image_uuid=self.create_bootable_image(),
            flavor_id=self.create_flavor(), networks='none',
            expected_state='BUILD')
        server = self.wait_for_status(server, 'ACTIVE')
        root = etree.fromstring(self.domain(server).XMLDesc(0))
        graphics = root.find("./devices/graphics[@type='spice']")
        port = int(graphics.get('port'))
        self.assertEqual(
            ['com.redhat.spice.0'],
            [c.find('target').get('name') for c in root.findall(
                "./devices/channel[@type='spicevmc']")])

        self.api.microversion = '2.6'
        remote = self.remote_console(server, 'spice', 'spice-html5')
        [token] = parse.parse_qs(parse.urlparse(remote['url']).query)[
            'token']
        auth = objects.ConsoleAuthToken.validate(
            nova_context.get_admin_context(), token)
        self.assertEqual((HOST, port), (auth.host, auth.port))
        # QEMU's SPICE server answers there: a link request with a bad
        # magic gets its link header back ("REDQ").
        with socket.create_connection((HOST, port), timeout=10) as sock:
            sock.sendall(b'XXXX' + bytes(12))
            self.assertEqual(b'REDQ', sock.recv(4))
        self._delete_server(server)


# The guest of SerialProxyTest waits for a line on its console before it
# says it booted: what it prints then can only come after a client is
# connected, and the line it echoes shows the proxy carries input too.
WAITING = 'KVMX-SERIAL-WAITING'
READ = 'KVMX-SERIAL-READ'
_WAIT_FOR_A_LINE = '''echo "%s"
read -r line
echo "%s $line"''' % (WAITING, READ)


def waiting_guest():
    return guest_image.variant(
        'serial-input', initramfs=lambda tmpdir: guest_image.build_initramfs(
            os.path.join(tmpdir, 'serial-input-initramfs.cpio.gz'),
            guest_image.DEFAULT_MARKER, extra_init=_WAIT_FOR_A_LINE))


class SerialProxyTest(base.RealLibvirtTestCase):
    """The serial console as a user reaches it: the API's remote console
    URL opened through Nova's serial proxy (nova-serialproxy's server and
    request handler), the guest's output read from the websocket."""

    START_COMPUTE = False

    def setUp(self):
        super().setUp()
        # The guest's range, then the proxy's port.
        self.port = free_port(3)
        self.proxy_port = self.port + 2
        self.flags(enabled=True, proxyclient_address=HOST,
                   port_range='%d:%d' % (self.port, self.port + 1),
                   base_url='ws://%s:%d/' % (HOST, self.proxy_port),
                   serialproxy_host=HOST, serialproxy_port=self.proxy_port,
                   group='serial_console')
        self.start_compute()

    def boot_waiting_guest(self):
        guest = waiting_guest()
        kernel_id = self._upload(guest.kernel, 'aki', 'kvmx-kernel')
        ramdisk_id = self._upload(guest.initramfs, 'ari', 'kvmx-initrd')
        image_id = self._upload(guest.root_disk, 'qcow2', 'kvmx-serial',
                                kernel_id=kernel_id, ramdisk_id=ramdisk_id,
                                os_command_line=guest.cmdline)
        server = self._create_server(
            image_uuid=image_id, flavor_id=self.create_flavor(),
            networks='none', expected_state='BUILD')
        return self.wait_for_status(server, 'ACTIVE')

    def console_url(self, server):
        self.api.microversion = '2.6'
        try:
            remote = self.remote_console(server, 'serial', 'serial')
        finally:
            self.api.microversion = 'latest'
        self.assertEqual('serial', remote['protocol'])
        return remote['url']

    def test_guest_read_through_the_serial_proxy(self):
        server = self.boot_waiting_guest()
        self.addCleanup(self._delete_server, server)
        self.wait_for_console(server, WAITING)
        url = self.console_url(server)
        self.assertTrue(url.startswith('ws://%s:%d/?' % (
            HOST, self.proxy_port)), url)

        with console_proxy.SerialProxy(HOST, self.proxy_port):
            client = console_proxy.connect(url)
            try:
                client.sendmsg(b'through-the-proxy\r')
                output = console_proxy.read_until(
                    client, guest_image.BOOT_MARKER_PREFIX,
                    base.STATE_TIMEOUT)
            finally:
                client.close()
            self.assertIn('%s through-the-proxy' % READ, output)
            self.assertIn(guest_image.BOOT_MARKER_PREFIX, output)

            # A token the API did not give gets no console: the proxy
            # closes the connection.
            bogus = parse.urlunparse(parse.urlparse(url)._replace(
                query='token=' + '0' * 36))
            self.assertIsNone(console_proxy.connect(bogus).recv())

        # The guest's output is logged as ever.
        self.wait_for_console(server, guest_image.BOOT_MARKER_PREFIX)
