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

"""Flavor disk and NIC QoS and [libvirt] NIC ring sizes in the domain."""

import ddt
import testtools

from nova_kvmx import exception
from nova_kvmx.guest import devices
from nova_kvmx.guest import planner
from nova_kvmx.guest import qos
from nova_kvmx.guest import render
from tests.unit import builders as b
from tests.unit import test_guest_devices as devs
from tests.unit import xml_schema

DISK_IOTUNE = {'quota:disk_read_bytes_sec': '10485760',
               'quota:disk_write_bytes_sec': '5242880',
               'quota:disk_read_iops_sec': '500',
               'quota:disk_write_iops_sec': '250'}
VIF_BANDWIDTH = {'quota:vif_inbound_average': '1024',
                 'quota:vif_inbound_peak': '2048',
                 'quota:vif_inbound_burst': '512',
                 'quota:vif_outbound_average': '768',
                 'quota:vif_outbound_peak': '1536',
                 'quota:vif_outbound_burst': '256'}


def attrs(element):
    return dict(element.attrib)


def domain(testcase, extra_specs=None, network_info=(), claimed=(),
           **settings):
    inst = devs.instance(claimed, extra_specs=extra_specs or {})
    guest = planner.plan_guest(
        b.context(), inst, b.image(), b.files(config_drive=True),
        b.settings(**settings), list(network_info))
    xml = render.render_domain(guest)
    xml_schema.assert_valid_domain(testcase, xml)
    return xml_schema.parse(xml)


def plan(extra_specs, network_info=(), claimed=()):
    return planner.plan_guest(
        b.context(), devs.instance(claimed, extra_specs=extra_specs),
        b.image(), b.files(), b.settings(), list(network_info))


@ddt.ddt
class DiskQoSTest(testtools.TestCase):

    def test_iotune_on_every_disk(self):
        root = domain(self, DISK_IOTUNE)
        disks = xml_schema.findall(root, './devices/disk')
        self.assertEqual(2, len(disks))
        for disk in disks:
            tune = xml_schema.find(disk, 'iotune')
            self.assertEqual(
                {'read_bytes_sec': '10485760', 'write_bytes_sec': '5242880',
                 'read_iops_sec': '500', 'write_iops_sec': '250'},
                {e.tag: e.text for e in tune})

    def test_totals(self):
        tune = xml_schema.find(domain(self, {
            'quota:disk_total_bytes_sec': '1000000',
            'quota:disk_total_iops_sec': '100'}), './devices/disk[1]/iotune')
        self.assertEqual({'total_bytes_sec': '1000000',
                          'total_iops_sec': '100'},
                         {e.tag: e.text for e in tune})

    def test_no_iotune_unless_asked(self):
        self.assertEqual([], xml_schema.findall(domain(self),
                                                './devices/disk/iotune'))

    @ddt.data('bytes', 'iops')
    def test_total_with_read_is_refused_by_name(self, kind):
        ex = self.assertRaises(exception.UnsupportedKey, plan, {
            'quota:disk_total_%s_sec' % kind: '100',
            'quota:disk_read_%s_sec' % kind: '50'})
        self.assertIn('quota:disk_total_%s_sec' % kind, str(ex))

    @ddt.data('-1', 'fast')
    def test_not_a_whole_number_is_refused_by_name(self, value):
        ex = self.assertRaises(exception.UnsupportedKey, plan,
                               {'quota:disk_read_iops_sec': value})
        self.assertIn('quota:disk_read_iops_sec', str(ex))


