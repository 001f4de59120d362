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

"""Ports and claimed PCI devices -> the guest's NICs and hostdevs.

Each case builds Nova's own network_info (nova.network.model) and claimed
PciDevices, plans and renders the whole domain, validates it against
libvirt's schema, then reads back the device it is about.
"""

import ddt
from nova import exception as nova_exception
from nova.network import model
from nova import objects
import testtools

from nova_kvmx import exception
from nova_kvmx.guest import devices
from nova_kvmx.guest import planner
from nova_kvmx.guest import render
from nova_kvmx.guest import render_devices
from nova_kvmx import vif as kvmx_vif
from tests.unit import builders as b
from tests.unit import xml_schema

PORT = 'd2e3a1f4-1b5c-4c8e-9a0b-3f2e1d0c9b8a'
NET = '5a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d'
MAC = 'fa:16:3e:11:22:33'
VF = '0000:81:00.2'
PF = '0000:81:00.0'


def port(vif_type, vnic_type='normal', details=None, profile=None,
         mac=MAC, bridge=None, mtu=1450, port_id=PORT, **kw):
    network = model.Network(id=NET, bridge=bridge, label='nfv',
                            subnets=[], mtu=mtu)
    return model.VIF(id=port_id, address=mac, network=network,
                     type=vif_type, vnic_type=vnic_type,
                     details=details or {}, profile=profile or {},
                     devname=('tap' + port_id)[:model.NIC_NAME_LEN], **kw)


def sriov_port(vnic_type='direct', vlan=42, slot=VF, **kw):
    vif_type = {'direct-physical': model.VIF_TYPE_HOSTDEV}.get(
        vnic_type, model.VIF_TYPE_HW_VEB)
    details = {model.VIF_DETAILS_VLAN: vlan} if vlan is not None else {}
    return port(vif_type, vnic_type, details=details,
                profile={'pci_slot': slot, 'physical_network': 'sriov1',
                         'pci_vendor_info': '8086:1515'}, **kw)


def pci_device(address, dev_type='type-VF', parent=PF, request_id=None,
               **extra_info):
    return objects.PciDevice(
        address=address, dev_type=dev_type,
        parent_addr=parent if dev_type == 'type-VF' else None,
        request_id=request_id, extra_info=extra_info)


def instance(claimed=(), **flavor_kw):
    inst = b.instance(flavor_obj=b.flavor(**flavor_kw))
    inst.pci_devices = objects.PciDeviceList(objects=list(claimed))
    return inst


def plan(network_info=(), claimed=(), image_meta=None, virt_type='kvm',
         vf_netdevs=None, **flavor_kw):
    return planner.plan_guest(
        b.context(), instance(claimed, **flavor_kw), image_meta or b.image(),
        b.files(), b.settings(virt_type=virt_type), list(network_info),
        vf_netdevs)


class DevicesTestCase(testtools.TestCase):
    def domain(self, *args, **kw):
        xml = render.render_domain(plan(*args, **kw))
        xml_schema.assert_valid_domain(self, xml)
        return xml_schema.parse(xml)

    def interface(self, *args, **kw):
        return xml_schema.find(self.domain(*args, **kw),
                               './devices/interface')


def attrs(element):
    return dict(element.attrib)


def pci_source(element):
    return attrs(xml_schema.find(element, './source/address'))


