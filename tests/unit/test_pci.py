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

"""The host's PCI devices, as Nova's PCI tracker sees them.

Node devices are ``virsh nodedev-dumpxml`` documents of libvirt 9.0 in
``data/nodedev-*.xml``: an Intel X710 PF with 4 VFs and one of those VFs, an
E810 PF with no VF enabled, an NVIDIA T4 and a QAT card (no NUMA node), a
ConnectX-6 Dx PF with a VPD serial number and a VF without VPD, a chipset
device without ``<vendor>``, and a VF's netdev. The last tests give the
same node devices, ours and Nova's fake libvirt's, to Nova's own
``Host._get_pcidev_info`` (sysfs reads mocked with the same facts we are
given) and compare the dicts.
"""

import os
from unittest import mock

import fixtures
from lxml import etree
from nova import exception
from nova.objects import fields
from nova.tests.fixtures import libvirt as fakelibvirt
from nova.virt.libvirt import config as vconfig
from nova.virt.libvirt import host as libvirt_host
import testtools

from nova_kvmx.host import pci

DATA = os.path.join(os.path.dirname(__file__), 'data')
PF, VF, PCI = (fields.PciDeviceType.SRIOV_PF, fields.PciDeviceType.SRIOV_VF,
               fields.PciDeviceType.STANDARD)
SERIAL = 'MT2113X00000'
VF_FEATURES = ['rx', 'tx', 'sg', 'tso', 'gso', 'gro', 'rxvlan', 'txvlan',
               'rxhash']
X710_PF_MAC = '3c:fd:fe:a1:b2:c0'


def xml(name):
    with open(os.path.join(DATA, 'nodedev-%s.xml' % name)) as f:
        return f.read()


X710_PF = {
    'dev_id': 'pci_0000_81_00_0', 'address': '0000:81:00.0',
    'vendor_id': '8086', 'product_id': '1572', 'numa_node': 1,
    'label': 'label_8086_1572', 'dev_type': PF,
}
X710_VF = {
    'dev_id': 'pci_0000_81_02_1', 'address': '0000:81:02.1',
    'vendor_id': '8086', 'product_id': '154c', 'numa_node': 1,
    'label': 'label_8086_154c', 'dev_type': VF,
    'parent_addr': '0000:81:00.0',
}


class DeviceFromXMLTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.log = self.useFixture(fixtures.FakeLogger())

    def test_pf(self):
        self.assertEqual(X710_PF, pci.device_from_xml(xml('x710-pf')))

    def test_pf_with_no_vf_enabled(self):
        self.assertEqual({
            'dev_id': 'pci_0000_17_00_0', 'address': '0000:17:00.0',
            'vendor_id': '8086', 'product_id': '1593', 'numa_node': 0,
            'label': 'label_8086_1593', 'dev_type': PF,
        }, pci.device_from_xml(xml('e810-pf-novfs')))

    def test_vf(self):
        self.assertEqual(X710_VF, pci.device_from_xml(xml('x710-vf')))

    def test_gpu(self):
        self.assertEqual({
            'dev_id': 'pci_0000_af_00_0', 'address': '0000:af:00.0',
            'vendor_id': '10de', 'product_id': '1eb8', 'numa_node': 1,
            'label': 'label_10de_1eb8', 'dev_type': PCI,
        }, pci.device_from_xml(xml('t4-gpu')))

    def test_no_numa_node(self):
        device = pci.device_from_xml(xml('qat-nonuma'))
        self.assertIsNone(device['numa_node'])
        self.assertEqual(('0000:3d:00.0', PCI, 'label_8086_37c8'), (
            device['address'], device['dev_type'], device['label']))

    def test_vpd_serial(self):
        self.assertEqual({
            'dev_id': 'pci_0000_3b_00_0', 'address': '0000:3b:00.0',
            'vendor_id': '15b3', 'product_id': '101d', 'numa_node': 0,
            'label': 'label_15b3_101d', 'dev_type': PF,
            'capabilities': {'vpd': {'card_serial_number': SERIAL}},
        }, pci.device_from_xml(xml('cx6dx-pf-vpd')))

    def test_vf_alone_has_no_serial_of_its_pf(self):
        self.assertNotIn('capabilities', pci.device_from_xml(xml('cx6dx-vf')))

    def test_netdev_is_not_a_pci_device(self):
        self.assertIsNone(pci.device_from_xml(xml('net-vf')))
        self.assertEqual('', self.log.output)

    def test_bytes(self):
        self.assertEqual(
            X710_PF, pci.device_from_xml(xml('x710-pf').encode('utf-8')))

    def test_vf_network_features_and_parent_ifname(self):
        device = pci.device_from_xml(
            xml('x710-vf'),
            net_features_by_pci_addr={'0000:81:02.1': VF_FEATURES},
            ifname_by_pci_addr={'0000:81:00.0': 'ens1f0',
                                '0000:81:02.1': 'ens1f0v1'})
        self.assertEqual(dict(X710_VF, parent_ifname='ens1f0',
                              capabilities={'network': VF_FEATURES}),
                         device)

    def test_vf_without_netdev_has_no_parent_ifname(self):
        # A VF bound to vfio-pci has no netdev: Nova reports no
        # parent_ifname then, even though its PF has one.
        device = pci.device_from_xml(
            xml('x710-vf'), ifname_by_pci_addr={'0000:81:00.0': 'ens1f0'})
        self.assertEqual(X710_VF, device)

    def test_vf_netdev_without_features(self):
        device = pci.device_from_xml(
            xml('x710-vf'), net_features_by_pci_addr={'0000:81:02.1': []},
            ifname_by_pci_addr={'0000:81:00.0': 'ens1f0'})
        self.assertEqual(dict(X710_VF, parent_ifname='ens1f0'), device)

    def test_pf_mac_address(self):
        device = pci.device_from_xml(
            xml('x710-pf'), net_features_by_pci_addr={'0000:81:00.0': ['rx']},
            mac_by_pci_addr={'0000:81:00.0': X710_PF_MAC})
        # Nova reports features of VFs only.
        self.assertEqual(dict(X710_PF, mac_address=X710_PF_MAC), device)

    def test_vf_alone_has_no_sriov_capability(self):
        device = pci.device_from_xml(
            xml('x710-vf'), mac_by_pci_addr={'0000:81:00.0': X710_PF_MAC})
        self.assertEqual(X710_VF, device)

    def test_missing_vendor_is_skipped_with_a_warning(self):
        self.assertIsNone(pci.device_from_xml(xml('missing-vendor')))
        self.assertIn('pci_0000_00_1f_4', self.log.output)
        self.assertIn('vendor_id', self.log.output)

    def test_missing_address_is_skipped_with_a_warning(self):
        doc = etree.fromstring(xml('t4-gpu'))
        bus = doc.find('capability/bus')
        bus.getparent().remove(bus)
        self.assertIsNone(pci.device_from_xml(etree.tostring(doc)))
        self.assertIn('pci_0000_af_00_0: its XML has no bus', self.log.output)

    def test_unreadable_values_are_skipped_with_a_warning(self):
        for old, new in (("<bus>175</bus>", "<bus>0xaf</bus>"),
                         ("<vendor id='0x10de'>", "<vendor>")):
            self.assertIsNone(pci.device_from_xml(
                xml('t4-gpu').replace(old, new)))
        self.assertEqual(2, self.log.output.count(
            'Skipping PCI node device pci_0000_af_00_0'))

    def test_malformed_xml_is_skipped_with_a_warning(self):
        self.assertIsNone(pci.device_from_xml(xml('t4-gpu')[:200]))
        self.assertIn('not well-formed', self.log.output)


class DevicesFromXMLTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.log = self.useFixture(fixtures.FakeLogger())

    def test_host(self):
        names = ['x710-pf', 'x710-vf', 'net-vf', 'missing-vendor',
                 'e810-pf-novfs', 't4-gpu', 'cx6dx-vf', 'cx6dx-pf-vpd']
        devices = pci.devices_from_xml(
            [xml(n) for n in names],
            net_features_by_pci_addr={'0000:81:00.0': ['rx'],
                                      '0000:81:02.1': VF_FEATURES},
            ifname_by_pci_addr={'0000:81:00.0': 'ens1f0',
                                '0000:81:02.1': 'ens1f0v1'},
            mac_by_pci_addr={'0000:81:00.0': X710_PF_MAC,
                             '0000:81:02.1': '7e:6b:02:11:aa:01'})
        self.assertEqual([
            '0000:81:00.0', '0000:81:02.1', '0000:17:00.0', '0000:af:00.0',
            '0000:3b:00.3', '0000:3b:00.0'], [d['address'] for d in devices])
        self.assertEqual(dict(X710_PF, mac_address=X710_PF_MAC), devices[0])
        self.assertEqual(dict(X710_VF, parent_ifname='ens1f0', capabilities={
            'network': VF_FEATURES,
            'sriov': {'pf_mac_address': X710_PF_MAC, 'vf_num': 1},
        }), devices[1])
        # The VF without VPD gets its card's serial number from its PF,
        # listed after it.
        self.assertEqual({
            'dev_id': 'pci_0000_3b_00_3', 'address': '0000:3b:00.3',
            'vendor_id': '15b3', 'product_id': '101e', 'numa_node': 0,
            'label': 'label_15b3_101e', 'dev_type': VF,
            'parent_addr': '0000:3b:00.0',
            'capabilities': {'vpd': {'card_serial_number': SERIAL}},
        }, devices[4])
        self.assertEqual(1, self.log.output.count('Skipping'))

    def test_empty(self):
        self.assertEqual([], pci.devices_from_xml([]))

    def test_only_bad_devices(self):
        self.assertEqual([], pci.devices_from_xml(
            [xml('missing-vendor'), '<device>', xml('net-vf')]))
        self.assertEqual(2, self.log.output.count('Skipping'))


def netdev_xml(parent, ifname, mac, features):
    """A ``net`` node device of the PCI function named ``parent``."""
    dev = etree.Element('device')
    etree.SubElement(dev, 'name').text = 'net_%s_%s' % (
        ifname, mac.replace(':', '_'))
    etree.SubElement(dev, 'parent').text = parent
    cap = etree.SubElement(dev, 'capability', type='net')
    etree.SubElement(cap, 'interface').text = ifname
    etree.SubElement(cap, 'address').text = mac
    for feature in features:
        etree.SubElement(cap, 'feature', name=feature)
    return etree.tostring(dev, encoding='unicode')


def parse(xml_string):
    cfgdev = vconfig.LibvirtConfigNodeDevice()
    cfgdev.parse_str(xml_string)
    return cfgdev.pci_capability


def address_of(name):
    """'0000:81:02.1' of 'pci_0000_81_02_1'."""
    _, domain, bus, slot, function = name.split('_')
    return '%s:%s:%s.%s' % (domain, bus, slot, function)


