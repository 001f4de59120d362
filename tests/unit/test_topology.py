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

"""The host's CPU sets and NUMA topology, as Nova's scheduler sees them.

The main host is ``data/topology-2socket-snc2-smt.xml``: 2 sockets, 4 NUMA
nodes, 32 CPUs whose thread siblings are numbered as Linux numbers them
(0 and 16 share a core), 1G and 2M pages on every node. Other shapes come
from Nova's own fake libvirt (adjacent siblings, no SMT, no NUMA). Options
are set with oslo.config's fixture, read as nova-compute reads them; the
last tests hand the result to Nova's own NUMA fitting.
"""

import os

import ddt
import fixtures
import nova.conf
from nova import exception as nova_exception
from nova import objects
from nova.objects import fields
from nova.tests.fixtures import libvirt as fakelibvirt
from nova.tests.fixtures import libvirt_data as fake_libvirt_data
from nova.virt import hardware
from nova.virt.libvirt import config as vconfig
from oslo_config import fixture as config_fixture
import testtools

from nova_kvmx.host import topology

objects.register_all()

CONF = nova.conf.CONF
DATA = os.path.join(os.path.dirname(__file__), 'data')
ALL_CPUS = range(32)
GiB_PAGES = 1048576
CELL_CPUS = ['0-3,16-19', '4-7,20-23', '8-11,24-27', '12-15,28-31']


def cpus(spec):
    return hardware.parse_cpu_spec(spec) if spec else set()


def caps_from_file(name):
    caps = vconfig.LibvirtConfigCaps()
    with open(os.path.join(DATA, name)) as f:
        caps.parse_str(f.read())
    return caps


def snc_host():
    return caps_from_file('topology-2socket-snc2-smt.xml')


def fake_host(cpu_nodes=2, cpu_sockets=1, cpu_cores=2, cpu_threads=1,
              numa=True):
    """Capabilities XML of Nova's fake libvirt, parsed as Nova parses it."""
    cells = ''
    if numa:
        cells = fakelibvirt.NUMATopology(
            cpu_nodes=cpu_nodes, cpu_sockets=cpu_sockets,
            cpu_cores=cpu_cores, cpu_threads=cpu_threads,
            kb_mem=16 * 1024 * 1024,
            mempages=[fakelibvirt.create_mempages(
                [(4, 524288), (2048, 512), (GiB_PAGES, 1)])] * (
                    cpu_nodes * cpu_sockets)).to_xml()
    xml = '<capabilities>%s</capabilities>' % (
        fake_libvirt_data.CAPABILITIES_HOST_X86_64_TEMPLATE % {
            'sockets': cpu_sockets, 'cores': cpu_cores,
            'threads': cpu_threads, 'topology': cells})
    caps = vconfig.LibvirtConfigCaps()
    caps.parse_str(xml)
    return caps


def smt_fake_host():
    """2 sockets x 2 nodes x 2 cores x 2 threads, siblings {0,1}, {2,3}..."""
    return fake_host(cpu_sockets=2, cpu_threads=2)


def no_smt_fake_host():
    """2 nodes x 4 cores, one thread each."""
    return fake_host(cpu_cores=4)


class ConfigTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.conf = self.useFixture(config_fixture.Config(CONF))
        self.logger = self.useFixture(fixtures.FakeLogger())

    def configure(self, cpu_shared_set=None, cpu_dedicated_set=None,
                  vcpu_pin_set=None, reserved_huge_pages=None,
                  reserved_host_cpus=0):
        self.conf.config(cpu_shared_set=cpu_shared_set,
                         cpu_dedicated_set=cpu_dedicated_set,
                         group='compute')
        self.conf.config(vcpu_pin_set=vcpu_pin_set,
                         reserved_huge_pages=reserved_huge_pages,
                         reserved_host_cpus=reserved_host_cpus)

    def host_topology(self, caps=None, online=ALL_CPUS, **options):
        """The NUMATopology nova-compute would report with ``options``."""
        self.configure(**options)
        return topology.numa_topology(
            caps or snc_host(), topology.cpu_sets(online),
            CONF.reserved_huge_pages)


