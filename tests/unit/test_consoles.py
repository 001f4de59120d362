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

"""Serial console ports, SPICE and VNC: the domain XML (through libvirt's
schema), the ports taken from and given back to Nova's serial port range
(real sockets on the loopback), and the consoles read back from a
domain's XML."""

import socket

import ddt
import fixtures
from lxml import etree
from nova.console import serial
from nova.console import type as ctype
from nova import exception as nova_exception
from oslo_config import fixture as config_fixture
import testtools

import nova.conf
from nova_kvmx import console
from nova_kvmx.guest import consoles
from nova_kvmx.guest import migration_xml
from nova_kvmx.guest import render
from nova_kvmx.host import connection
from nova_kvmx import lifecycle
from tests.unit import builders as b
from tests.unit import test_lifecycle
from tests.unit import xml_schema

CONF = nova.conf.CONF
LOG_PATH = b.INST_DIR + '/console.log'
SPICE = consoles.Spice(listen='0.0.0.0')


def serial_settings(**kw):
    return b.settings(serial_listen='127.0.0.1', **kw)


def instance(**specs):
    return b.instance(flavor_obj=b.flavor(extra_specs=specs))


class DomainTestCase(testtools.TestCase):
    def domain(self, **kw):
        xml = b.render_xml(**kw)
        xml_schema.assert_valid_domain(self, xml)
        return xml_schema.parse(xml)


@ddt.ddt
class SerialPortCountTest(testtools.TestCase):
    """``hw:serial_port_count`` and ``hw_serial_port_count``, counted and
    checked by Nova's rules with the serial console; without it the guest
    has its one pty, as Nova's libvirt driver gives it."""

    @ddt.data(({}, {}, 1),
              ({'hw:serial_port_count': '2'}, {}, 2),
              ({}, {'hw_serial_port_count': 3}, 3),
              ({'hw:serial_port_count': '3'}, {'hw_serial_port_count': 2}, 2))
    @ddt.unpack
    def test_count(self, specs, props, count):
        self.assertEqual(count, consoles.serial_port_count(
            b.flavor(extra_specs=specs), b.image(**props), serial_settings()))

    def test_none_without_the_serial_console(self):
        self.assertEqual(0, consoles.serial_port_count(
            b.flavor(extra_specs={'hw:serial_port_count': '3'}),
            b.image(), b.settings()))

    @ddt.data(({'hw:serial_port_count': 'two'}, {},
               nova_exception.ImageSerialPortNumberInvalid),
              ({'hw:serial_port_count': '1'}, {'hw_serial_port_count': 2},
               nova_exception.ImageSerialPortNumberExceedFlavorValue),
              ({'hw:serial_port_count': '4'}, {},
               nova_exception.SerialPortNumberLimitExceeded))
    @ddt.unpack
    def test_novas_errors(self, specs, props, error):
        self.assertRaises(error, consoles.serial_port_count,
                          b.flavor(extra_specs=specs), b.image(**props),
                          serial_settings())

    def test_plan_needs_the_ports_counted(self):
        """The planner checks its ports are the count (acquired by the
        lifecycle)."""
        self.assertRaises(nova_exception.InternalError, b.plan,
                          inst=instance(**{'hw:serial_port_count': '2'}),
                          driver_settings=serial_settings(),
                          serial_ports=(10000,))


class SerialDomainTest(DomainTestCase):

    def test_tcp_ports_first_one_logged(self):
        root = self.domain(inst=instance(**{'hw:serial_port_count': '2'}),
                           driver_settings=serial_settings(),
                           serial_ports=(10007, 10003))
        serials = xml_schema.findall(root, 'devices/serial')
        self.assertEqual(
            [('tcp', 'bind', '127.0.0.1', '10007', '0'),
             ('tcp', 'bind', '127.0.0.1', '10003', '1')],
            [(s.get('type'), s.find('source').get('mode'),
              s.find('source').get('host'), s.find('source').get('service'),
              s.find('target').get('port')) for s in serials])
        # The kernel's console (ttyS0) is still in the console log.
        self.assertEqual([(LOG_PATH, 'on'), None],
                         [(s.find('log').get('file'), s.find('log').get(
                             'append')) if s.find('log') is not None
                          else None for s in serials])
        # libvirt adds the <console> that mirrors the first port.
        self.assertEqual([], xml_schema.findall(root, 'devices/console'))

    def test_pty_without_the_serial_console(self):
        root = self.domain(inst=instance(**{'hw:serial_port_count': '2'}))
        [serial_dev] = xml_schema.findall(root, 'devices/serial')
        self.assertEqual('pty', serial_dev.get('type'))
        self.assertEqual(LOG_PATH, serial_dev.find('log').get('file'))


