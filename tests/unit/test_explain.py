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

"""``nova-kvmx explain`` agrees with Nova's scheduler, and says why.

Hosts are captured shapes: the 2-socket SNC2 server of
``data/topology-2socket-snc2-smt.xml`` with the node devices of
``data/nodedev-dump-snc`` (4 X710 VFs on NUMA node 1), this test machine's
``capabilities-debian12-x86_64.xml``, and a host without SMT from Nova's
fake libvirt. For each flavor of the table, explain's filter verdict must
equal what Nova's own NUMATopologyFilter and PciPassthroughFilter decide
on a HostState built the way Nova's scheduler builds it from the same
topology and PCI pools, and the explanation must name the resource that
is short.
"""

import ddt
import fixtures
import nova.conf
from nova import objects
from nova.pci import request as pci_request
from nova.pci import stats as pci_stats
from nova.scheduler.filters import numa_topology_filter
from nova.scheduler.filters import pci_passthrough_filter
from nova.scheduler import host_manager
from oslo_config import fixture as config_fixture
import testtools

from nova_kvmx.cmd import explain
from nova_kvmx.cmd import hostdata
from nova_kvmx.cmd import hostview
from nova_kvmx.cmd import request
from tests.unit import test_topology

objects.register_all()

CONF = nova.conf.CONF
DATA = test_topology.DATA
SNC_CAPS = DATA + '/topology-2socket-snc2-smt.xml'
SNC_DEVICES = DATA + '/nodedev-dump-snc'
DEBIAN_CAPS = DATA + '/capabilities-debian12-x86_64.xml'

VF_SPEC = '{"vendor_id": "8086", "product_id": "154c"}'
VF_ALIAS = ('{"vendor_id": "8086", "product_id": "154c", '
            '"device_type": "type-VF", "name": "vf"}')
# The SNC host as an NFV node: 4 shared CPUs on cell 0, the rest for
# pinning; 14 of cell 0's 16 1G pages kept for the host; the VFs
# assignable under the alias "vf".
SNC_OPTIONS = {
    'compute': {'cpu_shared_set': '0-1,16-17',
                'cpu_dedicated_set': '2-15,18-31'},
    'DEFAULT': {'reserved_huge_pages': ['node:0,size:1GB,count:14']},
    'pci': {'device_spec': [VF_SPEC], 'alias': [VF_ALIAS]},
}
NO_SMT_OPTIONS = {'compute': {'cpu_shared_set': '0',
                              'cpu_dedicated_set': '1-7'}}
DED = {'hw:cpu_policy': 'dedicated'}


def snc_host():
    return hostdata.from_files(SNC_CAPS, SNC_DEVICES)


def debian_host():
    return hostdata.from_files(DEBIAN_CAPS)


def no_smt_host():
    """Nova's fake libvirt: 2 cells of 4 cores, 1 x 1G page per cell."""
    caps = test_topology.no_smt_fake_host()
    return hostdata.HostFacts(
        source='fake', caps=caps, online_cpus=frozenset(range(8)),
        memory_mb=32768)


class ExplainTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.conf = self.useFixture(config_fixture.Config(CONF))
        self.useFixture(fixtures.FakeLogger())
        # Nova caches the parsed [pci] alias for the process.
        pci_request.get_alias_from_config.cache_clear()
        self.addCleanup(pci_request.get_alias_from_config.cache_clear)

    def configure(self, options):
        for group, values in options.items():
            self.conf.config(group=None if group == 'DEFAULT' else group,
                             **values)


def nova_filters_pass(facts, req):
    """What Nova's scheduler filters decide for the request on a HostState
    built as Nova's HostManager builds it: the compute node's NUMA
    topology, and PCI pools (not devices) from its pci_device_pools."""
    numa = hostview.host_numa(facts)
    pools = hostview.host_pci_stats(
        numa, facts.pci_devices).to_device_pools_obj()
    ratios = hostview.allocation_ratios()
    state = host_manager.HostState('compute1', 'compute1', None)
    state.numa_topology = numa
    state.pci_stats = pci_stats.PciDeviceStats(numa, stats=pools)
    state.cpu_allocation_ratio = ratios['VCPU']
    state.ram_allocation_ratio = ratios['MEMORY_MB']
    state.allocation_candidates = [{'mappings': {}}]
    spec = req.spec.obj_clone()
    return all(f.host_passes(state, spec) for f in (
        numa_topology_filter.NUMATopologyFilter(),
        pci_passthrough_filter.PciPassthroughFilter()))


