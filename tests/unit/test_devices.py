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

"""The host's PCI devices from its node devices: the facts of a PCI
function's network interface, and the PCI report kept between periods."""

import re
from unittest import mock

import fixtures
from nova.tests.fixtures import libvirt as fakelibvirt
from oslo_serialization import jsonutils
import testtools

from nova_kvmx.host import devices
from nova_kvmx.host import pci
from tests.unit import nodedev_events

# As `virsh nodedev-dumpxml` prints the virtio NIC of a Debian 12 guest.
NET_ETH0 = """<device>
  <name>net_eth0_02_fc_00_00_00_01</name>
  <path>/sys/devices/pci0000:00/0000:00:03.0/virtio2/net/eth0</path>
  <parent>pci_0000_00_03_0</parent>
  <capability type='net'>
    <interface>eth0</interface>
    <address>02:fc:00:00:00:01</address>
    <link speed='4294967295' state='up'/>
    <feature name='rx'/>
    <feature name='tx'/>
    <feature name='sg'/>
    <feature name='tso'/>
    <capability type='80203'/>
  </capability>
</device>"""

NET_LO = """<device>
  <name>net_lo_00_00_00_00_00_00</name>
  <path>/sys/devices/virtual/net/lo</path>
  <parent>computer</parent>
  <capability type='net'>
    <interface>lo</interface>
    <address>00:00:00:00:00:00</address>
  </capability>
</device>"""


# The netdev of the first fake PF (pci_0000_81_00_0).
NET_PF = """<device>
  <name>net_ens1f0_3c_fd_fe_a1_b2_c0</name>
  <path>/sys/devices/pci0000:80/0000:80:01.0/0000:81:00.0/net/ens1f0</path>
  <parent>pci_0000_81_00_0</parent>
  <capability type='net'>
    <interface>ens1f0</interface>
    <address>3c:fd:fe:a1:b2:c0</address>
    <feature name='rx'/>
    <capability type='80203'/>
  </capability>
</device>"""


class NetFactsTest(testtools.TestCase):

    def test_pci_nic(self):
        self.assertEqual(
            ('0000:00:03.0', ['rx', 'tx', 'sg', 'tso'], 'eth0',
             '02:fc:00:00:00:01'),
            devices.net_facts(NET_ETH0))

    def test_interface_without_pci_parent(self):
        self.assertIsNone(devices.net_facts(NET_LO))

    def test_malformed_xml_is_skipped_with_a_warning(self):
        log = self.useFixture(fixtures.FakeLogger())
        self.assertIsNone(devices.net_facts(NET_ETH0[:100]))
        self.assertIn('not well-formed', log.output)

    def test_missing_interface_is_skipped_with_a_warning(self):
        log = self.useFixture(fixtures.FakeLogger())
        self.assertIsNone(devices.net_facts(
            NET_ETH0.replace('<interface>eth0</interface>', '')))
        self.assertIn('net_eth0_02_fc_00_00_00_01: its XML has no interface',
                      log.output)

    def test_missing_mac_is_left_out(self):
        self.assertEqual(
            ('0000:00:03.0', ['rx', 'tx', 'sg', 'tso'], 'eth0', None),
            devices.net_facts(NET_ETH0.replace(
                '<address>02:fc:00:00:00:01</address>', '')))


