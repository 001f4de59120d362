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

"""PCI passthrough and SR-IOV ports through Nova's API and PCI tracker.

The host (Nova's fake libvirt) has two SR-IOV PFs, one per NUMA node,
with four VFs each. Nova's scheduler and PCI tracker pick and claim the
devices; the tests check that the domain libvirt was given (validated
against libvirt's schema) and the domain the fake libvirt holds use
exactly the claimed device.
"""

import copy
import os
import time
from unittest import mock

from lxml import etree
from nova import objects
from nova.tests.fixtures import libvirt as fakelibvirt
from oslo_serialization import jsonutils

from tests.functional import fake_host
from tests.unit import xml_schema

PHYSNET = 'physnet2'
DEVICE_SPEC = [jsonutils.dumps(spec) for spec in (
    {'vendor_id': fakelibvirt.PCI_VEND_ID,
     'product_id': fakelibvirt.PF_PROD_ID, 'physical_network': PHYSNET},
    {'vendor_id': fakelibvirt.PCI_VEND_ID,
     'product_id': fakelibvirt.VF_PROD_ID, 'physical_network': PHYSNET},
)]
ALIAS = [jsonutils.dumps(alias) for alias in (
    {'name': 'nic-vf', 'vendor_id': fakelibvirt.PCI_VEND_ID,
     'product_id': fakelibvirt.VF_PROD_ID, 'device_type': 'type-VF'},
    {'name': 'nic-pf', 'vendor_id': fakelibvirt.PCI_VEND_ID,
     'product_id': fakelibvirt.PF_PROD_ID, 'device_type': 'type-PF'},
)]


def nodedev(address):
    return 'pci_' + address.replace(':', '_').replace('.', '_')


def source_address(element):
    """'0000:81:00.2' from a <source><address .../></source>."""
    addr = element.find('./source/address')
    return '%04x:%02x:%02x.%x' % tuple(int(addr.get(k), 16) for k in (
        'domain', 'bus', 'slot', 'function'))


class SRIOVTestBase(fake_host.FakeLibvirtTestCase):

    def setUp(self):
        super().setUp()
        self.flags(device_spec=DEVICE_SPEC, alias=ALIAS, group='pci')
        self.pci_info = fakelibvirt.HostPCIDevicesInfo(num_pfs=2, num_vfs=8)
        self.neutron._networks[self.neutron.network_2['id']] = \
            self.neutron.network_2
        self.image_id = self.create_image()

    def add_port(self, vnic_type, vif_type='hw_veb', vlan=100,
                 network=None, mac='fa:16:3e:5a:00:01', **extra):
        port = copy.deepcopy(self.neutron.sriov_port)
        port.update({
            'id': 'c0ffee00-0000-4000-8000-%012d' % len(self.neutron._ports),
            'mac_address': mac, 'binding:vnic_type': vnic_type,
            'binding:vif_type': vif_type,
            'binding:vif_details': {'vlan': vlan} if vlan else {},
            'network_id': (network or self.neutron.network_2)['id']})
        port.update(extra)
        self.neutron._ports[port['id']] = port
        return port

    def pci_devices(self):
        node = objects.ComputeNode.get_by_nodename(self.ctxt,
                                                   self.compute_host)
        return {d.address: d for d in objects.PciDeviceList
                .get_by_compute_node(self.ctxt, node.id)}

    def claimed(self, server):
        return [d for d in self.pci_devices().values()
                if d.instance_uuid == server['id']]

    def given_xml(self):
        """The last domain the driver gave libvirt, schema-checked."""
        xml = self.created_xml[-1]
        xml_schema.assert_valid_domain(self, xml)
        return etree.fromstring(xml)

    def held_xml(self, server):
        return etree.fromstring(self.domain(server).XMLDesc(0))

    def boot(self, flavor_extra=None, networks='none', expected='ACTIVE'):
        flavor_id = self._create_flavor(
            name='nfv.%d' % len(self.created_xml), vcpu=1, memory_mb=256,
            disk=1, extra_spec=flavor_extra)
        return self._create_server(image_uuid=self.image_id,
                                   flavor_id=flavor_id, networks=networks,
                                   expected_state=expected)

    def expect_build_error(self, **kw):
        server = self.boot(expected='ERROR', **kw)
        self.assertFalse(self.domain_exists(server))
        self.assertFalse(os.path.exists(
            os.path.join(self.instances_path, server['id'])))
        return server['fault']['message']