class GraphicsDomainTest(DomainTestCase):

    def graphics(self, root):
        return [(g.get('type'), g.get('listen'))
                for g in xml_schema.findall(root, 'devices/graphics')]

    def test_spice_with_its_agent(self):
        root = self.domain(driver_settings=b.settings(spice=SPICE))
        self.assertEqual([('spice', '0.0.0.0')], self.graphics(root))
        channel = xml_schema.find(root, "devices/channel[@type='spicevmc']")
        self.assertEqual(consoles.SPICE_AGENT_CHANNEL,
                         channel.find('target').get('name'))
        self.assertEqual(1, len(xml_schema.findall(root, 'devices/video')))
        # The agent is the pointer: no default USB tablet (Nova's rule).
        self.assertEqual([], xml_schema.findall(root, 'devices/input'
                                                "[@type='tablet']"))

    def test_spice_and_vnc(self):
        root = self.domain(driver_settings=b.settings(
            spice=SPICE, vnc_listen='127.0.0.1'))
        self.assertEqual([('vnc', '127.0.0.1'), ('spice', '0.0.0.0')],
                         self.graphics(root))
        self.assertEqual(1, len(xml_schema.findall(root, 'devices/video')))
        # VNC needs the tablet.
        self.assertEqual(1, len(xml_schema.findall(
            root, "devices/input[@type='tablet']")))

    def test_spice_without_agent(self):
        root = self.domain(driver_settings=b.settings(spice=consoles.Spice(
            listen='127.0.0.1', agent=False)))
        self.assertEqual([], xml_schema.findall(root, 'devices/channel'))
        self.assertEqual(1, len(xml_schema.findall(
            root, "devices/input[@type='tablet']")))

    def test_explicit_pointer_with_the_agent(self):
        """An image asking for a tablet gets it."""
        root = self.domain(driver_settings=b.settings(spice=SPICE),
                           image_meta=b.image(hw_pointer_model='usbtablet'))
        self.assertEqual(1, len(xml_schema.findall(
            root, "devices/input[@type='tablet']")))

    def test_spice_options(self):
        root = self.domain(driver_settings=b.settings(spice=consoles.Spice(
            listen='127.0.0.1', image_compression='auto_glz',
            jpeg_compression='never', zlib_compression='always',
            playback_compression=False, streaming_mode='filter',
            secure=True)))
        spice = xml_schema.find(root, "devices/graphics[@type='spice']")
        self.assertEqual(
            [('image', 'compression', 'auto_glz'),
             ('jpeg', 'compression', 'never'),
             ('zlib', 'compression', 'always'),
             ('playback', 'compression', 'off'),
             ('streaming', 'mode', 'filter')],
            [(e.tag, *e.items()[0]) for e in spice
             if e.tag not in ('channel', 'listen')])
        self.assertEqual({'secure'}, {c.get('mode') for c in
                                      spice.findall('channel')})

    def test_spice_from_conf(self):
        conf = self.useFixture(config_fixture.Config(CONF))
        self.assertIsNone(consoles.spice_from_conf(CONF))
        conf.config(enabled=True, agent_enabled=False,
                    server_listen='192.0.2.5', streaming_mode='all',
                    group='spice')
        self.assertEqual(
            consoles.Spice(listen='192.0.2.5', agent=False,
                           streaming_mode='all'),
            consoles.spice_from_conf(CONF))


def domain_with(devices):
    return '<domain><devices>%s</devices></domain>' % devices