class NovaParityTest(testtools.TestCase):
    """Our dicts are Nova's, for the same node devices and sysfs facts."""

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.FakeLogger())

    def nova_devices(self, pci_xmls, net_xmls, ifnames, macs, vf_nums):
        """Nova's ``Host._get_pcidev_info`` of every PCI device, as
        ``LibvirtDriver._get_pci_passthrough_devices`` calls it, with
        sysfs reads answered from the facts."""
        pci_devs = [fakelibvirt.NodeDevice(None, x) for x in pci_xmls]
        net_devs = [fakelibvirt.NodeDevice(None, x) for x in net_xmls]
        fun_caps = {address_of(d.name()): parse(d.XMLDesc(0)).fun_capability
                    for d in pci_devs}

        def mac(address):
            if address not in macs:
                raise exception.PciDeviceNotFoundById(id=address)
            return macs[address]

        def pf_ifname(vf_address, pf_interface=False):
            # /sys/bus/pci/devices/<vf>/physfn/net/<ifname>
            physfn = [c.device_addrs[0] for c in fun_caps[vf_address]
                      if c.type == 'phys_function']
            pf_addr = '%04x:%02x:%02x.%x' % physfn[0]
            if pf_addr not in ifnames:
                raise exception.PciDeviceNotFoundById(id=vf_address)
            return ifnames[pf_addr]

        utils = 'nova.virt.libvirt.host.pci_utils.'
        with mock.patch(utils + 'get_mac_by_pci_address',
                        side_effect=mac), \
                mock.patch(utils + 'get_ifname_by_pci_address',
                           side_effect=pf_ifname), \
                mock.patch(utils + 'get_vf_num_by_pci_address',
                           side_effect=vf_nums.__getitem__):
            host = libvirt_host.Host.__new__(libvirt_host.Host)
            return [host._get_pcidev_info(d.name(), d, net_devs, [], pci_devs)
                    for d in pci_devs]

    def assertParity(self, pci_xmls, net_facts=(), macs=None, vf_nums=None):
        """``net_facts``: (pci address, ifname, mac, features) of netdevs;
        ``macs``: MACs of PFs whose netdev is not listed (Nova reads them
        from sysfs)."""
        net_xmls = [netdev_xml('pci_' + a.replace(':', '_').replace('.', '_'),
                               i, m, f) for a, i, m, f in net_facts]
        ifnames = {a: i for a, i, m, f in net_facts}
        all_macs = dict(macs or {}, **{a: m for a, i, m, f in net_facts})
        features = {a: f for a, i, m, f in net_facts}
        expected = self.nova_devices(pci_xmls, net_xmls, ifnames, all_macs,
                                     vf_nums or {})
        actual = pci.devices_from_xml(pci_xmls, features, ifnames, all_macs)
        self.assertEqual(expected, actual)
        return actual

    def fake_host(self, **kwargs):
        """Nova's fake PCI devices and the VF numbers sysfs would tell."""
        info = fakelibvirt.HostPCIDevicesInfo(**kwargs)
        vf_nums, count = {}, {}
        for dev in info.devices.values():
            if dev.dev_type == 'VF':
                vf_nums[dev.address] = count.get(dev.parent, 0)
                count[dev.parent] = vf_nums[dev.address] + 1
        return info, vf_nums

    def test_fake_pfs_and_vfs(self):
        info, vf_nums = self.fake_host(num_pci=2, num_pfs=2, num_vfs=8)
        xmls = [d.XMLDesc(0) for d in info.devices.values()]
        devices = self.assertParity(xmls, vf_nums=vf_nums)
        self.assertEqual([PCI] * 2 + ([PF] + [VF] * 4) * 2,
                         [d['dev_type'] for d in devices])

    def test_fake_pfs_and_vfs_with_netdevs(self):
        info, vf_nums = self.fake_host(num_pfs=2, num_vfs=12, numa_node=1)
        xmls = [d.XMLDesc(0) for d in info.devices.values()]
        net_facts = []
        for n, dev in enumerate(info.devices.values()):
            if dev.dev_type == 'PF' or n % 2:
                net_facts.append((dev.address, 'eth%d' % n,
                                  '52:54:00:00:00:%02x' % n,
                                  ['rx', 'tx'] if n % 3 else []))
        devices = self.assertParity(xmls, net_facts, vf_nums=vf_nums)
        self.assertIn('sriov', devices[-1]['capabilities'])
        self.assertIn('parent_ifname', devices[1])

    def test_fake_vpd_and_no_numa(self):
        info, vf_nums = self.fake_host(num_pfs=1, num_vfs=2)
        info.add_device(
            dev_type='PF', bus=0x82, slot=0, function=0, iommu_group=90,
            numa_node=-1, vf_ratio=1, vpd_fields={
                'name': 'A NIC', 'readonly': {'serial_number': 'SN-42'}})
        info.add_device(
            dev_type='VF', bus=0x82, slot=0, function=1, iommu_group=91,
            numa_node=-1, vf_ratio=1, parent=(0x82, 0, 0))
        vf_nums['0000:82:00.1'] = 0
        xmls = [d.XMLDesc(0) for d in info.devices.values()]
        devices = self.assertParity(
            xmls, macs={'0000:82:00.0': '52:54:00:aa:bb:cc'}, vf_nums=vf_nums)
        self.assertEqual(
            {'vpd': {'card_serial_number': 'SN-42'},
             'sriov': {'pf_mac_address': '52:54:00:aa:bb:cc', 'vf_num': 0}},
            devices[-1]['capabilities'])
        self.assertIsNone(devices[-1]['numa_node'])

    def test_our_fixtures(self):
        names = ['x710-pf', 'x710-vf', 'e810-pf-novfs', 't4-gpu',
                 'qat-nonuma', 'cx6dx-pf-vpd', 'cx6dx-vf']
        self.assertParity(
            [xml(n) for n in names],
            [('0000:81:00.0', 'ens1f0', X710_PF_MAC, ['rx', 'tx']),
             ('0000:81:02.1', 'ens1f0v1', '7e:6b:02:11:aa:01', VF_FEATURES),
             ('0000:3b:00.0', 'ens2f0np0', 'b8:ce:f6:00:00:01', ['rx'])],
            vf_nums={'0000:81:02.1': 1, '0000:3b:00.3': 1})