@ddt.ddt
class CPUSetsTest(ConfigTestCase):

    @ddt.data(
        # options, shared, dedicated, pinnable
        ({}, '0-31', '', ''),
        ({'cpu_shared_set': '0-1,16-17'}, '0-1,16-17', '', ''),
        ({'cpu_shared_set': '0-1,16-17', 'cpu_dedicated_set': '2-15,18-31'},
         '0-1,16-17', '2-15,18-31', '2-15,18-31'),
        ({'cpu_dedicated_set': '4-15,20-31'}, '', '4-15,20-31', '4-15,20-31'),
        # Nova's documented legacy: VCPU inventory and pinned guests alike.
        ({'vcpu_pin_set': '2-15'}, '2-15', '', '2-15'),
        # vcpu_pin_set wins over cpu_shared_set, as in Nova.
        ({'vcpu_pin_set': '2-15', 'cpu_shared_set': '0-1'}, '2-15', '',
         '2-15'),
    )
    @ddt.unpack
    def test_sets(self, options, shared, dedicated, pinnable):
        self.configure(**options)
        sets = topology.cpu_sets(ALL_CPUS)
        self.assertEqual(
            (cpus(shared), cpus(dedicated), cpus(pinnable)),
            (sets.shared, sets.dedicated, sets.pinnable))

    def test_vcpu_pin_set_with_shared_set_warns(self):
        self.configure(vcpu_pin_set='2-15', cpu_shared_set='0-1')
        topology.cpu_sets(ALL_CPUS)
        self.assertIn("'vcpu_pin_set' is set", self.logger.output)

    def test_sets_are_frozen(self):
        sets = topology.split_cpus(ALL_CPUS, shared={0}, dedicated={1})
        self.assertRaises(AttributeError, setattr, sets, 'shared', {2})
        self.assertIsInstance(sets.shared, frozenset)

    @ddt.data(
        # options, online CPUs, what the message must name
        ({'vcpu_pin_set': '0-3', 'cpu_dedicated_set': '4-7'}, ALL_CPUS,
         ["'vcpu_pin_set'", "'[compute] cpu_dedicated_set'"]),
        ({'cpu_shared_set': '0-5', 'cpu_dedicated_set': '4-9'}, ALL_CPUS,
         ['disjoint', 'both contain CPUs 4-5']),
        ({'cpu_shared_set': '0-1,30', 'cpu_dedicated_set': '2-3'}, range(30),
         ["'[compute] cpu_shared_set' names CPUs 30 ", 'online: 0-29']),
        ({'cpu_dedicated_set': '2-15,32-33'}, ALL_CPUS,
         ["'[compute] cpu_dedicated_set' names CPUs 32-33 "]),
        ({'vcpu_pin_set': '0-3,40'}, ALL_CPUS,
         ["'vcpu_pin_set' names CPUs 40 "]),
        ({'cpu_shared_set': '0-x'}, ALL_CPUS,
         ["Invalid '[compute] cpu_shared_set'", "'0-x'"]),
        ({'cpu_dedicated_set': '0,^0'}, ALL_CPUS,
         ["'[compute] cpu_dedicated_set'"]),
        ({'cpu_dedicated_set': '2-15', 'reserved_host_cpus': 2}, ALL_CPUS,
         ["'[DEFAULT] reserved_host_cpus'", 'unset it']),
    )
    @ddt.unpack
    def test_invalid(self, options, online, fragments):
        self.configure(**options)
        ex = self.assertRaises(nova_exception.InvalidConfiguration,
                               topology.cpu_sets, online)
        for fragment in fragments:
            self.assertIn(fragment, str(ex))