class PCIReportTest(testtools.TestCase):
    """The PCI report is kept between periods and follows node-device
    events, on Nova's fake libvirt (fake SR-IOV NICs: two PFs with two VFs
    each) with events sent as libvirt's event loop sends them."""

    VF = 'pci_0000_81_00_1'
    PF = 'pci_0000_81_00_0'

    def setUp(self):
        super().setUp()
        self.useFixture(nodedev_events.Fixture())
        self.log = self.useFixture(fixtures.FakeLogger())
        self.conn = self.connection()
        self.report = devices.PCIReport()
        self.addCleanup(self.report.close)

    @staticmethod
    def connection(**pci):
        return nodedev_events.Connection(
            'qemu:///system', pci_info=fakelibvirt.HostPCIDevicesInfo(
                **dict(dict(num_pfs=2, num_vfs=4), **pci)))

    def devices(self, conn=None):
        return {d['dev_id']: d for d in jsonutils.loads(
            self.report.json(conn or self.conn))}

    def spy(self, method):
        return self.useFixture(fixtures.MockPatchObject(
            self.conn, method, wraps=getattr(self.conn, method))).mock

    def test_first_report_has_every_device(self):
        expected = pci.devices_from_xml(
            [d.XMLDesc(0) for d in self.conn.pci_info.devices.values()])
        self.assertEqual(expected, jsonutils.loads(
            self.report.json(self.conn)))
        self.assertEqual(2, len(self.conn.nodedev_callbacks))

    def test_report_is_kept_while_no_event_comes(self):
        first = self.report.json(self.conn)
        listing, lookup = self.spy('listAllDevices'), self.spy(
            'nodeDeviceLookupByName')
        self.assertIs(first, self.report.json(self.conn))
        listing.assert_not_called()
        lookup.assert_not_called()

    def test_updated_device_is_read_again(self):
        self.assertEqual(0, self.devices()[self.VF]['numa_node'])
        listing, lookup = self.spy('listAllDevices'), self.spy(
            'nodeDeviceLookupByName')
        vf = self.conn.pci_info.devices[self.VF]
        vf.numa_node = 1
        vf.generate_xml()
        self.conn.send_update(self.VF)
        self.assertEqual({self.VF}, self.report.pending())
        self.assertEqual(1, self.devices()[self.VF]['numa_node'])
        self.assertEqual(set(), self.report.pending())
        # and its PF, in case the VF was created or deleted
        self.assertEqual([mock.call(self.VF), mock.call(self.PF)],
                         lookup.call_args_list)
        listing.assert_not_called()

    def test_event_without_change_keeps_the_report(self):
        first = self.report.json(self.conn)
        self.conn.send_update(self.VF)
        self.assertIs(first, self.report.json(self.conn))

    def test_deleted_device_leaves_the_report(self):
        self.assertIn(self.VF, self.devices())
        del self.conn.pci_info.devices[self.VF]
        self.conn.send_lifecycle(self.VF, nodedev_events.DELETED)
        report = self.devices()
        self.assertNotIn(self.VF, report)
        self.assertEqual(5, len(report))

    def test_created_netdev_gives_its_pf_a_mac(self):
        self.assertNotIn('mac_address', self.devices()[self.PF])
        self.conn._add_nodedev(fakelibvirt.NodeDevice(self.conn, xml=NET_PF))
        self.conn.send_lifecycle('net_ens1f0_3c_fd_fe_a1_b2_c0',
                                 nodedev_events.CREATED)
        self.assertEqual('3c:fd:fe:a1:b2:c0',
                         self.devices()[self.PF]['mac_address'])

    def test_device_changed_during_the_listing_is_read_next_time(self):
        """Registration comes before the listing, so a change the listing
        missed is not lost."""
        list_all = self.conn.listAllDevices
        vf = self.conn.pci_info.devices[self.VF]

        def listing(flags):
            devs = list_all(flags)
            if vf.numa_node == 0:
                vf.numa_node = 1
                vf.generate_xml()
                self.conn.send_update(self.VF)
            return devs

        self.useFixture(fixtures.MockPatchObject(
            self.conn, 'listAllDevices', side_effect=listing))
        self.assertEqual(0, self.devices()[self.VF]['numa_node'])
        self.assertEqual(1, self.devices()[self.VF]['numa_node'])

    def test_new_connection_is_listed_again(self):
        """Nova's Host reconnects after libvirtd restarts: the new
        connection's devices are read, its events followed."""
        self.assertEqual(6, len(self.devices()))
        conn = self.connection(num_pfs=1, num_vfs=1)
        self.assertEqual({self.PF, self.VF}, set(self.devices(conn)))
        self.assertEqual({}, self.conn.nodedev_callbacks)
        self.assertEqual(2, len(conn.nodedev_callbacks))
        del conn.pci_info.devices[self.VF]
        conn.send_lifecycle(self.VF, nodedev_events.DELETED)
        self.assertEqual({self.PF}, set(self.devices(conn)))

    def test_without_events_every_period_lists_the_devices(self):
        self.useFixture(fixtures.MockPatchObject(
            self.conn, 'nodeDeviceEventRegisterAny',
            side_effect=fakelibvirt.make_libvirtError(
                fakelibvirt.libvirtError,
                'internal error: could not initialize domain event timer',
                error_code=fakelibvirt.VIR_ERR_INTERNAL_ERROR)))
        self.assertIn(self.VF, self.devices())
        del self.conn.pci_info.devices[self.VF]  # and no event
        self.assertNotIn(self.VF, self.devices())
        self.assertEqual(5, len(self.devices()))
        self.assertEqual(1, self.log.output.count(
            'libvirt sends no node-device events'))

    def test_full_listing_catches_a_change_no_event_told_of(self):
        clock = self.useFixture(fixtures.MockPatch(
            'nova_kvmx.host.devices.time.monotonic', return_value=1000.0))
        self.report = devices.PCIReport(full_listing_interval=600)
        self.addCleanup(self.report.close)
        self.assertIn(self.VF, self.devices())
        listing = self.spy('listAllDevices')
        del self.conn.pci_info.devices[self.VF]  # and no event
        clock.mock.return_value = 1599.0
        self.assertIn(self.VF, self.devices())
        listing.assert_not_called()
        clock.mock.return_value = 1600.0
        self.assertNotIn(self.VF, self.devices())
        self.assertEqual(2, listing.call_count)  # PCI devices, netdevs
        # Events are still followed between listings.
        self.assertEqual(2, len(self.conn.nodedev_callbacks))
        clock.mock.return_value = 1601.0
        self.conn.pci_info.devices[self.PF].numa_node = 1
        self.conn.pci_info.devices[self.PF].generate_xml()
        self.conn.send_update(self.PF)
        self.assertEqual(1, self.devices()[self.PF]['numa_node'])
        self.assertEqual(2, listing.call_count)

    def test_one_shot_reader_asks_for_no_events(self):
        # A command (nova-kvmx explain) runs no event loop: it neither
        # registers nor warns, and reads every device.
        report = devices.PCIReport(events=False)
        self.addCleanup(report.close)
        self.assertEqual(6, len(jsonutils.loads(report.json(self.conn))))
        self.assertEqual(0, len(self.conn.nodedev_callbacks))
        self.assertNotIn('node-device events', self.log.output)

    def test_bindings_without_node_device_events(self):
        # Nova's own fake libvirt has no node-device event API at all.
        conn = fakelibvirt.Connection(
            'qemu:///system', pci_info=fakelibvirt.HostPCIDevicesInfo(
                num_pfs=2, num_vfs=4))
        self.assertFalse(hasattr(conn, 'nodeDeviceEventRegisterAny'))
        self.assertEqual(6, len(self.devices(conn)))
        self.assertEqual(1, self.log.output.count(
            'libvirt sends no node-device events'))

    def test_device_losing_fields_is_dropped_with_a_warning(self):
        self.assertIn(self.VF, self.devices())
        vf = self.conn.pci_info.devices[self.VF]
        vf.pci_device = re.sub(r'<vendor [^>]*>[^<]*</vendor>', '',
                               vf.pci_device)
        self.conn.send_update(self.VF)
        self.assertNotIn(self.VF, self.devices())
        self.assertIn('Skipping PCI node device %s: its XML has no '
                      'vendor_id' % self.VF, self.log.output)

    def test_new_vf_gets_its_number_from_its_pf(self):
        """libvirt sends no event for a PF whose VFs change: the PF is read
        again with its VF, for the VF's number."""
        self.conn = self.connection(num_pfs=1, num_vfs=1)
        self.assertEqual({self.PF, self.VF}, set(self.devices()))
        self.conn._add_nodedev(fakelibvirt.NodeDevice(self.conn, xml=NET_PF))
        self.conn.send_lifecycle('net_ens1f0_3c_fd_fe_a1_b2_c0',
                                 nodedev_events.CREATED)
        info = self.conn.pci_info
        info.add_device(dev_type='VF', bus=0x81, slot=0, function=2,
                        iommu_group=42, numa_node=0, vf_ratio=2,
                        parent=(0x81, 0, 0))
        info.devices[self.PF].vf_ratio = 2
        info.devices[self.PF].generate_xml()
        self.conn.send_lifecycle('pci_0000_81_00_2', nodedev_events.CREATED)
        self.assertEqual(
            {'pf_mac_address': '3c:fd:fe:a1:b2:c0', 'vf_num': 1},
            self.devices()['pci_0000_81_00_2']['capabilities']['sriov'])

    def test_netdev_without_mac_gives_its_pf_none(self):
        self.conn._add_nodedev(fakelibvirt.NodeDevice(
            self.conn, xml=NET_PF.replace(
                '<address>3c:fd:fe:a1:b2:c0</address>', '')))
        self.conn.send_lifecycle('net_ens1f0_3c_fd_fe_a1_b2_c0',
                                 nodedev_events.CREATED)
        self.assertNotIn('mac_address', self.devices()[self.PF])
        self.assertEqual([], [d for d in self.devices().values()
                              if 'capabilities' in d])

    def test_device_gone_during_the_listing_is_left_out(self):
        gone = fakelibvirt.NodeDevice(self.conn, xml=NET_PF)
        self.useFixture(fixtures.MockPatchObject(
            gone, 'XMLDesc', side_effect=fakelibvirt.make_libvirtError(
                fakelibvirt.libvirtError, 'no node device',
                error_code=fakelibvirt.VIR_ERR_NO_NODE_DEVICE)))
        list_all = self.conn.listAllDevices
        self.useFixture(fixtures.MockPatchObject(
            self.conn, 'listAllDevices',
            side_effect=lambda flags: list_all(flags) + [gone]))
        self.assertEqual(6, len(self.devices()))

    def test_libvirt_failure_lists_again_next_time(self):
        """The period fails, as Nova's does; the event it took is not lost:
        the next period reads every device again."""
        self.devices()
        vf = self.conn.pci_info.devices[self.VF]
        vf.numa_node = 1
        vf.generate_xml()
        self.conn.send_update(self.VF)
        broken = fakelibvirt.make_libvirtError(
            fakelibvirt.libvirtError, 'End of file while reading data',
            error_code=fakelibvirt.VIR_ERR_SYSTEM_ERROR)
        with mock.patch.object(self.conn, 'nodeDeviceLookupByName',
                               side_effect=broken):
            self.assertRaises(fakelibvirt.libvirtError, self.devices)
        self.assertEqual(1, self.devices()[self.VF]['numa_node'])

    def test_close_deregisters(self):
        self.devices()
        self.report.close()
        self.assertEqual({}, self.conn.nodedev_callbacks)
