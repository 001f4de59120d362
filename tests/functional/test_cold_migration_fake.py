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

"""Cold migration between host shapes this machine lacks, on Nova's fake
libvirt: two hosts of two NUMA nodes with SR-IOV VFs (the harness of
test_live_migration_fake), sharing one instances directory, so the disks
are copied locally. tests/functional/test_cold_migration.py copies them
between two real hosts.

What matters here is the claim: the domain on the destination realises
the destination's NUMA cells, pins, pages and PCI device, and a revert
brings back the source's, exactly.
"""

from lxml import etree
from nova import objects
from nova.tests.fixtures import libvirt as fakelibvirt

from tests.functional import test_live_migration_fake as fake_hosts
from tests.functional import test_sriov
from tests.unit import xml_schema


def realised(root):
    """(vCPU pins, guest cell -> host nodes, page sizes, hostdev
    addresses) of a domain."""
    return (
        {int(pin.get('vcpu')): {int(pin.get('cpuset'))}
         for pin in root.findall('cputune/vcpupin')},
        {int(node.get('cellid')): {int(node.get('nodeset'))}
         for node in root.findall('numatune/memnode')},
        [int(page.get('size'))
         for page in root.findall('memoryBacking/hugepages/page')],
        [test_sriov.source_address(dev)
         for dev in root.findall('devices/hostdev')])


class ColdMigrationFakeTest(fake_hosts.FakeTwoHostsTestCase):

    def setUp(self):
        super().setUp()
        self.start_host('host_a', pci_info=fakelibvirt.HostPCIDevicesInfo(
            num_pfs=1, num_vfs=2))

    def given_xml(self, server):
        root = super().given_xml(server)
        xml_schema.assert_valid_domain(
            self, etree.tostring(root, encoding='unicode'))
        return root

    def migrate(self, server, host):
        self.api.post_server_action(server['id'],
                                    {'migrate': {'host': host}})

    def expected(self, server):
        """What the domain must realise: the claim in Nova's database
        (while a move is not confirmed, the instance holds its devices on
        both hosts: the domain has those of the host it is on)."""
        instance = objects.Instance.get_by_uuid(
            self.ctxt, server['id'],
            expected_attrs=['numa_topology', 'pci_devices'])
        node = objects.ComputeNode.get_by_nodename(self.ctxt, instance.node)
        pins, nodes = {}, {}
        # A fitted guest cell carries the id of its host cell.
        for guest_cell, cell in enumerate(instance.numa_topology.cells):
            pins.update({vcpu: {pcpu}
                         for vcpu, pcpu in cell.cpu_pinning.items()})
            nodes[guest_cell] = {cell.id}
        return (pins, nodes,
                [cell.pagesize for cell in instance.numa_topology.cells],
                [dev.address for dev in instance.pci_devices
                 if dev.compute_node_id == node.id])

    def boot_nfv_guest(self):
        return self.boot('host_a', vcpus=2, hw_mem_page_size='2MB', **{
            'pci_passthrough:alias': 'lm-vf:1'})

    def test_new_claim_then_revert_to_the_old_one(self):
        self.start_host('host_b', pci_info=fakelibvirt.HostPCIDevicesInfo(
            num_pfs=1, num_vfs=2, bus=0x82))
        # Another guest of the same flavor holds host_b's first CPUs and
        # one of its VFs.
        self.boot('host_b', vcpus=2, hw_mem_page_size='2MB', **{
            'pci_passthrough:alias': 'lm-vf:1'})
        server = self.boot_nfv_guest()
        before = self.expected(server)
        self.assertEqual(before, realised(self.given_xml(server)))
        self.assertEqual(({0: {0}, 1: {1}}, [2048]), (before[0], before[2]))

        self.migrate(server, 'host_b')
        server = self._wait_for_state_change(server, 'VERIFY_RESIZE')
        self.assertEqual('host_b', server['OS-EXT-SRV-ATTR:host'])
        after = self.expected(server)
        self.assertNotEqual(before[0], after[0])
        self.assertTrue(after[3][0].startswith('0000:82:'), after)
        self.assertEqual(after, realised(self.given_xml(server)))
        self.assertTrue(self.has_domain('host_b', server))
        self.assertFalse(self.has_domain('host_a', server))

        self.api.post_server_action(server['id'], {'revertResize': None})
        server = self._wait_for_state_change(server, 'ACTIVE')
        self.assertEqual('host_a', server['OS-EXT-SRV-ATTR:host'])
        self.assertEqual(before, self.expected(server))
        self.assertEqual(before, realised(self.given_xml(server)))
        self.assertFalse(self.has_domain('host_b', server))
        self.run_periodics()
        # Only the other guest's CPUs stay pinned on host_b.
        [other] = self.hosts['host_b']._vms.values()
        self.assertEqual(
            set().union(*self.expected(
                {'id': other.UUIDString()})[0].values()),
            set().union(*self.pinned_cpus('host_b').values()))

    def test_confirm_frees_the_source(self):
        self.start_host('host_b', pci_info=fakelibvirt.HostPCIDevicesInfo(
            num_pfs=1, num_vfs=2, bus=0x82))
        server = self.boot_nfv_guest()
        source_device = self.expected(server)[3][0]
        self.migrate(server, 'host_b')
        server = self._wait_for_state_change(server, 'VERIFY_RESIZE')
        self.api.post_server_action(server['id'], {'confirmResize': None})
        server = self._wait_for_state_change(server, 'ACTIVE')
        self.assertEqual(self.expected(server),
                         realised(self.given_xml(server)))
        self.run_periodics()
        self.assertEqual({0: set(), 1: set()}, self.pinned_cpus('host_a'))
        self.assertEqual({'host_b'}, self.allocation_hosts(server))
        [device] = [d for d in objects.PciDeviceList.get_by_compute_node(
            self.ctxt, objects.ComputeNode.get_by_nodename(
                self.ctxt, 'host_a').id) if d.address == source_device]
        self.assertEqual('available', device.status)

    def refused(self, server):
        """A move Nova cannot place: the user sees No valid host, the
        guest stays where it was, untouched."""
        xml = self.given_xml(server)
        self.migrate(server, 'host_b')
        event = self._wait_for_action_fail_completion(
            server, 'migrate', 'conductor_migrate_server')
        self.assertIn('No valid host', event['details'])
        server = self._wait_for_state_change(server, 'ACTIVE')
        self.assertEqual('host_a', server['OS-EXT-SRV-ATTR:host'])
        self.assertTrue(self.has_domain('host_a', server))
        self.assertFalse(self.has_domain('host_b', server))
        self.assertEqual(1, self.hosts['host_a'].lookupByUUIDString(
            server['id']).info()[0])
        self.assertEqual(realised(xml), realised(self.given_xml(server)))

    def test_destination_without_the_page_size(self):
        self.start_host('host_b', host_info=fake_hosts.two_node_host(
            mempages=[fakelibvirt.create_mempages(
                [(4, 2 * 1024 * 1024)])] * 2),
            pci_info=fakelibvirt.HostPCIDevicesInfo(num_pfs=1, num_vfs=2,
                                                    bus=0x82))
        self.refused(self.boot_nfv_guest())

    def test_destination_without_free_pinned_cpus(self):
        self.start_host('host_b', pci_info=fakelibvirt.HostPCIDevicesInfo(
            num_pfs=1, num_vfs=2, bus=0x82))
        for _ in range(2):
            self.boot('host_b', vcpus=4)
        self.refused(self.boot_nfv_guest())

    def test_destination_without_a_pci_device(self):
        self.start_host('host_b')
        self.refused(self.boot_nfv_guest())