# name: (host, options, vcpus, MiB, extra specs, fits Placement,
#        fits the filters, what the reasons must say)
FLAVORS = {
    'shared, no NUMA': (snc_host, SNC_OPTIONS, 2, 2048, {}, True, True, []),
    'pinned 4': (snc_host, SNC_OPTIONS, 4, 4096, DED, True, True, []),
    'pinned 10 on one node': (
        snc_host, SNC_OPTIONS, 10, 4096, DED, True, False,
        ['cell 0: guest node 0: needs 10 dedicated CPUs, has 4 in '
         'cpu_dedicated_set',
         'cells 1-3: guest node 0: needs 10 dedicated CPUs, has 8']),
    'pinned 16 on two nodes': (
        snc_host, SNC_OPTIONS, 16, 4096, {**DED, 'hw:numa_nodes': '2'},
        True, True, []),
    'pinned 8 and an isolated emulator thread': (
        snc_host, SNC_OPTIONS, 8, 4096,
        {**DED, 'hw:emulator_threads_policy': 'isolate'}, True, False,
        ['needs 8 dedicated CPUs (+1 for the emulator threads), has 8']),
    '16 GiB of 1G pages': (
        snc_host, SNC_OPTIONS, 4, 16384, {**DED, 'hw:mem_page_size': '1GB'},
        True, True, []),
    '20 GiB of 1G pages': (
        snc_host, SNC_OPTIONS, 4, 20480, {**DED, 'hw:mem_page_size': '1GB'},
        True, False,
        ['cell 0: guest node 0: needs 20 free 1G pages, has 2 (14 reserved '
         'by reserved_huge_pages)',
         'cells 1-3: guest node 0: needs 20 free 1G pages, has 16']),
    '1.5 GiB of 1G pages': (
        snc_host, SNC_OPTIONS, 2, 1536, {**DED, 'hw:mem_page_size': '1GB'},
        True, False, ['1536 MiB is not a whole number of 1G pages']),
    'thread isolation on an SMT host': (
        snc_host, SNC_OPTIONS, 4, 4096,
        {**DED, 'hw:cpu_thread_policy': 'isolate'}, False, False,
        ['Placement: forbids trait HW_CPU_HYPERTHREADING, which the host '
         'has', "thread policy isolate: the cell's CPUs have SMT siblings"]),
    'thread siblings on an SMT host': (
        snc_host, SNC_OPTIONS, 4, 4096,
        {**DED, 'hw:cpu_thread_policy': 'require'}, True, True, []),
    'a VF on the same NUMA node': (
        snc_host, SNC_OPTIONS, 2, 2048,
        {**DED, 'pci_passthrough:alias': 'vf:1',
         'hw:pci_numa_affinity_policy': 'required'}, True, True, []),
    'five VFs': (
        snc_host, SNC_OPTIONS, 2, 2048, {'pci_passthrough:alias': 'vf:5'},
        True, False,
        ['PCI alias vf: needs 5 device(s)', '4 on NUMA node 1']),
    'VFs only next to a cell the guest cannot use': (
        snc_host,
        {**SNC_OPTIONS, 'DEFAULT': {'reserved_huge_pages': [
            'node:0,size:1GB,count:16', 'node:1,size:1GB,count:16']}},
        4, 4096, {**DED, 'hw:mem_page_size': '1GB',
                  'pci_passthrough:alias': 'vf:1',
                  'hw:pci_numa_affinity_policy': 'required'}, True, False,
        ['the NUMA cells fit without PCI devices, not with them',
         'PCI alias vf: needs 1 device(s) (NUMA affinity policy required)'
         '; free under [pci] device_spec: 4 on NUMA node 1']),
    'more memory than the small pages': (
        snc_host, SNC_OPTIONS, 2, 49152, DED, True, False,
        ['cell 0: guest node 0: needs 49152 MiB of 4K-page memory (no '
         'hw:mem_page_size), has 39342 MiB']),
    'mixed, fits cell 0': (
        snc_host, SNC_OPTIONS, 4, 1024,
        {'hw:cpu_policy': 'mixed', 'hw:cpu_dedicated_mask': '^0'},
        True, True, []),
    'mixed, too many dedicated for cell 0': (
        snc_host, SNC_OPTIONS, 6, 1024,
        {'hw:cpu_policy': 'mixed', 'hw:cpu_dedicated_mask': '^0'},
        True, False,
        ['cell 0: guest node 0: needs 5 dedicated CPUs, has 4',
         'cells 1-3: guest node 0: needs 1 shared CPUs, has 0 in '
         'cpu_shared_set']),
    'four nodes, cell 0 short of pages': (
        snc_host, SNC_OPTIONS, 8, 12288,
        {**DED, 'hw:numa_nodes': '4', 'hw:mem_page_size': '1GB'},
        True, False,
        ['cell 0: guest nodes 0-3: needs 3 free 1G pages, has 2',
         'no set of distinct cells fits them all']),
    'more guest nodes than cells': (
        snc_host, SNC_OPTIONS, 8, 8192, {**DED, 'hw:numa_nodes': '8'},
        True, False, ['the guest asks for 8 NUMA nodes, the host has 4']),
    'shared NUMA guest on cell 0': (
        snc_host, SNC_OPTIONS, 4, 4096, {'hw:numa_nodes': '1'}, True, True,
        []),
    'shared NUMA guest larger than cell 0': (
        snc_host, SNC_OPTIONS, 5, 4096, {'hw:numa_nodes': '1'}, False, False,
        ['Placement: VCPU: needs 5, at most 4 per server (max_unit)',
         'cell 0: guest node 0: needs 5 shared CPUs, has 4']),
    'thread siblings without SMT': (
        no_smt_host, NO_SMT_OPTIONS, 2, 1024,
        {**DED, 'hw:cpu_thread_policy': 'require'}, False, False,
        ['requires trait HW_CPU_HYPERTHREADING, which the host lacks',
         'thread policy require needs SMT thread siblings']),
    'thread isolation without SMT': (
        no_smt_host, NO_SMT_OPTIONS, 4, 1024,
        {**DED, 'hw:cpu_thread_policy': 'isolate'}, True, True, []),
    'thread isolation, one core short': (
        no_smt_host, NO_SMT_OPTIONS, 5, 1024,
        {**DED, 'hw:cpu_thread_policy': 'isolate'}, True, False,
        ['cell 0: guest node 0: needs 5 dedicated CPUs, has 3',
         'cell 1: guest node 0: needs 5 dedicated CPUs, has 4']),
    'two 1G pages on a host with one per cell': (
        no_smt_host, NO_SMT_OPTIONS, 2, 2048,
        {**DED, 'hw:mem_page_size': '1GB'}, True, False,
        ['cells 0-1: guest node 0: needs 2 free 1G pages, has 1']),
    'this machine, shared': (debian_host, {}, 2, 1024, {}, True, True, []),
    'this machine, pinned': (
        debian_host, {}, 1, 1024, DED, False, False,
        ['Placement: PCPU: needs 1, the host has no PCPU inventory (no '
         '[compute] cpu_dedicated_set)',
         'needs 1 dedicated CPUs, has 0 in cpu_dedicated_set']),
    'this machine, 2M pages': (
        debian_host, {}, 1, 1024, {'hw:mem_page_size': '2MB'}, True, False,
        ['needs 512 free 2M pages, has 0']),
}