class PCIPassthroughTest(SRIOVTestBase):

    def setUp(self):
        super().setUp()
        self.start_compute(self.pci_info)

    def test_flavor_alias_vf(self):
        server = self.boot({'pci_passthrough:alias': 'nic-vf:1'})
        [claimed] = self.claimed(server)
        self.assertEqual(('type-VF', 'allocated'),
                         (claimed.dev_type, claimed.status))
        [hostdev] = self.given_xml().findall('./devices/hostdev')
        self.assertEqual(('subsystem', 'pci', 'yes'), (
            hostdev.get('mode'), hostdev.get('type'), hostdev.get('managed')))
        self.assertEqual(claimed.address, source_address(hostdev))
        [held] = self.held_xml(server).findall('./devices/hostdev')
        self.assertEqual(claimed.address, source_address(held))

        self.api.delete_server(server['id'])
        self._wait_until_deleted(server)
        self.assertEqual('available',
                         self.pci_devices()[claimed.address].status)

    def test_direct_port_gets_its_vf(self):
        port = self.add_port('direct', vlan=100)
        server = self.boot(networks=[{'port': port['id']}])
        [claimed] = self.claimed(server)
        self.assertEqual('type-VF', claimed.dev_type)
        # Nova told Neutron which VF; the guest got that VF.
        profile = self.neutron.show_port(port['id'])['port'][
            'binding:profile']
        self.assertEqual(claimed.address, profile['pci_slot'])
        [nic] = self.given_xml().findall('./devices/interface')
        self.assertEqual(('hostdev', 'yes'),
                         (nic.get('type'), nic.get('managed')))
        self.assertEqual(claimed.address, source_address(nic))
        self.assertEqual(port['mac_address'],
                         nic.find('mac').get('address'))
        self.assertEqual('100', nic.find('./vlan/tag').get('id'))
        # The fake names the VF by its node device (and refuses a
        # hostdev interface that is not a VF when the domain starts).
        [held] = self.held_xml(server).findall('./devices/interface')
        self.assertEqual(nodedev(claimed.address),
                         held.find('source').get('hostdev'))
        # The guest learns the port's VLAN from Nova's metadata: an
        # untagged port is listed for it.
        [device] = objects.Instance.get_by_uuid(
            self.ctxt, server['id'], expected_attrs=['device_metadata']
        ).device_metadata.devices
        self.assertEqual((port['mac_address'], 100, False),
                         (device.mac, device.vlan, device.vf_trusted))

    def test_macvtap_port_sets_vf_mac_and_vlan(self):
        port = self.add_port('macvtap', vlan=200)
        server = self.boot(networks=[{'port': port['id']}])
        [claimed] = self.claimed(server)
        [nic] = self.given_xml().findall('./devices/interface')
        self.assertEqual('direct', nic.get('type'))
        # The VF's netdev (LibvirtFixture's sysfs stand-in names it).
        self.assertEqual(
            {'dev': 'fake_pf_interface_name', 'mode': 'passthrough'},
            dict(nic.find('source').attrib))
        # Through the PF, as Nova does it: VF 1 of the PF's netdev.
        self.libvirt.mock_set_device_macaddr_and_vlan.assert_called_with(
            'fake_pf_interface_name', 1, port['mac_address'], 200)

        self.api.delete_server(server['id'])
        self._wait_until_deleted(server)
        # The freed VF keeps no guest MAC.
        self.libvirt.mock_set_device_macaddr_and_vlan.assert_called_with(
            'fake_pf_interface_name', 1, '00:00:00:00:00:00', 0)
        self.assertEqual('available',
                         self.pci_devices()[claimed.address].status)

    def test_direct_physical_port_takes_the_whole_pf(self):
        port = self.add_port('direct-physical', vif_type='hostdev_physical',
                             vlan=None)
        server = self.boot(networks=[{'port': port['id']}])
        [pf] = self.claimed(server)
        self.assertEqual('type-PF', pf.dev_type)
        self.assertEqual([], self.given_xml().findall('./devices/interface'))
        [hostdev] = self.given_xml().findall('./devices/hostdev')
        self.assertEqual(pf.address, source_address(hostdev))
        # Its VFs cannot be given to anyone while the PF is taken.
        devices = self.pci_devices().values()
        vfs = [d for d in devices if d.parent_addr == pf.address]
        self.assertEqual(4, len(vfs))
        self.assertEqual({'unavailable'}, {d.status for d in vfs})
        # The other PF's VFs still can: 4 VF servers fit, a 5th does not.
        for _ in range(4):
            self.boot({'pci_passthrough:alias': 'nic-vf:1'})
        fault = self.expect_build_error(
            flavor_extra={'pci_passthrough:alias': 'nic-vf:1'})
        self.assertIn('No valid host', fault)

    def test_hot_attach_and_detach_sriov_port(self):
        server = self.boot()
        port = self.add_port('direct', vlan=300)
        self.api.attach_interface(
            server['id'], {'interfaceAttachment': {'port_id': port['id']}})
        [claimed] = self.claimed(server)
        self.assertEqual('type-VF', claimed.dev_type)
        [nic] = self.held_xml(server).findall('./devices/interface')
        self.assertEqual(('hostdev', port['mac_address']),
                         (nic.get('type'), nic.find('mac').get('address')))

        self.api.detach_interface(server['id'], port['id'])
        # Nova frees the VF once the driver detached it.
        self.wait_until(lambda: not self.claimed(server), 'VF freed')
        self.assertEqual([], self.held_xml(server).findall(
            './devices/interface'))
        self.assertEqual('available',
                         self.pci_devices()[claimed.address].status)

    def test_suspend_gives_back_host_devices(self):
        # libvirt cannot save a domain with assigned host devices: they
        # leave the running guest before the save and come back on resume.
        port = self.add_port('direct')
        server = self.boot({'pci_passthrough:alias': 'nic-vf:1'},
                           networks=[{'port': port['id']}])
        alias_vf = [d.address for d in self.claimed(server)
                    if d.address != self.neutron.show_port(port['id'])[
                        'port']['binding:profile']['pci_slot']]
        self.api.post_server_action(server['id'], {'suspend': None})
        self._wait_for_state_change(server, 'SUSPENDED')
        held = self.held_xml(server)
        self.assertEqual([], held.findall('./devices/hostdev'))
        self.assertEqual([], held.findall('./devices/interface'))
        self.assertTrue(self.domain(server).hasManagedSaveImage(0))

        self.api.post_server_action(server['id'], {'resume': None})
        self._wait_for_state_change(server, 'ACTIVE')
        held = self.held_xml(server)
        self.assertEqual(alias_vf, [source_address(h) for h in
                                    held.findall('./devices/hostdev')])
        self.assertEqual([port['mac_address']], [
            m.get('address') for m in held.findall('./devices/interface/mac')])
        # Still the same claim.
        self.assertEqual(2, len(self.claimed(server)))

    def wait_until(self, predicate, what, timeout=60):
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                self.fail('%s: not after %d s' % (what, timeout))
            time.sleep(0.1)


