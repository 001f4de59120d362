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

"""NFV flavors -> Nova's claim -> domain XML, element by element.

Each claim is made by Nova's own fitting on the captured 2-socket, 4-node
SMT host (tests/unit/nfv.py); each domain passes libvirt's schema before
its elements are compared with the claim.
"""

import ddt
from nova import exception
from nova.network import model
from nova.virt import hardware
import testtools

from nova_kvmx.guest import render
from tests.unit import builders as b
from tests.unit import nfv
from tests.unit import test_topology
from tests.unit import xml_schema

GIB_PAGE = 1048576


def cpus(text):
    return hardware.parse_cpu_spec(text)


class NUMARenderTestCase(testtools.TestCase):
    def setUp(self):
        super().setUp()
        self.host = self.useFixture(nfv.NFVHost())

    def domain(self, inst, image_meta=None):
        xml = render.render_domain(nfv.plan(self.host, inst, image_meta))
        xml_schema.assert_valid_domain(self, xml)
        return xml_schema.parse(xml)

    def vcpupins(self, root):
        return {int(pin.get('vcpu')): cpus(pin.get('cpuset'))
                for pin in xml_schema.findall(root, 'cputune/vcpupin')}

    def emulatorpin(self, root):
        return cpus(xml_schema.find(root, 'cputune/emulatorpin')
                    .get('cpuset'))

    def assert_bound_to_claim(self, root, claim):
        """Guest cells, their memory and host cells are the claim's."""
        cells = xml_schema.findall(root, 'cpu/numa/cell')
        self.assertEqual(len(claim.cells), len(cells))
        for index, (cell, claimed) in enumerate(zip(cells, claim.cells)):
            self.assertEqual(str(index), cell.get('id'))
            self.assertEqual(claimed.total_cpus, cpus(cell.get('cpus')))
            self.assertEqual(str(claimed.memory * 1024), cell.get('memory'))
            memnode = xml_schema.find(
                root, 'numatune/memnode[@cellid="%d"]' % index)
            self.assertEqual('strict', memnode.get('mode'))
            self.assertEqual(str(claimed.id), memnode.get('nodeset'))
        memory = xml_schema.find(root, 'numatune/memory')
        self.assertEqual('strict', memory.get('mode'))
        self.assertEqual({c.id for c in claim.cells},
                         cpus(memory.get('nodeset')))


class DedicatedTest(NUMARenderTestCase):
    def test_every_vcpu_on_its_claimed_cpu(self):
        inst = self.host.instance(vcpus=4, hw_cpu_policy='dedicated')
        root = self.domain(inst)
        claim = inst.numa_topology
        pins = nfv.pinning(claim)
        self.assertEqual({v: {p} for v, p in pins.items()},
                         self.vcpupins(root))
        self.assertLessEqual(set(pins.values()), cpus(nfv.DEDICATED))
        # Emulator threads float over the guest's own CPUs (no policy).
        self.assertEqual(set(pins.values()), self.emulatorpin(root))
        self.assert_bound_to_claim(root, claim)
        # Small pages: nothing to ask of <memoryBacking>.
        self.assertEqual([], xml_schema.findall(root, 'memoryBacking'))
        self.assertEqual('virtio', xml_schema.find(
            root, 'devices/memballoon').get('model'))
        self.assertEqual([], xml_schema.findall(root, 'cputune/vcpusched'))

    def test_two_cells(self):
        inst = self.host.instance(vcpus=8, memory_mb=4096,
                                  hw_cpu_policy='dedicated', hw_numa_nodes=2)
        root = self.domain(inst)
        claim = inst.numa_topology
        self.assertEqual(2, len(claim.cells))
        self.assert_bound_to_claim(root, claim)
        for cell in claim.cells:
            host_cell = self.host.host_cell(cell.id)
            for vcpu in cell.total_cpus:
                pinned = self.vcpupins(root)[vcpu]
                self.assertEqual({cell.cpu_pinning[vcpu]}, pinned)
                self.assertLessEqual(pinned, host_cell.pcpuset)

    def test_require_thread_policy_takes_whole_cores(self):
        inst = self.host.instance(vcpus=4, hw_cpu_policy='dedicated',
                                  hw_cpu_thread_policy='require')
        root = self.domain(inst)
        pinned = set().union(*self.vcpupins(root).values())
        self.assertEqual(set(nfv.pinning(inst.numa_topology).values()),
                         pinned)
        host_cell = self.host.host_cell(inst.numa_topology.cells[0].id)
        for cpu in pinned:
            core = next(s for s in host_cell.siblings if cpu in s)
            self.assertLessEqual(core, pinned)

    def test_isolate_thread_policy(self):
        # Nova keeps isolate guests off SMT hosts (HW_CPU_HYPERTHREADING
        # is forbidden): its fitting refuses the 4-node SMT host...
        flavor = b.flavor(vcpus=2, extra_specs={
            'hw:cpu_policy': 'dedicated', 'hw:cpu_thread_policy': 'isolate'})
        self.assertIsNone(self.host.claim(flavor, b.image()))
        # ...and pins one vCPU per core on a host without SMT.
        host = self.useFixture(nfv.NFVHost(
            caps=test_topology.no_smt_fake_host(), online=range(8),
            shared='0,4', dedicated='1-3,5-7'))
        inst = host.instance(vcpus=3, hw_cpu_policy='dedicated',
                             hw_cpu_thread_policy='isolate')
        root = xml_schema.parse(render.render_domain(nfv.plan(host, inst)))
        pins = nfv.pinning(inst.numa_topology)
        self.assertEqual({v: {p} for v, p in pins.items()},
                         self.vcpupins(root))
        self.assertEqual(3, len(set(pins.values())))
        self.assertLessEqual(set(pins.values()), cpus('1-3,5-7'))

    def test_cpu_topology_as_requested(self):
        inst = self.host.instance(vcpus=4, hw_cpu_policy='dedicated',
                                  hw_cpu_sockets=1, hw_cpu_cores=2,
                                  hw_cpu_threads=2)
        top = xml_schema.find(self.domain(inst), 'cpu/topology')
        self.assertEqual(('1', '2', '2'), (
            top.get('sockets'), top.get('cores'), top.get('threads')))


