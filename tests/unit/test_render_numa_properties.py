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

"""Over random NFV flavors and random CPU splits of the captured 4-node SMT
host, whatever Nova's fitting claims, the domain realises exactly that.

For every claim Nova makes: every vCPU has one ``<vcpupin>``; a pinned
vCPU is pinned to its claimed CPU, inside ``cpu_dedicated_set``; a floating
vCPU floats over its cell's shared CPUs only; each guest cell's memory is
bound strictly to its claimed host cell and nowhere else; the large pages
are the claimed ones; emulator threads never share a realtime vCPU's CPU;
the one IOThread runs where Nova's emulator threads policy puts the
emulator threads, so never on a realtime vCPU's CPU, nor on a dedicated
vCPU's CPU when the policy gives the emulator threads CPUs of their own.
"""

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from nova.virt import hardware
import testtools

from nova_kvmx.guest import render
from tests.unit import builders as b
from tests.unit import nfv
from tests.unit import test_render_properties  # noqa: F401 (cache dir)
from tests.unit import xml_schema

ALL_CPUS = frozenset(range(32))


@st.composite
def cpu_splits(draw):
    """Disjoint dedicated and shared sets over the 32 CPUs, both
    non-empty."""
    dedicated = draw(st.sets(st.sampled_from(sorted(ALL_CPUS)),
                             min_size=4, max_size=30))
    rest = sorted(ALL_CPUS - dedicated)
    shared = draw(st.sets(st.sampled_from(rest), min_size=1))
    return frozenset(shared), frozenset(dedicated)


@st.composite
def nfv_flavors(draw):
    policy = draw(st.sampled_from(['shared', 'dedicated', 'mixed']))
    nodes = draw(st.sampled_from([1, 2]))
    vcpus = nodes * draw(st.integers(1 if policy != 'mixed' else 2, 4))
    specs = {'hw:cpu_policy': policy, 'hw:numa_nodes': str(nodes)}
    page = draw(st.sampled_from([None, 'small', '2MB', '1GB', 'large']))
    if page:
        specs['hw:mem_page_size'] = page
    if policy == 'mixed':
        specs['hw:cpu_dedicated_mask'] = '^0'
    if policy == 'dedicated':
        thread = draw(st.sampled_from([None, 'prefer', 'require']))
        if thread:
            specs['hw:cpu_thread_policy'] = thread
        emulator = draw(st.sampled_from([None, 'share', 'isolate']))
        if emulator:
            specs['hw:emulator_threads_policy'] = emulator
        if vcpus > 1 and draw(st.booleans()):
            specs.update({'hw:cpu_realtime': 'yes',
                          'hw:cpu_realtime_mask': '^0'})
    return b.flavor(vcpus=vcpus, memory_mb=1024 * nodes, extra_specs=specs)


def cpus(text):
    return hardware.parse_cpu_spec(text)


class NUMARenderPropertiesTest(testtools.TestCase):
    @settings(max_examples=60, deadline=None, database=None)
    @given(split=cpu_splits(), flavor=nfv_flavors())
    def test_domain_realises_any_claim(self, split, flavor):
        shared, dedicated = split
        with nfv.NFVHost(shared=hardware.format_cpu_spec(shared),
                         dedicated=hardware.format_cpu_spec(dedicated)
                         ) as host:
            image = b.image()
            claim = host.claim(flavor, image)
            if claim is None:
                return      # Nova would not place it here: nothing to render
            inst = b.instance(flavor_obj=flavor, numa_topology=claim)
            guest = nfv.plan(host, inst)
            xml = render.render_domain(guest)
            root = xml_schema.parse(xml)
            self.check_pins(root, claim, host, dedicated)
            self.check_memory(root, claim)
            self.check_emulator(root, claim, flavor, image)
            self.check_iothread(root, claim, flavor, image, host, shared)
            xml_schema.assert_valid_domain(self, xml)

    def check_pins(self, root, claim, host, dedicated):
        pins = xml_schema.findall(root, 'cputune/vcpupin')
        self.assertEqual(list(range(sum(len(c.total_cpus)
                                        for c in claim.cells))),
                         [int(p.get('vcpu')) for p in pins])
        pins = {int(p.get('vcpu')): cpus(p.get('cpuset')) for p in pins}
        for cell in claim.cells:
            for vcpu in cell.total_cpus:
                if cell.cpu_pinning and vcpu in cell.cpu_pinning:
                    self.assertEqual({cell.cpu_pinning[vcpu]}, pins[vcpu])
                    self.assertIn(cell.cpu_pinning[vcpu], dedicated)
                else:
                    self.assertEqual(host.host_cell(cell.id).cpuset,
                                     pins[vcpu])
                    self.assertFalse(pins[vcpu] & dedicated)

    def check_memory(self, root, claim):
        memnodes = xml_schema.findall(root, 'numatune/memnode')
        self.assertEqual([(str(i), 'strict', str(c.id))
                          for i, c in enumerate(claim.cells)],
                         [(m.get('cellid'), m.get('mode'), m.get('nodeset'))
                          for m in memnodes])
        self.assertEqual({c.id for c in claim.cells}, cpus(xml_schema.find(
            root, 'numatune/memory').get('nodeset')))
        large = [(str(c.pagesize), str(i)) for i, c in enumerate(claim.cells)
                 if c.pagesize and c.pagesize > 4]
        self.assertEqual(large, [
            (p.get('size'), p.get('nodeset')) for p in
            xml_schema.findall(root, 'memoryBacking/hugepages/page')])

    def check_emulator(self, root, claim, flavor, image):
        emulator = cpus(xml_schema.find(root, 'cputune/emulatorpin')
                        .get('cpuset'))
        self.assertTrue(emulator)
        realtime = hardware.get_realtime_cpu_constraint(flavor, image) or ()
        pinning = nfv.pinning(claim)
        self.assertFalse(emulator & {pinning[v] for v in realtime})
        if claim.emulator_threads_policy == 'isolate':
            self.assertEqual(claim.cells[0].cpuset_reserved, emulator)

    def check_iothread(self, root, claim, flavor, image, host, shared):
        self.assertEqual('1', xml_schema.find(root, 'iothreads').text)
        pins = xml_schema.findall(root, 'cputune/iothreadpin')
        self.assertEqual(['1'], [pin.get('iothread') for pin in pins])
        iothread = cpus(pins[0].get('cpuset'))
        realtime = hardware.get_realtime_cpu_constraint(flavor, image) or ()
        pinning = nfv.pinning(claim)
        self.assertFalse(iothread & {pinning[v] for v in realtime})
        # Nova's emulator threads placement (LibvirtDriver.
        # _get_emulatorpin_cpuset), from the claim.
        policy = claim.emulator_threads_policy
        if policy in ('isolate', 'share'):
            expected = (set().union(*(c.cpuset_reserved or ()
                                      for c in claim.cells))
                        if policy == 'isolate' else shared)
            self.assertFalse(iothread & set(pinning.values()))
        else:
            expected = set()
            for cell in claim.cells:
                for vcpu in cell.total_cpus - set(realtime):
                    expected |= ({pinning[vcpu]} if vcpu in pinning
                                 else host.host_cell(cell.id).cpuset)
        self.assertEqual(expected, iothread)
