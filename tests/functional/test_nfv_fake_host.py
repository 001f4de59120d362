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

"""NFV flavors through Nova's API on a two-node host this machine lacks.

The host is Nova's fake libvirt: 2 NUMA nodes of 4 cores x 2 threads, 2M
and 1G pages on each. For each flavor family the server boots, and the
domain XML the driver gave libvirt is compared with the claim Nova stored
in its database (pins, cells, pages, emulator threads, realtime) and the
allocation in Placement.
"""

from lxml import etree
from nova import objects
from nova.tests.fixtures import libvirt as fakelibvirt
from nova.virt import hardware

from tests.functional import fake_host
from tests.unit import xml_schema

GIB_PAGE = 1048576


def host_info(threads=2):
    """2 nodes x 4 cores x ``threads``, 16 GiB per node: 4K pages, 1024
    2M pages and 8 1G pages on each node."""
    pages = fakelibvirt.create_mempages(
        [(4, 2 * 1024 * 256), (2048, 1024), (GIB_PAGE, 8)])
    return fakelibvirt.HostInfo(
        cpu_nodes=2, cpu_sockets=1, cpu_cores=4, cpu_threads=threads,
        kB_mem=2 * 16 * 1024 * 1024, mempages={0: pages, 1: pages})


def cpus(text):
    return hardware.parse_cpu_spec(text)


class NFVFlavorTestCase(fake_host.FakeLibvirtTestCase):
    SHARED, DEDICATED = '0-1,8-9', '2-7,10-15'
    THREADS = 2

    def setUp(self):
        super().setUp()
        self.flags(cpu_shared_set=self.SHARED,
                   cpu_dedicated_set=self.DEDICATED, group='compute')
        self.start_compute(host_info=host_info(self.THREADS))
        self.image_id = self.create_image()

    def boot(self, vcpus, ram, **extra_specs):
        flavor_id = self._create_flavor(
            vcpu=vcpus, memory_mb=ram, disk=1, ephemeral=0,
            extra_spec={k.replace('hw_', 'hw:', 1): str(v)
                        for k, v in extra_specs.items()})
        server = self._create_server(image_uuid=self.image_id,
                                     flavor_id=flavor_id, networks='none')
        return self._wait_for_state_change(server, 'ACTIVE')

    def xml(self, server):
        """The domain the driver gave libvirt, schema-checked."""
        root = self.given_xml(server)
        xml_schema.assert_valid_domain(
            self, etree.tostring(root, encoding='unicode'))
        return root

    def allocation(self, server):
        allocations = self.placement.get(
            '/allocations/%s' % server['id']).body['allocations']
        return list(allocations.values())[0]['resources']

    def assert_realises_claim(self, server):
        """The domain's cells, memory binding and pins are the claim's;
        returns (claim, domain XML)."""
        claim, xml = self.claim(server), self.xml(server)
        cells = xml.findall('cpu/numa/cell')
        self.assertEqual(len(claim.cells), len(cells))
        pins = {int(p.get('vcpu')): cpus(p.get('cpuset'))
                for p in xml.findall('cputune/vcpupin')}
        for index, cell in enumerate(claim.cells):
            self.assertEqual(cell.total_cpus, cpus(cells[index].get('cpus')))
            self.assertEqual(str(cell.id), xml.find(
                "numatune/memnode[@cellid='%d']" % index).get('nodeset'))
            shared = cpus(self.SHARED) & self.cell_cpus(cell.id)
            for vcpu in cell.total_cpus:
                pinning = cell.cpu_pinning or {}
                expected = ({pinning[vcpu]} if vcpu in pinning else shared)
                self.assertEqual(expected, pins[vcpu])
        self.assertLessEqual(
            {cpu for c in claim.cells for cpu in (c.cpu_pinning or {})
             .values()}, cpus(self.DEDICATED))
        return claim, xml

    def cell_cpus(self, cell_id):
        per_node = 4 * self.THREADS
        return set(range(cell_id * per_node, (cell_id + 1) * per_node))


class NFVFlavorTest(NFVFlavorTestCase):

    def test_dedicated(self):
        server = self.boot(4, 2048, hw_cpu_policy='dedicated')
        claim, xml = self.assert_realises_claim(server)
        self.assertEqual({'PCPU': 4, 'MEMORY_MB': 2048, 'DISK_GB': 1},
                         self.allocation(server))
        self.assertEqual(set(claim.cells[0].cpu_pinning.values()),
                         cpus(xml.find('cputune/emulatorpin').get('cpuset')))

    def test_mixed(self):
        server = self.boot(4, 2048, hw_cpu_policy='mixed',
                           hw_cpu_dedicated_mask='^0-1')
        claim, _xml = self.assert_realises_claim(server)
        self.assertEqual({2, 3}, set(claim.cells[0].cpu_pinning))
        self.assertEqual({'VCPU': 2, 'PCPU': 2, 'MEMORY_MB': 2048,
                          'DISK_GB': 1}, self.allocation(server))

    def test_realtime_with_isolated_emulator_threads(self):
        server = self.boot(4, 2048, hw_cpu_policy='dedicated',
                           hw_cpu_realtime='yes', hw_cpu_realtime_mask='^0',
                           hw_emulator_threads_policy='isolate',
                           hw_mem_page_size='2MB')
        claim, xml = self.assert_realises_claim(server)
        reserved = claim.cells[0].cpuset_reserved
        self.assertEqual(reserved, cpus(
            xml.find('cputune/emulatorpin').get('cpuset')))
        self.assertFalse(reserved & set(claim.cells[0].cpu_pinning.values()))
        self.assertEqual('1-3', xml.find('cputune/vcpusched').get('vcpus'))
        self.assertIsNotNone(xml.find('memoryBacking/locked'))
        self.assertEqual(5, self.allocation(server)['PCPU'])

    def test_two_cells_in_1g_pages(self):
        server = self.boot(4, 4096, hw_numa_nodes=2,
                           hw_mem_page_size='1GB')
        claim, xml = self.assert_realises_claim(server)
        self.assertEqual({0, 1}, {cell.id for cell in claim.cells})
        self.assertEqual(
            [(str(GIB_PAGE), str(i)) for i in range(2)],
            [(p.get('size'), p.get('nodeset')) for p in
             xml.findall('memoryBacking/hugepages/page')])
        # The host's 1G pages are used up by the claim.
        node = objects.ComputeNode.get_by_nodename(self.ctxt,
                                                   self.compute_host)
        used = {cell.id: next(p.used for p in cell.mempages
                              if p.size_kb == GIB_PAGE)
                for cell in objects.NUMATopology.obj_from_db_obj(
                    node.numa_topology).cells}
        self.assertEqual({0: 2, 1: 2}, used)


class IsolateThreadPolicyTest(NFVFlavorTestCase):
    """Nova keeps ``isolate`` guests off SMT hosts: a host without SMT."""

    THREADS = 1
    SHARED, DEDICATED = '0,4', '1-3,5-7'

    def test_isolate(self):
        server = self.boot(3, 1024, hw_cpu_policy='dedicated',
                           hw_cpu_thread_policy='isolate')
        claim, _xml = self.assert_realises_claim(server)
        self.assertEqual(3, len(set(claim.cells[0].cpu_pinning.values())))