@ddt.ddt
class ConsoleOfDomainTest(testtools.TestCase):
    """The consoles Nova's API hands out, read from the domain XML."""

    def setUp(self):
        super().setUp()
        self.conf = self.useFixture(config_fixture.Config(CONF))
        self.conf.config(server_proxyclient_address='192.0.2.7',
                         group='spice')
        self.conf.config(server_proxyclient_address='192.0.2.8',
                         group='vnc')

    def test_serial_is_the_first_tcp_port(self):
        xml = domain_with(
            "<serial type='tcp'><source mode='bind' host='127.0.0.1' "
            "service='10001'/></serial><serial type='tcp'><source "
            "mode='bind' host='127.0.0.1' service='10002'/></serial>")
        found = console.serial_console(xml)
        self.assertIsInstance(found, ctype.ConsoleSerial)
        self.assertEqual(('127.0.0.1', 10001), (found.host, found.port))
        self.assertEqual([('127.0.0.1', 10001), ('127.0.0.1', 10002)],
                         console.serial_ports(xml))

    def test_no_serial_console_on_a_pty(self):
        self.assertRaises(nova_exception.ConsoleTypeUnavailable,
                          console.serial_console,
                          domain_with("<serial type='pty'/>"))

    @ddt.data(("port='5901' tlsPort='5902'", 5901, 5902),
              ("port='5901'", 5901, None),
              ("port='-1' tlsPort='5902'", None, 5902))
    @ddt.unpack
    def test_spice(self, ports, port, tls_port):
        found = console.spice_console(domain_with(
            "<graphics type='spice' %s autoport='yes'/>" % ports))
        self.assertIsInstance(found, ctype.ConsoleSpice)
        self.assertEqual(('192.0.2.7', port, tls_port),
                         (found.host, found.port, found.tlsPort))

    @ddt.data("<graphics type='spice' port='-1' autoport='yes'/>",
              "<graphics type='vnc' port='5900'/>")
    def test_spice_unavailable(self, devices):
        self.assertRaises(nova_exception.ConsoleTypeUnavailable,
                          console.spice_console, domain_with(devices))

    def test_vnc(self):
        found = console.vnc_console(domain_with(
            "<graphics type='vnc' port='5903'/>"))
        self.assertEqual(('192.0.2.8', 5903), (found.host, found.port))

    @ddt.data("<graphics type='vnc' port='-1' autoport='yes'/>",
              "<graphics type='spice' port='5900'/>")
    def test_vnc_unavailable(self, devices):
        """Before libvirt allocated the port (-1), as Nova: no console."""
        self.assertRaises(nova_exception.ConsoleTypeUnavailable,
                          console.vnc_console, domain_with(devices))


def free_range(size):
    """A range of ``size`` ports free on the loopback just now."""
    for start in range(42000, 60000, size):
        if all(_free(port) for port in range(start, start + size)):
            return start, start + size
    raise AssertionError('no %d free ports on the loopback' % size)


def _free(port):
    with socket.socket() as s:
        try:
            s.bind(('127.0.0.1', port))
        except OSError:
            return False
    return True