@ddt.ddt
class VirtualPortTest(DevicesTestCase):
    """vnic_type normal: OVS (hybrid and native), Linux bridge,
    vhost-user."""

    def test_ovs_hybrid_plug(self):
        nic = self.interface([port(
            'ovs', details={'ovs_hybrid_plug': True, 'port_filter': True},
            bridge='br-int', ovs_interfaceid=PORT)])
        self.assertEqual('bridge', nic.get('type'))
        # os-vif's Linux bridge between the tap and OVS.
        self.assertEqual({'bridge': ('qbr' + PORT)[:14]},
                         attrs(xml_schema.find(nic, 'source')))
        self.assertEqual(('tap' + PORT)[:14],
                         xml_schema.find(nic, 'target').get('dev'))
        self.assertEqual(MAC, xml_schema.find(nic, 'mac').get('address'))
        self.assertEqual('virtio', xml_schema.find(nic, 'model').get('type'))
        self.assertEqual('1450', xml_schema.find(nic, 'mtu').get('size'))
        self.assertEqual([], xml_schema.findall(nic, 'virtualport'))

    def test_ovs_native(self):
        nic = self.interface([port('ovs', bridge='br-int',
                                   ovs_interfaceid=PORT)])
        self.assertEqual('bridge', nic.get('type'))
        self.assertEqual('br-int',
                         xml_schema.find(nic, 'source').get('bridge'))
        vport = xml_schema.find(nic, 'virtualport')
        self.assertEqual('openvswitch', vport.get('type'))
        self.assertEqual(PORT, xml_schema.find(
            vport, 'parameters').get('interfaceid'))

    def test_ovs_tap_created_by_os_vif(self):
        nic = self.interface([port(
            'ovs', details={model.VIF_DETAILS_OVS_CREATE_TAP: True},
            bridge='br-int')])
        self.assertEqual('ethernet', nic.get('type'))
        self.assertEqual({'dev': ('tap' + PORT)[:14], 'managed': 'no'},
                         attrs(xml_schema.find(nic, 'target')))
        self.assertEqual([], xml_schema.findall(nic, 'source'))

    def test_linux_bridge(self):
        bridge = 'brq' + NET[:11]
        nic = self.interface([port('bridge', bridge=bridge)])
        self.assertEqual('bridge', nic.get('type'))
        self.assertEqual(bridge,
                         xml_schema.find(nic, 'source').get('bridge'))
        self.assertEqual(('tap' + PORT)[:14],
                         xml_schema.find(nic, 'target').get('dev'))
        self.assertEqual('1450', xml_schema.find(nic, 'mtu').get('size'))

    @ddt.data('client', 'server')
    def test_vhostuser(self, mode):
        sock = '/var/run/openvswitch/vhu' + PORT[:11]
        spec = plan([port('vhostuser', bridge='br-int', details={
            'vhostuser_socket': sock, 'vhostuser_mode': mode,
            'vhostuser_ovs_plug': True})])
        self.assertTrue(devices.needs_shared_memory(spec.devices))
        xml = render.render_domain(spec)
        xml_schema.assert_valid_domain(self, xml)
        nic = xml_schema.find(xml_schema.parse(xml), './devices/interface')
        self.assertEqual('vhostuser', nic.get('type'))
        self.assertEqual({'type': 'unix', 'path': sock, 'mode': mode},
                         attrs(xml_schema.find(nic, 'source')))
        self.assertEqual('virtio', xml_schema.find(nic, 'model').get('type'))
        # Without huge pages, the switch reads file-backed, shared RAM.
        backing = xml_schema.find(xml_schema.parse(xml), 'memoryBacking')
        self.assertEqual({'type': 'file'},
                         attrs(xml_schema.find(backing, 'source')))
        self.assertEqual({'mode': 'shared'},
                         attrs(xml_schema.find(backing, 'access')))

    def test_only_vhostuser_needs_shared_memory(self):
        spec = plan([port('ovs', bridge='br-int'),
                     sriov_port(mac='fa:16:3e:00:00:02')],
                    claimed=[pci_device(VF)])
        self.assertFalse(devices.needs_shared_memory(spec.devices))

    def test_multiqueue_on_kvm(self):
        nic = self.interface(
            [port('bridge', bridge='brq1')], vcpus=4,
            image_meta=b.image(hw_vif_multiqueue_enabled=True))
        self.assertEqual({'name': 'vhost', 'queues': '4'},
                         attrs(xml_schema.find(nic, 'driver')))

    def test_flavor_multiqueue_on_kvm(self):
        nic = self.interface(
            [port('bridge', bridge='brq1')], vcpus=4,
            extra_specs={'hw:vif_multiqueue_enabled': 'true'})
        self.assertEqual({'name': 'vhost', 'queues': '4'},
                         attrs(xml_schema.find(nic, 'driver')))

    def test_no_multiqueue_unless_asked(self):
        nic = self.interface([port('bridge', bridge='brq1')], vcpus=4)
        self.assertEqual([], xml_schema.findall(nic, 'driver'))

    def test_tcg_uses_qemu_backend(self):
        nic = self.interface(
            [port('bridge', bridge='brq1')], virt_type='qemu',
            image_meta=b.image(hw_vif_multiqueue_enabled=True))
        self.assertEqual({'name': 'qemu'},
                         attrs(xml_schema.find(nic, 'driver')))

    def test_image_vif_model(self):
        nic = self.interface([port('bridge', bridge='brq1')],
                             image_meta=b.image(hw_vif_model='e1000'))
        self.assertEqual('e1000', xml_schema.find(nic, 'model').get('type'))

    def test_ports_follow_disks_in_order(self):
        root = self.domain([
            port('bridge', bridge='brq1', port_id='p1',
                 mac='fa:16:3e:00:00:01'),
            port('bridge', bridge='brq2', port_id='p2',
                 mac='fa:16:3e:00:00:02')])
        tags = [e.tag for e in xml_schema.find(root, 'devices')]
        self.assertEqual(['disk', 'interface', 'interface'], tags[:3])
        self.assertEqual(
            ['fa:16:3e:00:00:01', 'fa:16:3e:00:00:02'],
            [m.get('address') for m in xml_schema.findall(
                root, './devices/interface/mac')])


