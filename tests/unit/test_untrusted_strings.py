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

"""Strings an image owner or a port's binding controls, on their way into
the domain: kept exactly and escaped by the XML library, or refused with a
Nova error naming what is wrong -- never an lxml or Unicode error, never
markup of their own.
"""

import ddt
from nova import exception
import testtools

from nova_kvmx import exception as kvmx_exception
from nova_kvmx.guest import devices
from tests.unit import builders as b
from tests.unit import test_guest_devices as tgd
from tests.unit import xml_schema

MARKUP = '"\'<devices><disk/></devices>&amp;../../etc/shadow'
# What XML 1.0 cannot carry at all: NUL, control characters, U+FFFE and a
# lone surrogate (how Python decodes a non-UTF-8 byte with surrogateescape).
NOT_XML = ['a\x00b', 'a\x1bb', 'a\ufffeb', 'a\udc80b']


@ddt.ddt
class ImageStringsTest(testtools.TestCase):

    def render(self, **props):
        return b.render_xml(image_meta=b.image(**props),
                            guest_files=b.files(kernel=True))

    def test_command_line_is_kept_exactly(self):
        for cmdline in (MARKUP, 'x' * 65536, 'console=ttyS0 \u00e9\U0001f600'):
            xml = self.render(os_command_line=cmdline)
            xml_schema.assert_valid_domain(self, xml)
            self.assertEqual(cmdline, xml_schema.find(
                xml_schema.parse(xml), 'os/cmdline').text)

    @ddt.data(*NOT_XML)
    def test_command_line_xml_cannot_carry(self, cmdline):
        ex = self.assertRaises(exception.ImageUnacceptable, self.render,
                               os_command_line=cmdline)
        self.assertIn(b.IMAGE_ID, str(ex))
        self.assertIn('os_command_line', str(ex))

    @ddt.data('q35', 'pc-q35-7.2', 'pc-i440fx-7.2', 'virt_1.0')
    def test_machine_types(self, machine):
        xml = self.render(hw_machine_type=machine)
        self.assertEqual(machine, xml_schema.find(
            xml_schema.parse(xml), 'os/type').get('machine'))

    @ddt.data('', ' ', MARKUP, 'q35 ', 'q35\n', *NOT_XML)
    def test_machine_type_libvirt_cannot_take(self, machine):
        ex = self.assertRaises(exception.InvalidMachineType, self.render,
                               hw_machine_type=machine)
        self.assertIn(b.IMAGE_ID, str(ex))


# Names Linux refuses for a network device, or that libvirt's schema does.
BAD_NETDEVS = ['', '.', '..', '../../etc', 'br int', 'br:0', '"><x/>',
               'x' * 16, 'br\u00e9', *NOT_XML]


@ddt.ddt
class PortStringsTest(testtools.TestCase):
    """A port's bridge, tap and socket come from its binding. They name a
    network device or a socket; anything else is refused naming the port
    before anything is plugged."""

    def plan_port(self, vif):
        return devices.plan_port(vif, b.flavor(), b.image(), 'kvm')

    def assert_refused(self, vif, text):
        ex = self.assertRaises(kvmx_exception.InvalidPortBinding,
                               self.plan_port, vif)
        self.assertIn(tgd.PORT, str(ex))
        self.assertIn(text, str(ex))

    @ddt.data(*BAD_NETDEVS)
    def test_linux_bridge_name(self, name):
        self.assert_refused(tgd.port('bridge', bridge=name), 'bridge')

    @ddt.data(*BAD_NETDEVS)
    def test_ovs_bridge_name(self, name):
        # Also when os-vif creates the port (the bridge is then not in the
        # domain, but os-vif plugs into it).
        for delegate_create in (False, True):
            self.assert_refused(tgd.port(
                'ovs', bridge=name, ovs_interfaceid=tgd.PORT,
                delegate_create=delegate_create), 'bridge')

    @ddt.data(*BAD_NETDEVS)
    def test_tap_name(self, name):
        for vif in (tgd.port('bridge', bridge='br0'),
                    tgd.port('ovs', bridge='br-int',
                             details={'ovs_hybrid_plug': True})):
            vif['devname'] = name
            self.assert_refused(vif, 'tap')

    @ddt.data('relative/sock', '/run/openvswitch/../../etc/shadow',
              '/run/vhu/', *['/run/' + s for s in NOT_XML])
    def test_vhostuser_socket(self, path):
        self.assert_refused(tgd.port('vhostuser', bridge='br-int', details={
            'vhostuser_socket': path, 'vhostuser_mode': 'client',
            'vhostuser_ovs_plug': True}), 'socket')

    @ddt.data('fa:16:3e:00:00:01"/><x', 'fa:16:3e:00:00:0\x00', None,
              '01:00:5e:00:00:01')
    def test_mac_of_any_port(self, mac):
        for vif in (tgd.port('bridge', bridge='br0', mac=mac),
                    tgd.port('ovs', bridge='br-int', mac=mac),
                    tgd.port('vhostuser', mac=mac, details={
                        'vhostuser_socket': '/run/vhu1',
                        'vhostuser_mode': 'client'})):
            self.assert_refused(vif, 'MAC')

    def test_good_names_pass(self):
        spec = self.plan_port(tgd.port('bridge', bridge='brq-1_a.b'))
        self.assertEqual('brq-1_a.b', spec.source)
        spec = self.plan_port(tgd.port('vhostuser', bridge='br-int', details={
            'vhostuser_socket': '/run/openvswitch/vhu1"<x>',
            'vhostuser_mode': 'client', 'vhostuser_ovs_plug': True}))
        self.assertEqual('/run/openvswitch/vhu1"<x>', spec.source)