class BadDeviceTest(SRIOVTestBase):
    """A claimed device the host lost, and ports we cannot wire: ERROR with
    the device or port named, nothing left behind."""

    def test_claimed_device_vanished(self):
        self.start_compute(self.pci_info)
        # The VFs disappear after the PCI tracker last looked.
        for name in [n for n, d in self.pci_info.devices.items()
                     if d.dev_type == 'VF']:
            del self.pci_info.devices[name]
        fault = self.expect_build_error(
            flavor_extra={'pci_passthrough:alias': 'nic-vf:1'})
        self.assertRegex(
            fault, r'PCI device 0000:81:0[0-9a-f]\.[0-7] claimed for the '
                   r"flavor's PCI alias request is not on this host")

    def test_vf_whose_pf_lost_sriov(self):
        self.start_compute(self.pci_info)
        for name, dev in list(self.pci_info.devices.items()):
            if dev.dev_type == 'PF':
                dev.generate_xml(skip_capability=True)
            else:
                del self.pci_info.devices[name]
        port = self.add_port('direct')
        fault = self.expect_build_error(networks=[{'port': port['id']}])
        self.assertRegex(
            fault, r'VF 0000:81:0[0-9a-f]\.[0-7] claimed for port %s is '
                   r'gone: its PF 0000:81:0[01]\.0 no longer has SR-IOV'
                   % port['id'])

    def test_unknown_vnic_type(self):
        self.start_compute(self.pci_info)
        port = self.add_port('smartnic-9000', vif_type='ovs', vlan=None,
                             network=self.neutron.network_1)
        fault = self.expect_build_error(networks=[{'port': port['id']}])
        self.assertIn('Port %s has vnic_type smartnic-9000' % port['id'],
                      fault)

    def test_unsupported_vif_type(self):
        self.start_compute(self.pci_info)
        port = self.add_port('normal', vif_type='midonet', vlan=None,
                             network=self.neutron.network_1)
        fault = self.expect_build_error(networks=[{'port': port['id']}])
        self.assertIn('does not support VIF type midonet (vnic_type '
                      'normal) of port %s' % port['id'], fault)

    def test_plugged_port_unplugged_when_the_domain_fails(self):
        self.start_compute(self.pci_info)
        port = self.add_port('macvtap', vlan=200)
        error = fakelibvirt.make_libvirtError(
            fakelibvirt.libvirtError, 'QEMU exited: vfio error',
            error_code=fakelibvirt.VIR_ERR_INTERNAL_ERROR,
            error_message='QEMU exited: vfio error')
        with mock.patch.object(fakelibvirt.Domain, 'createWithFlags',
                               side_effect=error):
            fault = self.expect_build_error(networks=[{'port': port['id']}])
        self.assertIn('QEMU exited: vfio error', fault)
        # Plugged (the VF got the guest's MAC and VLAN), then unplugged by
        # the failed spawn itself; Nova's own clean-up of the failed build
        # unplugs again, which changes nothing.
        plug = mock.call('fake_pf_interface_name', 1, port['mac_address'],
                         200)
        reset = mock.call('fake_pf_interface_name', 1, '00:00:00:00:00:00',
                          0)
        calls = self.libvirt.mock_set_device_macaddr_and_vlan.call_args_list
        self.assertEqual([plug, reset], calls[:2])
        self.assertEqual([reset] * (len(calls) - 1), calls[1:])