@ddt.ddt
class SRIOVPortTest(DevicesTestCase):
    """vnic_type direct, macvtap and direct-physical, and flavor PCI
    aliases: the exact device Nova claimed."""

    def test_direct_vf_with_mac_and_vlan(self):
        nic = self.interface([sriov_port(vlan=42)], claimed=[pci_device(VF)])
        self.assertEqual({'type': 'hostdev', 'managed': 'yes'}, attrs(nic))
        self.assertEqual(MAC, xml_schema.find(nic, 'mac').get('address'))
        self.assertEqual(
            {'type': 'pci', 'domain': '0x0000', 'bus': '0x81',
             'slot': '0x00', 'function': '0x2'}, pci_source(nic))
        self.assertEqual('42', xml_schema.find(nic, './vlan/tag').get('id'))
        # The guest's driver is the VF's own, not an emulated model.
        self.assertEqual([], xml_schema.findall(nic, 'model'))

    @ddt.data(None, 0, '0')
    def test_direct_vf_without_vlan(self, vlan):
        nic = self.interface([sriov_port(vlan=vlan)],
                             claimed=[pci_device(VF)])
        self.assertEqual([], xml_schema.findall(nic, 'vlan'))

    def test_vlan_as_string(self):
        nic = self.interface([sriov_port(vlan='100')],
                             claimed=[pci_device(VF)])
        self.assertEqual('100', xml_schema.find(nic, './vlan/tag').get('id'))

    @ddt.data(4095, -1, 'abc')
    def test_invalid_vlan_names_port(self, vlan):
        ex = self.assertRaises(exception.InvalidPortBinding, plan,
                               [sriov_port(vlan=vlan)],
                               claimed=[pci_device(VF)])
        self.assertIn(PORT, str(ex))
        self.assertIn('VLAN', str(ex))

    def test_mac_lower_cased(self):
        nic = self.interface([sriov_port(mac='FA:16:3E:AA:BB:CC')],
                             claimed=[pci_device(VF)])
        self.assertEqual('fa:16:3e:aa:bb:cc',
                         xml_schema.find(nic, 'mac').get('address'))

    @ddt.data('01:00:5e:00:00:01', 'fa:16:3e:11:22', 'not-a-mac', None)
    def test_bad_mac_names_port(self, mac):
        ex = self.assertRaises(exception.InvalidPortBinding, plan,
                               [sriov_port(mac=mac)],
                               claimed=[pci_device(VF)])
        self.assertIn(PORT, str(ex))

    def test_macvtap_on_the_vf_netdev(self):
        nic = self.interface([sriov_port('macvtap')],
                             claimed=[pci_device(VF)],
                             vf_netdevs={VF: 'enp129s0f0v1'})
        self.assertEqual('direct', nic.get('type'))
        self.assertEqual({'dev': 'enp129s0f0v1', 'mode': 'passthrough'},
                         attrs(xml_schema.find(nic, 'source')))
        self.assertEqual('virtio', xml_schema.find(nic, 'model').get('type'))
        self.assertEqual(MAC, xml_schema.find(nic, 'mac').get('address'))

    def test_macvtap_vf_without_netdev(self):
        ex = self.assertRaises(exception.PortWithoutDevice, plan,
                               [sriov_port('macvtap')],
                               claimed=[pci_device(VF)], vf_netdevs={})
        self.assertIn(PORT, str(ex))

    def test_direct_physical_is_the_whole_pf(self):
        root = self.domain(
            [sriov_port('direct-physical', slot=PF, vlan=None)],
            claimed=[pci_device(PF, dev_type='type-PF')])
        self.assertEqual([], xml_schema.findall(root, './devices/interface'))
        hostdev = xml_schema.find(root, './devices/hostdev')
        self.assertEqual({'mode': 'subsystem', 'type': 'pci',
                          'managed': 'yes'}, attrs(hostdev))
        self.assertEqual({'domain': '0x0000', 'bus': '0x81', 'slot': '0x00',
                          'function': '0x0'}, pci_source(hostdev))

    def test_flavor_alias_devices_after_the_ports(self):
        gpu = pci_device('0000:3b:00.0', dev_type='type-PCI')
        vf = pci_device('0000:af:02.7', managed='false', parent='0000:af:00.0')
        root = self.domain(
            [sriov_port()], claimed=[pci_device(VF), gpu, vf])
        self.assertEqual(['interface', 'hostdev', 'hostdev'], [
            e.tag for e in xml_schema.find(root, 'devices')
            if e.tag in ('interface', 'hostdev')])
        hostdevs = xml_schema.findall(root, './devices/hostdev')
        self.assertEqual(
            [('yes', '0x3b', '0x00', '0x0'), ('no', '0xaf', '0x02', '0x7')],
            [(h.get('managed'), pci_source(h)['bus'], pci_source(h)['slot'],
              pci_source(h)['function']) for h in hostdevs])

    def test_port_device_must_be_claimed(self):
        ex = self.assertRaises(exception.UnclaimedDevice, plan,
                               [sriov_port()],
                               claimed=[pci_device('0000:81:00.3')])
        self.assertIn(VF, str(ex))
        self.assertIn(PORT, str(ex))

    def test_sriov_port_without_pci_slot(self):
        vif = sriov_port()
        vif['profile'] = {}
        ex = self.assertRaises(exception.PortWithoutDevice, plan, [vif])
        self.assertIn(PORT, str(ex))