@ddt.ddt
class VifQoSTest(testtools.TestCase):

    def test_bandwidth_on_a_bridge_port(self):
        nic = xml_schema.find(domain(
            self, VIF_BANDWIDTH,
            [devs.port('bridge', bridge='brq1')]), './devices/interface')
        self.assertEqual({'average': '1024', 'peak': '2048', 'burst': '512'},
                         attrs(xml_schema.find(nic, 'bandwidth/inbound')))
        self.assertEqual({'average': '768', 'peak': '1536', 'burst': '256'},
                         attrs(xml_schema.find(nic, 'bandwidth/outbound')))

    def test_bandwidth_on_an_ovs_port(self):
        nic = xml_schema.find(domain(
            self, {'quota:vif_outbound_average': '100'},
            [devs.port('ovs', bridge='br-int', ovs_interfaceid=devs.PORT)]),
            './devices/interface')
        self.assertEqual({'average': '100'},
                         attrs(xml_schema.find(nic, 'bandwidth/outbound')))

    def test_no_bandwidth_unless_asked(self):
        root = domain(self, network_info=[devs.port('bridge', bridge='b1')])
        self.assertEqual([], xml_schema.findall(
            root, './devices/interface/bandwidth'))

    def test_vf_port_is_refused_by_name(self):
        ex = self.assertRaises(
            exception.UnsupportedKey, plan,
            {'quota:vif_inbound_average': '1024'}, [devs.sriov_port()],
            [devs.pci_device(devs.VF)])
        self.assertIn('quota:vif_inbound_average', str(ex))
        self.assertIn(devs.PORT, str(ex))

    def test_flavor_pci_device_is_no_port(self):
        gpu = devs.pci_device('0000:3b:00.0', dev_type='type-PCI')
        root = domain(self, VIF_BANDWIDTH,
                      [devs.port('bridge', bridge='brq1')], claimed=[gpu])
        self.assertEqual(1, len(xml_schema.findall(
            root, './devices/interface/bandwidth')))
        self.assertEqual(1, len(xml_schema.findall(root, './devices/hostdev')))


class QueueSizeTest(testtools.TestCase):

    def test_rx_queue_size_on_a_virtio_nic(self):
        nic = xml_schema.find(domain(
            self, network_info=[devs.port('bridge', bridge='brq1')],
            rx_queue_size=1024, tx_queue_size=1024), './devices/interface')
        # TX ring size is vhost-user's only (Nova's VIF driver alike).
        self.assertEqual({'name': 'vhost', 'rx_queue_size': '1024'},
                         attrs(xml_schema.find(nic, 'driver')))

    def test_rx_and_tx_on_vhost_user(self):
        sock = '/var/run/openvswitch/vhu' + devs.PORT[:11]
        nic = xml_schema.find(domain(
            self, network_info=[devs.port('vhostuser', bridge='br-int',
                                          details={
                                              'vhostuser_socket': sock,
                                              'vhostuser_mode': 'server',
                                              'vhostuser_ovs_plug': True})],
            rx_queue_size=512, tx_queue_size=1024), './devices/interface')
        self.assertEqual({'rx_queue_size': '512', 'tx_queue_size': '1024'},
                         attrs(xml_schema.find(nic, 'driver')))

    def test_not_on_a_vf(self):
        nic = xml_schema.find(domain(
            self, network_info=[devs.sriov_port()],
            claimed=[devs.pci_device(devs.VF)], rx_queue_size=1024),
            './devices/interface')
        self.assertEqual([], xml_schema.findall(nic, 'driver'))


class HotAttachTest(testtools.TestCase):
    """A port attached to a running guest gets what a boot gives it."""

    def test_attached_port_gets_bandwidth_and_ring_size(self):
        port = devices.plan_port(devs.port('bridge', bridge='brq1'),
                                 b.flavor(), b.image(), 'kvm')
        conf = qos.device_config(
            port, b.flavor(extra_specs=VIF_BANDWIDTH),
            b.settings(rx_queue_size=512))
        nic = xml_schema.parse(conf.to_xml())
        self.assertEqual({'average': '768', 'peak': '1536', 'burst': '256'},
                         attrs(xml_schema.find(nic, 'bandwidth/outbound')))
        self.assertEqual({'name': 'vhost', 'rx_queue_size': '512'},
                         attrs(xml_schema.find(nic, 'driver')))

    def test_attached_vf_with_bandwidth_is_refused_by_name(self):
        port = devices.plan_port(devs.sriov_port(), b.flavor(), b.image(),
                                 'kvm')
        ex = self.assertRaises(
            exception.UnsupportedKey, qos.device_config, port,
            b.flavor(extra_specs={'quota:vif_inbound_average': '1'}))
        self.assertIn('quota:vif_inbound_average', str(ex))