@ddt.ddt
class AgreementTest(ExplainTestCase):

    @ddt.named_data(*sorted([name, row] for name, row in FLAVORS.items()))
    def test_verdict_and_reason(self, row):
        (host, options, vcpus, ram, specs, fits_placement, fits_filters,
         fragments) = row
        self.configure(options)
        facts = host()
        req = request.build(vcpus, ram, extra_specs=specs)

        result = explain.explain(facts, req)

        self.assertEqual(nova_filters_pass(facts, req), result.fits_filters)
        self.assertEqual((fits_placement, fits_filters),
                         (result.fits_placement, result.fits_filters))
        self.assertEqual(fits_placement and fits_filters, result.fits)
        reasons = '\n'.join(result.reasons)
        for fragment in fragments:
            self.assertIn(fragment, reasons)
        if result.fits:
            self.assertEqual([], result.reasons)


class FitTest(ExplainTestCase):
    """How a fitting guest is placed."""

    def explain(self, vcpus, ram, **specs):
        self.configure(SNC_OPTIONS)
        return explain.explain(snc_host(), request.build(
            vcpus, ram, extra_specs=specs))

    def host_cell_cpus(self, cell):
        return test_topology.cpus(test_topology.CELL_CPUS[cell])

    def test_pinned_realtime_hugepage_guest_with_a_vf(self):
        result = self.explain(
            8, 8192, **{'hw:cpu_policy': 'dedicated', 'hw:numa_nodes': '2',
                        'hw:mem_page_size': '1GB',
                        'hw:cpu_realtime': 'yes',
                        'hw:cpu_realtime_mask': '^0',
                        'hw:emulator_threads_policy': 'isolate',
                        'pci_passthrough:alias': 'vf:1'})

        self.assertTrue(result.fits)
        self.assertEqual({'MEMORY_MB': 8192, 'PCPU': 9},
                         result.placement['resources'])
        self.assertEqual(['4 x 1G', '4 x 1G'], [
            '%d x %s' % (c['pages'], c['page_size'])
            for c in result.guest_cells])
        # Distinct host cells; every vCPU pinned to its own dedicated CPU
        # of its guest node's host cell.
        cells = [c['host_cell'] for c in result.guest_cells]
        self.assertEqual(2, len(set(cells)))
        pcpus = [int(p['host_cpus']) for p in result.vcpu_pins]
        self.assertEqual(8, len(set(pcpus)))
        for pin in result.vcpu_pins:
            self.assertTrue(pin['pinned'])
            self.assertIn(int(pin['host_cpus']),
                          self.host_cell_cpus(pin['host_cell']))
            self.assertEqual(pin['vcpu'] != 0, pin['realtime'])
        # The emulator thread has a dedicated CPU of its own, on the host
        # cell of guest node 0.
        emulator = int(result.emulator_threads['host_cpus'])
        self.assertNotIn(emulator, pcpus)
        self.assertIn(emulator, self.host_cell_cpus(cells[0]))
        self.assertIn(emulator, test_topology.cpus('2-15,18-31'))
        # Nova's PCI NUMA affinity (legacy policy) puts the VF's cell
        # among the guest's.
        [device] = result.pci_devices
        self.assertEqual(('vf', 'type-VF', 1), (
            device['alias'], device['dev_type'], device['numa_node']))
        self.assertIn(1, cells)
        self.assertTrue(device['address'].startswith('0000:81:02.'))

    def test_unpinned_numa_guest_floats_on_its_cell(self):
        result = self.explain(2, 1024, **{'hw:numa_nodes': '1'})
        self.assertEqual([('0-1,16-17', 0, False)] * 2, [
            (p['host_cpus'], p['host_cell'], p['pinned'])
            for p in result.vcpu_pins])
        self.assertEqual('0-1,16-17', result.emulator_threads['host_cpus'])

    def test_guest_without_numa_floats_on_the_shared_set(self):
        result = self.explain(2, 1024)
        self.assertEqual('not requested', result.numa)
        self.assertEqual([], result.guest_cells)
        self.assertEqual(['0-1,16-17'] * 2,
                         [p['host_cpus'] for p in result.vcpu_pins])

    def test_emulator_threads_share_the_shared_set(self):
        result = self.explain(
            2, 1024, **{'hw:cpu_policy': 'dedicated',
                        'hw:emulator_threads_policy': 'share'})
        self.assertEqual('0-1,16-17', result.emulator_threads['host_cpus'])

    def test_realtime_sharing_emulator_threads_without_shared_set(self):
        # Nova places it; the driver refuses it at spawn, as Nova's own
        # driver does: explain says so rather than "fits".
        self.configure({'compute': {'cpu_shared_set': None,
                                    'cpu_dedicated_set': '0-31'}})
        result = explain.explain(snc_host(), request.build(
            2, 1024, extra_specs={'hw:cpu_policy': 'dedicated',
                                  'hw:cpu_realtime': 'yes',
                                  'hw:cpu_realtime_mask': '^0',
                                  'hw:emulator_threads_policy': 'share'}))
        self.assertFalse(result.fits)
        self.assertIn('the driver would refuse the claim',
                      ' '.join(result.reasons))

    def test_host_as_reported(self):
        result = self.explain(1, 512)
        self.assertEqual(
            [(0, '0-1,16-17', '2-3,18-19', 2), (1, '-', '4-7,20-23', 16)],
            [(c['cell'], c['shared_cpus'], c['dedicated_cpus'],
              c['free_pages']['1G']) for c in result.host['cells'][:2]])
        # Placement capacity: 4 shared CPUs x the initial ratio 4.0, the
        # 28 dedicated ones, the cells' 257388 MiB less Nova's default
        # reserved_host_memory_mb (512).
        self.assertEqual({'VCPU': 16, 'PCPU': 28, 'MEMORY_MB': 256876},
                         result.host['inventory'])