class SharedAndMixedTest(NUMARenderTestCase):
    def test_numa_guest_floats_over_its_cells_shared_cpus(self):
        inst = self.host.instance(vcpus=4, hw_numa_nodes=2)
        root = self.domain(inst)
        claim = inst.numa_topology
        self.assert_bound_to_claim(root, claim)
        pins = self.vcpupins(root)
        for cell in claim.cells:
            shared = self.host.host_cell(cell.id).cpuset
            self.assertTrue(shared)
            for vcpu in cell.total_cpus:
                self.assertEqual(shared, pins[vcpu])
        self.assertEqual(set().union(*pins.values()),
                         self.emulatorpin(root))

    def test_mixed_pins_only_the_dedicated_vcpus(self):
        inst = self.host.instance(vcpus=4, hw_cpu_policy='mixed',
                                  hw_cpu_dedicated_mask='^0-1')
        root = self.domain(inst)
        cell = inst.numa_topology.cells[0]
        pins = self.vcpupins(root)
        shared = self.host.host_cell(cell.id).cpuset
        self.assertEqual({0: shared, 1: shared},
                         {v: pins[v] for v in (0, 1)})
        for vcpu in (2, 3):
            self.assertEqual({cell.cpu_pinning[vcpu]}, pins[vcpu])
            self.assertIn(cell.cpu_pinning[vcpu], cpus(nfv.DEDICATED))

    def test_guest_without_numa_claim_stays_on_the_shared_set(self):
        root = self.domain(self.host.instance(vcpus=2))
        self.assertEqual(cpus(nfv.SHARED),
                         cpus(xml_schema.find(root, 'vcpu').get('cpuset')))
        for path in ('cpu/numa', 'numatune', 'cputune', 'memoryBacking'):
            self.assertEqual([], xml_schema.findall(root, path))
        # Its IOThread has no <iothreadpin>: libvirt runs it on the
        # <vcpu cpuset>, with the vCPUs and emulator threads.
        self.assertEqual('1', xml_schema.find(root, 'iothreads').text)

    def test_without_cpu_options_a_floating_guest_is_not_confined(self):
        host = self.useFixture(nfv.NFVHost(shared=None, dedicated=None))
        xml = render.render_domain(nfv.plan(host, host.instance(vcpus=2)))
        self.assertIsNone(xml_schema.find(
            xml_schema.parse(xml), 'vcpu').get('cpuset'))


@ddt.ddt
class EmulatorThreadsTest(NUMARenderTestCase):
    def test_isolate_uses_the_reserved_cpu(self):
        inst = self.host.instance(vcpus=4, hw_cpu_policy='dedicated',
                                  hw_emulator_threads_policy='isolate')
        root = self.domain(inst)
        reserved = inst.numa_topology.cells[0].cpuset_reserved
        self.assertEqual(1, len(reserved))
        self.assertEqual(reserved, self.emulatorpin(root))
        self.assertFalse(reserved & set().union(*self.vcpupins(root).values()))
        self.assertLessEqual(reserved, cpus(nfv.DEDICATED))

    def test_share_uses_the_shared_set(self):
        inst = self.host.instance(vcpus=4, hw_cpu_policy='dedicated',
                                  hw_emulator_threads_policy='share')
        self.assertEqual(cpus(nfv.SHARED), self.emulatorpin(
            self.domain(inst)))

    def test_share_without_shared_set_floats_with_the_vcpus(self):
        host = self.useFixture(nfv.NFVHost(shared=None,
                                           dedicated='0-31'))
        inst = host.instance(vcpus=4, hw_cpu_policy='dedicated',
                             hw_emulator_threads_policy='share')
        root = xml_schema.parse(render.render_domain(nfv.plan(host, inst)))
        self.assertEqual(set(nfv.pinning(inst.numa_topology).values()),
                         self.emulatorpin(root))