@ddt.ddt
class NUMATopologyTest(ConfigTestCase):

    @ddt.data(
        # options, (cpuset, pcpuset) of each cell
        ({}, [(c, '') for c in CELL_CPUS]),
        ({'cpu_shared_set': '0-1,16-17,8-9,24-25',
          'cpu_dedicated_set': '2-7,18-23,10-15,26-31'},
         [('0-1,16-17', '2-3,18-19'), ('', '4-7,20-23'),
          ('8-9,24-25', '10-11,26-27'), ('', '12-15,28-31')]),
        # Cell 0 has no usable CPU and is still reported.
        ({'cpu_dedicated_set': '4-15,20-31'},
         [('', ''), ('', '4-7,20-23'), ('', '8-11,24-27'),
          ('', '12-15,28-31')]),
        ({'vcpu_pin_set': '2-15'},
         [('2-3', '2-3'), ('4-7', '4-7'), ('8-11', '8-11'),
          ('12-15', '12-15')]),
    )
    @ddt.unpack
    def test_cpus_per_cell(self, options, expected):
        host = self.host_topology(**options)
        self.assertEqual(
            [(cpus(s), cpus(d)) for s, d in expected],
            [(cell.cpuset, cell.pcpuset) for cell in host.cells])

    def test_cells(self):
        host = self.host_topology(cpu_dedicated_set='4-15,20-31')
        self.assertEqual([0, 1, 2, 3], [cell.id for cell in host.cells])
        self.assertEqual([0, 0, 1, 1], [cell.socket for cell in host.cells])
        self.assertEqual([63918, 64495, 64495, 64479],
                         [cell.memory for cell in host.cells])
        for cell in host.cells:
            self.assertEqual((0, 0, set()), (
                cell.cpu_usage, cell.memory_usage, cell.pinned_cpus))
            self.assertEqual(set(), cell.network_metadata.physnets)
            self.assertFalse(cell.network_metadata.tunneled)

    def test_cell_spanning_sockets_has_no_socket(self):
        caps = snc_host()
        caps.host.topology.cells[0].cpus[-1].socket_id = 1
        host = topology.numa_topology(
            caps, topology.split_cpus(ALL_CPUS), [])
        self.assertEqual([None, 0, 1, 1], [c.socket for c in host.cells])
        self.assertIn('NUMA node 0 spans sockets 0-1', self.logger.output)

    @ddt.data(
        # host, options, cell, siblings reported for it
        (snc_host, {}, 0, [{0, 16}, {1, 17}, {2, 18}, {3, 19}]),
        # Shared and dedicated threads of one core: both are usable.
        (snc_host, {'cpu_shared_set': '0-1', 'cpu_dedicated_set': '2-3,16-19'},
         0, [{0, 16}, {1, 17}, {2, 18}, {3, 19}]),
        # 16-19 are neither shared nor dedicated: cut out, as Nova does.
        (snc_host, {'cpu_shared_set': '0-3', 'cpu_dedicated_set': '4-15'},
         0, [{0}, {1}, {2}, {3}]),
        (snc_host, {'cpu_shared_set': '0-3', 'cpu_dedicated_set': '4-15'},
         1, [{4}, {5}, {6}, {7}]),
        (snc_host, {'cpu_dedicated_set': '4-15,20-31'}, 0, []),
        (snc_host, {'cpu_dedicated_set': '4-15,20-31'},
         3, [{12, 28}, {13, 29}, {14, 30}, {15, 31}]),
        (smt_fake_host, {}, 1, [{4, 5}, {6, 7}]),
        (smt_fake_host, {'cpu_dedicated_set': '4-6'}, 1, [{4, 5}, {6}]),
        (no_smt_fake_host, {}, 1, [{4}, {5}, {6}, {7}]),
    )
    @ddt.unpack
    def test_siblings(self, host, options, cell, expected):
        host = self.host_topology(host(), **options)
        self.assertEqual(expected, host.cells[cell].siblings)

    def pages(self, host):
        return [[(p.size_kb, p.total, p.used, p.reserved) for p in c.mempages]
                for c in host.cells]

    def test_pages_without_reservation(self):
        self.assertEqual(
            [[(4, 10071578, 0, 0), (2048, 4096, 0, 0), (GiB_PAGES, 16, 0, 0)],
             [(4, 10219435, 0, 0), (2048, 4096, 0, 0), (GiB_PAGES, 16, 0, 0)],
             [(4, 10219435, 0, 0), (2048, 4096, 0, 0), (GiB_PAGES, 16, 0, 0)],
             [(4, 10215286, 0, 0), (2048, 4096, 0, 0), (GiB_PAGES, 16, 0, 0)]],
            self.pages(self.host_topology()))

    def test_pages_reserved_as_configured(self):
        # The option's values are strings; sizes in KiB or with a unit.
        host = self.host_topology(reserved_huge_pages=[
            'node:0,size:2048,count:64', 'node:0,size:1GB,count:2',
            'node:1,size:2MB,count:4096', 'node:3,size:1048576,count:16'])
        self.assertEqual(
            [[0, 64, 2], [0, 4096, 0], [0, 0, 0], [0, 0, 16]],
            [[p.reserved for p in c.mempages] for c in host.cells])
        self.assertEqual([4032, 14], [p.free for p in host.cells[0].mempages
                                      if p.size_kb > 4])

    def test_pages_reserved_from_ints(self):
        caps = snc_host()
        host = topology.numa_topology(
            caps, topology.split_cpus(ALL_CPUS),
            [{'node': 2, 'size': 2048, 'count': 64},
             {'node': 2, 'size': 2048, 'count': 32}])  # the last one wins
        self.assertEqual([0, 32, 0],
                         [p.reserved for p in host.cells[2].mempages])

    @ddt.data(
        ('node:0,size:1GB,count:17',
         'reserves 17 pages of 1048576 KiB on NUMA node 0, which has 16'),
        ('node:2,size:2048,count:4097',
         'reserves 4097 pages of 2048 KiB on NUMA node 2, which has 4096'),
        ('node:4,size:2048,count:1',
         'names NUMA node 4, which this host does not have (nodes: 0-3)'),
        ('node:0,size:16384,count:1',
         'names 16384 KiB pages on NUMA node 0, which has pages of 4, '
         '2048, 1048576 KiB only'),
        ('node:0,size:2048', "Invalid 'reserved_huge_pages' value"),
        ('node:0,size:2048,count:many', "Invalid 'reserved_huge_pages'"),
        ('node:0,size:2048,count:-1', "Invalid 'reserved_huge_pages'"),
        ('node:zero,size:2048,count:1', "Invalid 'reserved_huge_pages'"),
        ('node:0,size:huge,count:1', "Invalid 'reserved_huge_pages'"),
    )
    @ddt.unpack
    def test_invalid_reservation(self, value, message):
        ex = self.assertRaises(nova_exception.InvalidConfiguration,
                               self.host_topology,
                               reserved_huge_pages=['node:1,size:2048,count:1',
                                                    value])
        self.assertIn(message, str(ex))

    def test_host_without_numa_cells(self):
        caps = fake_host(numa=False)
        self.assertIsNone(topology.numa_topology(
            caps, topology.split_cpus(range(2)), []))
        ex = self.assertRaises(
            nova_exception.InvalidConfiguration, topology.numa_topology,
            caps, topology.split_cpus(range(2)),
            [{'node': '0', 'size': '2048', 'count': '1'}])
        self.assertIn('NUMA node 0', str(ex))

    def test_survives_the_compute_node_record(self):
        # The resource tracker stores the topology as JSON.
        host = self.host_topology(cpu_shared_set='0-1',
                                  cpu_dedicated_set='2-15,18-31',
                                  reserved_huge_pages=['node:1,size:1GB,'
                                                       'count:1'])
        stored = objects.NUMATopology.obj_from_db_obj(host._to_json())
        for obj in host, stored:
            obj.obj_reset_changes(recursive=True)
        self.assertEqual(host.obj_to_primitive(), stored.obj_to_primitive())