class BadRequestTest(ExplainTestCase):
    """Nova's own validation, with Nova's message."""

    def test_unknown_extra_spec(self):
        ex = self.assertRaises(nova.exception.ValidationError, request.build,
                               1, 512, extra_specs={'hw:cpu_polcy': 'x'})
        self.assertIn("extra spec 'hw:cpu_polcy' does not appear to be a "
                      "valid extra spec", ex.format_message())

    def test_malformed_value(self):
        ex = self.assertRaises(nova.exception.ValidationError, request.build,
                               1, 512, extra_specs={'hw:numa_nodes': 'two'})
        self.assertEqual("hw:numa_nodes=two: Validation failed; 'two' is not "
                         "a valid integer value.", ex.format_message())

    def test_inconsistent_flavor(self):
        ex = self.assertRaises(
            nova.exception.RealtimeMaskNotFoundOrInvalid, request.build,
            2, 512, extra_specs={'hw:cpu_policy': 'dedicated',
                                 'hw:cpu_realtime': 'yes'})
        self.assertIn('non-realtime', ex.format_message())

    def test_bad_image_property(self):
        ex = self.assertRaises(
            nova.exception.InvalidRequest, request.build, 1, 512,
            image_properties={'hw_numa_nodes': 'two'})
        self.assertIn('Invalid image metadata', ex.format_message())

    def test_unknown_image_property_is_noted(self):
        self.configure(SNC_OPTIONS)
        req = request.build(1, 512, image_properties={
            'hw_cpu_policy': 'dedicated', 'hw_colour': 'blue'})
        self.assertEqual(['hw_colour'], req.ignored_image_properties)
        self.assertEqual({'PCPU': 1, 'MEMORY_MB': 512},
                         request.placement_ask(req.placement_query).resources)

    def test_undefined_alias(self):
        self.assertRaises(nova.exception.PciRequestAliasNotDefined,
                          request.build, 1, 512,
                          extra_specs={'pci_passthrough:alias': 'gpu:1'})

    def test_pairs(self):
        self.assertEqual({'a': '1', 'b': 'x=y'},
                         request.parse_pairs(['a=1', 'b=x=y'], '--x'))
        ex = self.assertRaises(nova.exception.InvalidInput,
                               request.parse_pairs, ['hw:numa_nodes'],
                               '--extra-spec')
        self.assertIn("--extra-spec 'hw:numa_nodes' is not of the form "
                      "key=value", ex.format_message())