@ddt.ddt
class IOThreadTest(NUMARenderTestCase):
    """Nova gives every guest one IOThread and, with a NUMA claim, pins it
    where the emulator threads run."""

    @ddt.data(
        # (flavor, where Nova's emulator threads policy puts them)
        (dict(hw_cpu_policy='dedicated'), 'the vCPUs'),
        (dict(hw_cpu_policy='dedicated', hw_numa_nodes=2), 'the vCPUs'),
        (dict(hw_numa_nodes=2), 'the vCPUs'),
        (dict(hw_cpu_policy='dedicated',
              hw_emulator_threads_policy='isolate'), 'the reserved CPU'),
        (dict(hw_cpu_policy='dedicated',
              hw_emulator_threads_policy='share'), 'cpu_shared_set'),
        (dict(hw_cpu_policy='dedicated', hw_cpu_realtime='yes',
              hw_cpu_realtime_mask='^0'), 'vCPU 0'),
    )
    @ddt.unpack
    def test_iothread_runs_with_the_emulator_threads(self, specs, where):
        inst = self.host.instance(vcpus=4, **specs)
        root = self.domain(inst)
        claim = inst.numa_topology
        vcpu_cpus = self.vcpupins(root)
        expected = {
            'the vCPUs': set().union(*vcpu_cpus.values()),
            'the reserved CPU': claim.cells[0].cpuset_reserved,
            'cpu_shared_set': cpus(nfv.SHARED),
            'vCPU 0': vcpu_cpus[0],
        }[where]
        self.assertEqual('1', xml_schema.find(root, 'iothreads').text)
        pins = xml_schema.findall(root, 'cputune/iothreadpin')
        self.assertEqual([('1', expected)], [
            (pin.get('iothread'), cpus(pin.get('cpuset'))) for pin in pins])
        self.assertEqual(expected, self.emulatorpin(root))


class RealtimeTest(NUMARenderTestCase):
    def realtime(self, **extra):
        specs = dict(hw_cpu_policy='dedicated', hw_cpu_realtime='yes',
                     hw_cpu_realtime_mask='^0', hw_mem_page_size='2MB')
        specs.update(extra)
        return self.host.instance(vcpus=4, **specs)

    def test_realtime_vcpus_fifo_memory_locked_no_pmu_no_balloon(self):
        inst = self.realtime()
        root = self.domain(inst)
        sched = xml_schema.find(root, 'cputune/vcpusched')
        self.assertEqual({1, 2, 3}, cpus(sched.get('vcpus')))
        self.assertEqual(('fifo', '1'),
                         (sched.get('scheduler'), sched.get('priority')))
        backing = xml_schema.find(root, 'memoryBacking')
        self.assertEqual(['hugepages', 'nosharepages', 'locked'],
                         [child.tag for child in backing])
        self.assertEqual('off', xml_schema.find(
            root, 'features/pmu').get('state'))
        self.assertEqual('none', xml_schema.find(
            root, 'devices/memballoon').get('model'))
        # Emulator threads stay with the one non-realtime vCPU.
        self.assertEqual({nfv.pinning(inst.numa_topology)[0]},
                         self.emulatorpin(root))

    def test_priority_is_configurable(self):
        host = self.useFixture(nfv.NFVHost())
        inst = host.instance(vcpus=2, hw_cpu_policy='dedicated',
                             hw_cpu_realtime='yes',
                             hw_cpu_realtime_mask='^0')
        settings = b.settings(host_cpus=host.settings.host_cpus,
                              realtime_priority=50)
        root = xml_schema.parse(render.render_domain(
            b.plan(inst=inst, driver_settings=settings)))
        self.assertEqual('50', xml_schema.find(
            root, 'cputune/vcpusched').get('priority'))

    def test_all_vcpus_realtime_with_isolated_emulator(self):
        inst = self.realtime(hw_cpu_realtime_mask='0-3',
                             hw_emulator_threads_policy='isolate')
        root = self.domain(inst)
        self.assertEqual({0, 1, 2, 3}, cpus(xml_schema.find(
            root, 'cputune/vcpusched').get('vcpus')))
        self.assertEqual(inst.numa_topology.cells[0].cpuset_reserved,
                         self.emulatorpin(root))

    def test_explicit_pmu_wins(self):
        root = self.domain(self.realtime(hw_pmu='true'))
        self.assertEqual('on', xml_schema.find(
            root, 'features/pmu').get('state'))

    def test_mask_covering_every_vcpu_is_refused_as_nova_does(self):
        self.assertRaises(exception.RealtimeMaskNotFoundOrInvalid,
                          self.realtime, hw_cpu_realtime_mask='0-3')

    def test_share_policy_without_shared_set_is_refused(self):
        host = self.useFixture(nfv.NFVHost(shared=None, dedicated='0-31'))
        inst = host.instance(vcpus=2, hw_cpu_policy='dedicated',
                             hw_cpu_realtime='yes',
                             hw_cpu_realtime_mask='^0',
                             hw_emulator_threads_policy='share')
        self.assertRaises(exception.RealtimeMaskNotFoundOrInvalid,
                          nfv.plan, host, inst)