@ddt.ddt
class UnsupportedPortTest(testtools.TestCase):
    def test_unknown_vnic_type(self):
        ex = self.assertRaises(exception.UnknownVnicType, plan,
                               [port('ovs', vnic_type='smartnic-9000')])
        self.assertIn(PORT, str(ex))
        self.assertIn('smartnic-9000', str(ex))

    @ddt.data(('midonet', 'normal'), ('hw_veb', 'normal'),
              ('ovs', 'vdpa'), ('ovs', 'remote-managed'),
              ('bridge', 'direct'), ('binding_failed', 'normal'),
              (None, 'normal'))
    @ddt.unpack
    def test_unsupported_vif_type(self, vif_type, vnic_type):
        ex = self.assertRaises(exception.UnsupportedVIFType, plan,
                               [port(vif_type, vnic_type=vnic_type,
                                     profile={'pci_slot': VF})],
                               claimed=[pci_device(VF)])
        self.assertIn(PORT, str(ex))
        self.assertIn('does not support VIF type %s' % vif_type, str(ex))


class PCIAddressTest(testtools.TestCase):
    """PCI addresses through Nova's own parser (nova.pci.utils)."""

    def test_canonical_form(self):
        for given, expected in (('0000:81:00.2', '0000:81:00.2'),
                                ('0000:AF:1F.7', '0000:af:1f.7'),
                                ('ffff:ff:1f.7', 'ffff:ff:1f.7')):
            self.assertEqual(expected, devices.pci_address(given))

    def test_malformed(self):
        for bad in ('0000:81:00.8', '81:00.2', '0000:81:00', '0000-81-00.2',
                    '0000:81:00.2 ', ''):
            self.assertRaises(nova_exception.PciDeviceWrongAddressFormat,
                              devices.pci_address, bad)

    def test_nodedev_name(self):
        self.assertEqual('pci_0000_af_02_7',
                         devices.nodedev_name('0000:AF:02.7'))

    def test_rendered_address_round_trips(self):
        conf = render_devices.build_device(
            devices.HostdevSpec(address='0000:af:1f.7'))
        root = xml_schema.parse(conf.to_xml())
        source = pci_source(root)
        self.assertEqual('0000:af:1f.7', devices.pci_address(
            '%s:%s:%s.%s' % tuple(source[k][2:] for k in (
                'domain', 'bus', 'slot', 'function'))))


class DevicePresenceTest(testtools.TestCase):
    """How a detach sees that the guest let a device go."""

    DOMAIN = '''<domain type='kvm'><devices>
      <interface type='hostdev' managed='yes'>
        <mac address='FA:16:3E:11:22:33'/>
        <source><address type='pci' domain='0x0000' bus='0x81' slot='0x00'
          function='0x2'/></source>
      </interface>
      <hostdev mode='subsystem' type='pci' managed='yes'>
        <source><address domain='0x0000' bus='0x3b' slot='0x00'
          function='0x0'/></source>
      </hostdev>
    </devices></domain>'''

    def test_interface_by_mac(self):
        self.assertTrue(kvmx_vif._present(self.DOMAIN, devices.InterfaceSpec(
            port_id=PORT, mac=MAC, net_type='hostdev')))
        self.assertFalse(kvmx_vif._present(
            self.DOMAIN, devices.InterfaceSpec(
                port_id=PORT, mac='fa:16:3e:00:00:09', net_type='hostdev')))

    def test_hostdev_by_address(self):
        self.assertTrue(kvmx_vif._present(
            self.DOMAIN, devices.HostdevSpec(address='0000:3b:00.0')))
        self.assertFalse(kvmx_vif._present(
            self.DOMAIN, devices.HostdevSpec(address='0000:3b:00.1')))