class SerialPortsTest(testtools.TestCase):
    """Ports of ``[serial_console] port_range``, through Nova's
    acquire_port and release_port, on real sockets."""

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.MockPatch(
            'nova.console.serial.ALLOCATED_PORTS', set()))
        self.start, self.stop = free_range(3)
        self.useFixture(config_fixture.Config(CONF)).config(
            port_range='%d:%d' % (self.start, self.stop),
            group='serial_console')

    def test_acquired_then_released_with_the_domain(self):
        ports = console.acquire_serial_ports('127.0.0.1', 2)
        self.assertEqual((self.start, self.start + 1), ports)
        xml = render.render_domain(b.plan(
            inst=instance(**{'hw:serial_port_count': '2'}),
            driver_settings=serial_settings(), serial_ports=ports))
        console.release_domain_serial_ports(xml)
        self.assertEqual(set(), serial.ALLOCATED_PORTS)

    def test_port_in_use_is_skipped(self):
        with socket.socket() as busy:
            busy.bind(('127.0.0.1', self.start))
            busy.listen()
            self.assertEqual((self.start + 1,),
                             console.acquire_serial_ports('127.0.0.1', 1))

    def test_exhausted_keeps_nothing(self):
        console.acquire_serial_ports('127.0.0.1', 2)
        ex = self.assertRaises(
            nova_exception.SocketPortRangeExhaustedException,
            console.acquire_serial_ports, '127.0.0.1', 2)
        self.assertIn('127.0.0.1', str(ex))
        self.assertEqual({('127.0.0.1', self.start),
                          ('127.0.0.1', self.start + 1)},
                         serial.ALLOCATED_PORTS)

    def test_none_without_the_serial_console(self):
        self.assertEqual((), console.acquire_serial_ports(None, 0))

    def test_undefined_domain_gives_its_ports_back(self):
        ports = console.acquire_serial_ports('127.0.0.1', 1)
        guest = test_lifecycle.FakeGuest([])
        guest.get_xml_desc = lambda: domain_with(
            "<serial type='tcp'><source mode='bind' host='127.0.0.1' "
            "service='%d'/></serial>" % ports)
        lifecycle.GuestLifecycle(None, None, None, 5, None, None).undefine(
            guest, b.instance())
        self.assertEqual(['undefine'], guest.log)
        self.assertEqual(set(), serial.ALLOCATED_PORTS)


# libvirt's domain capabilities, as `virsh domcapabilities` prints them,
# of a QEMU built without SPICE.
DOMCAPS = '''<domainCapabilities><devices>
<graphics supported='yes'><enum name='type'>
<value>sdl</value><value>vnc</value>%s
</enum></graphics></devices></domainCapabilities>'''


class SpiceSupportTest(testtools.TestCase):

    def test_graphics_types(self):
        self.assertEqual({'sdl', 'vnc', 'spice'}, connection.graphics_types(
            DOMCAPS % '<value>spice</value>'))
        self.assertEqual(set(), connection.graphics_types(
            "<domainCapabilities><devices><graphics supported='no'/>"
            "</devices></domainCapabilities>"))

    def test_refused_without_spice(self):
        class Host(object):
            def get_connection(self):
                return self

            def getDomainCapabilities(self, emulator, arch, machine,
                                      virt_type, flags):
                self.asked = (arch, virt_type)
                return DOMCAPS % ''

        host = Host()
        ex = self.assertRaises(nova_exception.InvalidConfiguration,
                               connection.check_spice, host, 'qemu',
                               'x86_64')
        self.assertIn('[spice] enabled', str(ex))
        self.assertIn('sdl, vnc', str(ex))
        self.assertEqual(('x86_64', 'qemu'), host.asked)


class LiveMigrationXMLTest(testtools.TestCase):
    """The source's domain takes the destination's serial console address
    and the ports the destination acquired, by serial port index."""

    def test_serial_ports_of_the_destination(self):
        root = xml_schema.parse(b.render_xml(
            inst=instance(**{'hw:serial_port_count': '2'}),
            driver_settings=serial_settings(), serial_ports=(10001, 10002)))
        # libvirt's <console> mirroring the first port, in a running
        # domain's XML.
        etree.SubElement(root.find('devices'), 'console', type='tcp').extend(
            [etree.Element('source', mode='bind', host='127.0.0.1',
                           service='10001'),
             etree.Element('target', type='serial', port='0')])
        moved = migration_xml.destination_xml(
            etree.tostring(root, encoding='unicode'),
            migration_xml.DestinationHost(serial_listen='192.0.2.9',
                                          serial_ports=(11000, 11001)))
        xml_schema.assert_valid_domain(self, moved)
        self.assertEqual(
            [('192.0.2.9', 11000), ('192.0.2.9', 11001)],
            console.serial_ports(moved))
        self.assertEqual([('192.0.2.9', '11000')], [
            (s.get('host'), s.get('service')) for s in xml_schema.parse(
                moved).findall("devices/console[@type='tcp']/source")])