@ddt.ddt
class HugepagesTest(NUMARenderTestCase):
    @ddt.data(('1GB', GIB_PAGE), ('2MB', 2048), ('large', None))
    @ddt.unpack
    def test_two_cells_backed_by_the_claimed_pages(self, request, size):
        inst = self.host.instance(vcpus=4, memory_mb=4096, hw_numa_nodes=2,
                                  hw_mem_page_size=request)
        root = self.domain(inst)
        claim = inst.numa_topology
        self.assert_bound_to_claim(root, claim)
        pages = xml_schema.findall(root, 'memoryBacking/hugepages/page')
        self.assertEqual(
            [(str(c.pagesize), 'KiB', str(i))
             for i, c in enumerate(claim.cells)],
            [(p.get('size'), p.get('unit'), p.get('nodeset'))
             for p in pages])
        if size:
            self.assertEqual({size}, {c.pagesize for c in claim.cells})
        # Large-page memory is shared (vhost-user ports may come later).
        self.assertEqual({'shared'}, {c.get('memAccess') for c in
                                      xml_schema.findall(root,
                                                         'cpu/numa/cell')})
        self.assertEqual([], xml_schema.findall(
            root, 'memoryBacking/locked'))

    def test_small_pages_need_no_backing(self):
        inst = self.host.instance(vcpus=2, hw_mem_page_size='small')
        self.assertEqual(4, inst.numa_topology.cells[0].pagesize)
        root = self.domain(inst)
        self.assertEqual([], xml_schema.findall(root, 'memoryBacking'))
        self.assertIsNone(xml_schema.find(
            root, 'cpu/numa/cell').get('memAccess'))

    def test_locked_memory_on_request(self):
        inst = self.host.instance(vcpus=2, hw_mem_page_size='2MB',
                                  hw_locked_memory='true')
        self.assertEqual(1, len(xml_schema.findall(
            self.domain(inst), 'memoryBacking/locked')))

    def test_page_size_the_host_lacks_does_not_fit(self):
        # The captured host has 4K, 2M and 1G pages only.
        flavor = b.flavor(vcpus=2, extra_specs={
            'hw:mem_page_size': '16MB'})
        self.assertIsNone(self.host.claim(flavor, b.image()))


class VhostUserMemoryTest(NUMARenderTestCase):
    """A vhost-user port needs guest RAM the switch can map."""

    def vhostuser_domain(self, inst):
        port = model.VIF(
            id='d2e3a1f4-1b5c-4c8e-9a0b-3f2e1d0c9b8a',
            address='fa:16:3e:11:22:33', type='vhostuser',
            network=model.Network(id='5a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d',
                                  bridge='br-int', subnets=[], mtu=1500),
            details={'vhostuser_socket': '/run/openvswitch/vhu0',
                     'vhostuser_mode': 'server',
                     'vhostuser_ovs_plug': True},
            devname='tapd2e3a1f4-1b')
        xml = render.render_domain(b.plan(
            inst=inst, driver_settings=self.host.settings,
            network_info=[port]))
        xml_schema.assert_valid_domain(self, xml)
        return xml_schema.parse(xml)

    def test_hugepage_guest_shares_its_pages(self):
        root = self.vhostuser_domain(self.host.instance(
            vcpus=2, hw_cpu_policy='dedicated', hw_mem_page_size='2MB'))
        self.assertEqual('shared', xml_schema.find(
            root, 'cpu/numa/cell').get('memAccess'))
        self.assertEqual([], xml_schema.findall(root, 'memoryBacking/source'))

    def test_small_page_numa_guest_gets_shared_file_memory(self):
        root = self.vhostuser_domain(self.host.instance(
            vcpus=2, hw_cpu_policy='dedicated'))
        self.assertEqual('shared', xml_schema.find(
            root, 'cpu/numa/cell').get('memAccess'))
        self.assertEqual('file', xml_schema.find(
            root, 'memoryBacking/source').get('type'))
        self.assertEqual('shared', xml_schema.find(
            root, 'memoryBacking/access').get('mode'))