@ddt.ddt
class HyperthreadingTest(testtools.TestCase):

    @ddt.data(
        (snc_host, True),
        (smt_fake_host, True),
        (no_smt_fake_host, False),
        (lambda: caps_from_file('capabilities-debian12-x86_64.xml'), False),
        (lambda: fake_host(numa=False), False),
    )
    @ddt.unpack
    def test_has_hyperthreading(self, host, expected):
        self.assertIs(expected, topology.has_hyperthreading(host()))


class NovaFittingTest(ConfigTestCase):
    """Nova's own NUMA fitting accepts what we report, and honours it."""

    def dedicated_instance(self):
        return objects.InstanceNUMATopology(cells=[
            objects.InstanceNUMACell(
                id=i, cpuset=set(), pcpuset={4 * i + v for v in range(4)},
                memory=2048, cpu_policy=fields.CPUAllocationPolicy.DEDICATED)
            for i in range(2)])

    def test_pins_dedicated_cpus_only(self):
        dedicated = '2-7,18-23,10-15,26-31'
        host = self.host_topology(cpu_shared_set='0-1,16-17,8-9,24-25',
                                  cpu_dedicated_set=dedicated)
        fitted = hardware.numa_fit_instance_to_host(
            host, self.dedicated_instance(), provider_mapping=None)
        self.assertIsNotNone(fitted)
        for cell in fitted.cells:
            pinned = set(cell.cpu_pinning.values())
            self.assertEqual(4, len(pinned))
            self.assertLessEqual(pinned, host.cells[cell.id].pcpuset)
            self.assertLessEqual(pinned, cpus(dedicated))

    def test_vcpu_pin_set_pins_within_it(self):
        """As Nova documents: pinned guests land on vcpu_pin_set's CPUs."""
        host = self.host_topology(vcpu_pin_set='4-15')
        fitted = hardware.numa_fit_instance_to_host(
            host, self.dedicated_instance(), provider_mapping=None)
        self.assertIsNotNone(fitted)
        for cell in fitted.cells:
            self.assertLessEqual(set(cell.cpu_pinning.values()),
                                 cpus('4-15'))

    def test_no_dedicated_set_no_pinning(self):
        # Nova's driver would offer every CPU for pinning here (its legacy
        # fallback); we offer none.
        fitted = hardware.numa_fit_instance_to_host(
            self.host_topology(), self.dedicated_instance(),
            provider_mapping=None)
        self.assertIsNone(fitted)

    def test_reserved_pages_are_not_used(self):
        # A guest node of 16 GiB in 1G pages; nodes 0-2 keep one back.
        host = self.host_topology(reserved_huge_pages=[
            'node:%d,size:1GB,count:1' % node for node in range(3)])
        instance = objects.InstanceNUMATopology(cells=[
            objects.InstanceNUMACell(
                id=0, cpuset={0, 1}, pcpuset=set(), memory=16384,
                pagesize=GiB_PAGES,
                cpu_policy=fields.CPUAllocationPolicy.SHARED)])
        fitted = hardware.numa_fit_instance_to_host(
            host, instance, provider_mapping=None)
        self.assertEqual([3], [cell.id for cell in fitted.cells])


class NetworkAffinityTest(testtools.TestCase):
    """Physnets and tunnels land on the NUMA cells of their NICs."""

    def test_affinity_per_cell(self):
        networks = topology.network_affinity(
            {'physnet0': {0}, 'physnet1': {1, 3}}, {3}, [0, 1, 2, 3])
        self.assertEqual(
            {0: ({'physnet0'}, False), 1: ({'physnet1'}, False),
             2: (set(), False), 3: ({'physnet1'}, True)},
            {cell: (meta.physnets, meta.tunneled)
             for cell, meta in networks.items()})

    def test_unknown_node_is_named(self):
        ex = self.assertRaises(
            nova_exception.InvalidNetworkNUMAAffinity,
            topology.network_affinity, {'physnet0': {0, 5}}, set(), [0, 1])
        self.assertIn('[neutron_physnet_physnet0] numa_nodes', str(ex))
        self.assertIn('node 5', str(ex))
        ex = self.assertRaises(
            nova_exception.InvalidNetworkNUMAAffinity,
            topology.network_affinity, {}, {2}, [0, 1])
        self.assertIn('[neutron_tunnel] numa_nodes', str(ex))
