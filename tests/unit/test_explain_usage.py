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

"""``nova-kvmx explain`` on hosts in use agrees with Nova's scheduler.

Each row is a host (the captured SNC server with its VFs, or a host
without SMT) with instances already claimed on it by Nova's own
ResourceTracker and persisted to a Nova database as nova-compute
persists them (:mod:`tests.unit.nova_host`): pinned CPUs, isolated
emulator threads, used 1G pages, small-page memory, shared CPU usage,
allocated VFs. Then a new flavor is asked about. The judge is Nova: its
NUMATopologyFilter and PciPassthroughFilter on the HostState the
scheduler's HostManager builds from that compute node record, and its
``numa_fit_instance_to_host`` on the same HostState for the host cells
and pins. explain must give the same verdict, cells and pins

- reading the usage from Nova's database (the default on a node),
- reading it back from the instances' libvirt domains (the fallback),
  rendered by our driver from the same claims, and
- reading it from a usage file saved from either;

and the no-fit reason must say what is used, by whom.
"""

import copy
import random

import ddt
from lxml import etree
from nova import exception
from nova import objects
from nova.scheduler.filters import numa_topology_filter
from nova.scheduler.filters import pci_passthrough_filter
import testtools

from nova_kvmx.cmd import domains
from nova_kvmx.cmd import explain
from nova_kvmx.cmd import hostview
from nova_kvmx.cmd import novadb
from nova_kvmx.cmd import request
from nova_kvmx.cmd import usage as host_usage
from nova_kvmx.cmd import usagefile
from tests.unit import nova_host
from tests.unit import test_explain

DED = test_explain.DED
SNC = (test_explain.snc_host, test_explain.SNC_OPTIONS)
PACK = (test_explain.snc_host, dict(test_explain.SNC_OPTIONS, compute=dict(
    test_explain.SNC_OPTIONS['compute'],
    packing_host_numa_cells_allocation_strategy=True)))
NO_SMT = (test_explain.no_smt_host, test_explain.NO_SMT_OPTIONS)
PAGES_1G = {**DED, 'hw:mem_page_size': '1GB'}
VF = {**DED, 'pci_passthrough:alias': 'vf:1'}
ISOLATE_EMU = {**DED, 'hw:emulator_threads_policy': 'isolate'}
NUMA1 = {'hw:numa_nodes': '1'}


def boots(prefix, count, vcpus, ram, specs):
    return [('%s%d' % (prefix, i), vcpus, ram, specs) for i in range(count)]


# name: (host and options, instances already there [(name, vCPUs, MiB,
#        extra specs)], the new server (vCPUs, MiB, extra specs), whether
#        Nova's filters pass it, fragments of the reasons)
ROWS = {
    'a 4-pinned guest next to three others': (
        SNC, boots('vnf', 3, 4, 1024, DED), (4, 1024, DED), True, []),
    'the fourth 4-pinned guest goes where Nova spreads it': (
        SNC, boots('vnf', 2, 4, 1024, DED) + boots('big', 1, 8, 1024, DED),
        (4, 1024, DED), True, []),
    'Nova keeps the VFs\' cell for last: 8 pinned fit there': (
        SNC, boots('vnf', 3, 4, 1024, DED), (8, 1024, DED), True, []),
    'no cell has 8 free dedicated CPUs left': (
        SNC, boots('vnf', 6, 4, 1024, DED), (8, 1024, DED), False,
        ['needs 8 free dedicated CPUs, has 4 (4 pinned by 1 instance: vnf',
         'needs 8 dedicated CPUs, has 4 in cpu_dedicated_set']),
    'a two-node guest on the cells Nova orders first': (
        SNC, boots('vnf', 2, 2, 1024, DED),
        (8, 2048, {**DED, 'hw:numa_nodes': '2'}), True, []),
    'packing: a 2-pinned guest joins the used cell': (
        PACK, boots('vnf', 1, 2, 1024, DED), (2, 1024, DED), True, []),
    'spreading: a 2-pinned guest avoids the used cell': (
        SNC, boots('vnf', 1, 2, 1024, DED), (2, 1024, DED), True, []),
    'packing with the used cells full': (
        PACK, boots('vnf', 3, 8, 1024, DED), (4, 1024, DED), True, []),
    '1G pages used on every big cell': (
        SNC, boots('db', 3, 2, 12288, PAGES_1G), (2, 8192, PAGES_1G), False,
        ['needs 8 free 1G pages, has 4 (12 used by 1 instance: db',
         'cell 0: guest node 0: needs 8 free 1G pages, has 2 (14 reserved '
         'by reserved_huge_pages)']),
    '1G pages: the new guest takes the cell with pages left': (
        SNC, boots('db', 2, 2, 12288, PAGES_1G), (2, 8192, PAGES_1G), True,
        []),
    'isolated emulator threads already hold CPUs': (
        SNC, boots('vnf', 3, 6, 1024, ISOLATE_EMU),
        (4, 1024, ISOLATE_EMU), False,
        ['needs 4 free dedicated CPUs (+1 for the emulator threads), has 1 '
         '(7 pinned by 1 instance: vnf',
         'cell 0: guest node 0: needs 4 dedicated CPUs (+1 for the emulator '
         'threads), has 4 in cpu_dedicated_set']),
    'isolated emulator threads, one cell left': (
        SNC, boots('vnf', 2, 6, 1024, ISOLATE_EMU),
        (6, 1024, ISOLATE_EMU), True, []),
    'VFs allocated: the last one': (
        SNC, boots('vf', 3, 2, 1024, VF), (2, 1024, VF), True, []),
    'VFs allocated: none left for two': (
        SNC, boots('vf', 3, 2, 1024, VF),
        (2, 1024, {**DED, 'pci_passthrough:alias': 'vf:2'}), False,
        ['PCI alias vf: needs 2 device(s)',
         'free under [pci] device_spec: 1 on NUMA node 1 (PCI devices in '
         'use by 3 instances: vf0 (1), vf1 (1), vf2 (1))']),
    'VFs all allocated, a guest without NUMA topology': (
        SNC, boots('vf', 4, 2, 1024, VF),
        (2, 1024, {'pci_passthrough:alias': 'vf:1'}), False,
        ['PCI alias vf: needs 1 device(s)', 'device_spec: none (PCI '
         'devices in use by 4 instances: vf0 (1), vf1 (1), vf2 (1), vf3 '
         '(1))']),
    'shared NUMA guests use up cell 0\'s CPU allowance': (
        SNC, boots('web', 4, 4, 1024, NUMA1), (1, 512, NUMA1), False,
        ['needs 1 shared CPUs, the cell allows 16 (cpu_allocation_ratio 4)'
         ' (16 used by 4 instances: web0 (4), web1 (4), web2 (4), web3 (4))',
         'Placement: VCPU: needs 1, 0 free of 16 (16 used by 4 instances',
         'needs 1 shared CPUs, has 0 in cpu_shared_set']),
    'small-page memory of pinned guests': (
        SNC, boots('mem', 4, 2, 32768, DED), (2, 20480, DED), False,
        ['needs 20480 MiB of 4K-page memory (no hw:mem_page_size), has ',
         'MiB used by 1 instance: mem']),
    'a mixed guest, then another': (
        SNC, boots('mix', 1, 4, 1024, {'hw:cpu_policy': 'mixed',
                                       'hw:cpu_dedicated_mask': '^0'}),
        (3, 1024, {'hw:cpu_policy': 'mixed', 'hw:cpu_dedicated_mask': '^0'}),
        False, ['cell 0: guest node 0: needs 2 free dedicated CPUs, has 1 '
                '(3 pinned by 1 instance: mix0 (', 'cells 1-3: guest node '
                '0: needs 1 shared CPUs, has 0 in cpu_shared_set']),
    'a mixed guest, then a smaller one': (
        SNC, boots('mix', 1, 4, 1024, {'hw:cpu_policy': 'mixed',
                                       'hw:cpu_dedicated_mask': '^0'}),
        (2, 1024, {'hw:cpu_policy': 'mixed', 'hw:cpu_dedicated_mask': '^0'}),
        True, []),
    'no SMT: thread isolation next to another': (
        NO_SMT, boots('iso', 1, 3, 1024, {**DED,
                                          'hw:cpu_thread_policy': 'isolate'}),
        (4, 1024, {**DED, 'hw:cpu_thread_policy': 'isolate'}), False,
        ['cell 0: guest node 0: needs 4 dedicated CPUs, has 3 in '
         'cpu_dedicated_set', 'cell 1: guest node 0: needs 4 free dedicated '
         'CPUs, has 1 (3 pinned by 1 instance: iso0 (']),
    'no SMT: thread isolation, a smaller one': (
        NO_SMT, boots('iso', 1, 3, 1024, {**DED,
                                          'hw:cpu_thread_policy': 'isolate'}),
        (3, 1024, {**DED, 'hw:cpu_thread_policy': 'isolate'}), True, []),
    'no SMT: both cells partly pinned': (
        NO_SMT, boots('a', 1, 3, 1024, DED) + boots('b', 1, 2, 1024, DED),
        (3, 1024, DED), False,
        ['Placement: PCPU: needs 3, 2 free of 7 (5 used by 2 instances: '
         'a0 (3), b0 (2))', 'cell 0: guest node 0: needs 3 free dedicated '
         'CPUs, has 1 (2 pinned by 1 instance: b0 (1-2))', 'cell 1: guest '
         'node 0: needs 3 free dedicated CPUs, has 1 (3 pinned by 1 '
         'instance: a0 (4-6))']),
}


def nova_filters_pass(state, req):
    spec = req.spec.obj_clone()
    return all(f.host_passes(copy.copy(state), spec) for f in (
        numa_topology_filter.NUMATopologyFilter(),
        pci_passthrough_filter.PciPassthroughFilter()))


def with_hostdevs(xml, addresses):
    """The domain with ``<hostdev>`` devices of the PCI addresses (our
    explain domain XML leaves PCI devices out)."""
    root = etree.fromstring(xml)
    devices = root.find('devices')
    for address in addresses:
        dom, bus, rest = address.split(':')
        slot, function = rest.split('.')
        hostdev = etree.SubElement(devices, 'hostdev', mode='subsystem',
                                   type='pci', managed='yes')
        etree.SubElement(etree.SubElement(hostdev, 'source'), 'address',
                         domain='0x' + dom, bus='0x' + bus,
                         slot='0x' + slot, function='0x' + function)
    return etree.tostring(root, encoding='unicode')


class AgreementMixin:
    """For an ExplainTestCase: a host in use, its domains, the checks."""

    def host_in_use(self, host, options, instances):
        self.configure(options)
        facts = host()
        node = self.useFixture(nova_host.NovaHost(facts))
        for name, vcpus, ram, specs in instances:
            node.boot(name, vcpus, ram, extra_specs=specs)
        return facts, node

    def domains(self, facts, node):
        """Each instance's domain, rendered by the driver from its claim."""
        result = []
        for index, inst in enumerate(node.instances):
            inst = objects.Instance.get_by_uuid(
                node.context, inst.uuid,
                expected_attrs=['numa_topology', 'pci_devices', 'flavor'])
            req = request.build(inst.flavor.vcpus, inst.flavor.memory_mb,
                                extra_specs=inst.flavor.extra_specs)
            xml = explain.domain_xml(facts, req, inst.numa_topology,
                                     name=inst.display_name,
                                     instance_id=index + 1,
                                     instance_uuid=inst.uuid)
            result.append((with_hostdevs(xml, [
                d.address for d in inst.pci_devices]), True))
        return result

    def assertAgrees(self, result, state, req, usage_name):
        nova_claim = nova_host.nova_fit(state, req)
        self.assertEqual(nova_filters_pass(state, req), result.fits_filters,
                         usage_name)
        if req.numa_topology is not None:
            self.assertEqual(nova_host.claim_key(nova_claim),
                             nova_host.claim_key(result.fitted), usage_name)


@ddt.ddt
class UsageAgreementTest(AgreementMixin, test_explain.ExplainTestCase):

    @ddt.named_data(*sorted([name, row] for name, row in ROWS.items()))
    def test_agrees_with_nova_on_a_host_in_use(self, row):
        (host, options), instances, (vcpus, ram, specs), fits, fragments = row
        facts, node = self.host_in_use(host, options, instances)
        req = request.build(vcpus, ram, extra_specs=specs)
        state = node.host_state()

        # From Nova's database, as on the node.
        usage = novadb.local_usage(node.url, nova_host.HOST)[1]
        from_db = explain.explain_view(hostview.from_facts(facts, usage),
                                       req)
        self.assertAgrees(from_db, state, req, 'database')
        self.assertEqual(fits, from_db.fits_filters)
        reasons = '\n'.join(from_db.reasons)
        for fragment in fragments:
            self.assertIn(fragment, reasons)
        if from_db.fits:
            self.assertEqual([], from_db.reasons)
        self.assertEqual(len(instances), len(from_db.usage['instances']))

        # From the domains the driver rendered from the same claims.
        from_domains = domains.usage_from_domains(
            self.domains(facts, node), hostview.host_numa(facts), 'test')
        self.assertEqual([], from_domains.notes)
        self.assertCellsEqual(usage.numa, host_usage.numa_with_usage(
            hostview.host_numa(facts), from_domains))
        by_domains = explain.explain_view(
            hostview.from_facts(facts, from_domains), req)
        self.assertAgrees(by_domains, state, req, 'libvirt domains')
        self.assertEqual(usage.used(), from_domains.used())

        # From a usage file saved from the database's usage.
        path = self.useFixture(test_explain.fixtures.TempDir()).path + \
            '/usage.yaml'
        usagefile.save(usage, path)
        by_file = explain.explain_view(
            hostview.from_facts(facts, usagefile.load(path)), req)
        self.assertAgrees(by_file, state, req, 'usage file')
        self.assertEqual(from_db.reasons, by_file.reasons)

    def assertCellsEqual(self, record, counted):
        """The compute node record's usage per cell equals Nova's
        accounting of the claims read back from the domains."""
        def usage_of(numa):
            return [(c.id, sorted(c.pinned_cpus), c.cpu_usage,
                     c.memory_usage, sorted((p.size_kb, p.used)
                                            for p in c.mempages))
                    for c in numa.cells]
        self.assertEqual(usage_of(record), usage_of(counted))


class UsageFromNovaTest(test_explain.ExplainTestCase):
    """What explain reads from Nova's database."""

    def setUp(self):
        super().setUp()
        self.configure(test_explain.SNC_OPTIONS)
        self.facts = test_explain.snc_host()
        self.node = self.useFixture(nova_host.NovaHost(self.facts))

    def test_empty_host_is_the_empty_host(self):
        usage = novadb.local_usage(self.node.url, nova_host.HOST)[1]
        req = request.build(8, 8192, extra_specs=test_explain.DED)
        empty = explain.explain(self.facts, req)
        from_db = explain.explain_view(
            hostview.from_facts(self.facts, usage), req)
        self.assertEqual(nova_host.claim_key(empty.fitted),
                         nova_host.claim_key(from_db.fitted))
        self.assertIn('Nova\'s database at sqlite:///', usage.source)
        self.assertIn('compute node compute1/node1', usage.source)
        self.assertIn('The host is taken as empty', ' '.join(empty.notes))
        self.assertNotIn('The host is taken as empty',
                         ' '.join(from_db.notes))

    def test_what_each_instance_holds(self):
        inst = self.node.boot('vnf', 4, 4096, extra_specs={
            **PAGES_1G, 'pci_passthrough:alias': 'vf:1'})
        usage = novadb.local_usage(self.node.url, nova_host.HOST)[1]
        [consumer] = usage.consumers
        self.assertEqual(('vnf', inst.uuid), (consumer.name, consumer.uuid))
        self.assertEqual({'PCPU': 4, 'MEMORY_MB': 4096},
                         consumer.resources)
        [device] = consumer.pci_devices
        self.assertTrue(device.startswith('0000:81:02.'))
        [cell] = consumer.claim.cells
        self.assertEqual(1, cell.id)    # where the VF is
        self.assertEqual(4, len(cell.cpu_pinning))

    def test_record_differing_from_the_driver_is_noted(self):
        usage = novadb.local_usage(self.node.url, nova_host.HOST)[1]
        self.configure({'compute': {'cpu_shared_set': '0-3,16-19',
                                    'cpu_dedicated_set': '4-15,20-31'}})
        result = explain.explain_view(
            hostview.from_facts(self.facts, usage), request.build(1, 512))
        self.assertIn('Nova\'s compute node record differs from what the '
                      'driver reports under this nova.conf (cell 0 cpuset, '
                      'cell 0 pcpuset)', ' '.join(result.notes))

    def test_unknown_host(self):
        ex = self.assertRaises(novadb.NodeNotFound, novadb.local_usage,
                               self.node.url, 'compute9')
        self.assertIn('has no compute node of host compute9 (compute1/'
                      'node1)', ex.format_message())

    def test_unreachable_database(self):
        url = 'sqlite:////nonexistent/dir/nova.sqlite'
        ex = self.assertRaises(novadb.DatabaseUnreachable,
                               novadb.local_usage, url, 'compute1')
        self.assertIn('Cannot read Nova\'s database at %s' % url,
                      ex.format_message())

    def test_password_is_not_printed(self):
        self.assertEqual(
            'mysql+pymysql://nova:***@db.example:3306/nova',
            novadb.masked('mysql+pymysql://nova:s3cret@db.example:3306/nova'
                          '?charset=utf8'))


class PlainUsageTest(testtools.TestCase):

    def test_by_whom(self):
        self.assertEqual('by 2 instances: b (3), a (1); 2 unaccounted for',
                         host_usage.by_whom(6, {'a': 1, 'b': 3}))
        self.assertEqual('', host_usage.by_whom(6, {}))
        many = {'i%d' % i: 1 for i in range(7)}
        self.assertTrue(host_usage.by_whom(7, many).endswith(
            'i4 (1) and 2 more'))


NOVA_NS = 'http://openstack.org/xmlns/libvirt/nova/1.1'
PINNED_DOMAIN = ''.join('''<domain type="kvm">
  <name>%(name)s</name><uuid>%(uuid)s</uuid>
  <metadata><nova:instance xmlns:nova="%(ns)s">
    <nova:name>%(display)s</nova:name></nova:instance></metadata>
  <memory unit="KiB">2097152</memory><vcpu>2</vcpu>
  <cputune><vcpupin vcpu="0" cpuset="%(pin0)s"/>
    <vcpupin vcpu="1" cpuset="%(pin1)s"/>
    <emulatorpin cpuset="%(emulator)s"/></cputune>
  <numatune><memory mode="strict" nodeset="1"/>
    <memnode cellid="0" mode="strict" nodeset="1"/></numatune>
  <cpu><numa><cell id="0" cpus="0-1" memory="2097152" unit="KiB"/></numa>
  </cpu>
  <memoryBacking><hugepages>
    <page size="1048576" unit="KiB" nodeset="0"/></hugepages></memoryBacking>
  <devices><interface type="hostdev"><source>
    <address type="pci" domain="0x0000" bus="0x81" slot="0x02"
     function="0x1"/></source></interface></devices>
</domain>''')
FLOATING_DOMAIN = '''<domain type="kvm"><name>web</name><uuid>%s</uuid>
  <memory unit="MiB">512</memory><vcpu cpuset="0-1,16-17">2</vcpu></domain>'''


class DomainsTest(test_explain.ExplainTestCase):
    """Claims read back from libvirt domains, and what they cannot be."""

    def setUp(self):
        super().setUp()
        self.configure(test_explain.SNC_OPTIONS)
        self.facts = test_explain.snc_host()
        self.numa = hostview.host_numa(self.facts)

    def pinned(self, name, pin0, pin1, emulator, uuid):
        return PINNED_DOMAIN % {'name': name, 'uuid': uuid, 'pin0': pin0,
                                'pin1': pin1, 'emulator': emulator,
                                'display': 'vnf-' + name, 'ns': NOVA_NS}

    def test_a_pinned_domain_with_an_isolated_emulator_thread(self):
        usage = domains.usage_from_domains([
            (self.pinned('a', 4, 20, 5,
                         '11111111-1111-4111-8111-111111111111'), False)],
            self.numa, 'test')
        [consumer] = usage.consumers
        self.assertEqual('vnf-a [a]', consumer.name)
        self.assertEqual('test (1 domains, 0 running)', usage.source)
        [cell] = consumer.claim.cells
        self.assertEqual((1, {0: 4, 1: 20}, {5}, 1048576, 2048), (
            cell.id, cell.cpu_pinning, cell.cpuset_reserved, cell.pagesize,
            cell.memory))
        self.assertEqual({'PCPU': 3, 'MEMORY_MB': 2048}, consumer.resources)
        self.assertEqual(('0000:81:02.1',), consumer.pci_devices)
        view = hostview.from_facts(self.facts, usage)
        host_cell = view.numa.cells[1]
        self.assertEqual({4, 5, 20}, host_cell.pinned_cpus)
        self.assertEqual(2, [p for p in host_cell.mempages
                             if p.size_kb == 1048576][0].used)
        # The VF it was given is no longer in the pools.
        self.assertEqual(3, sum(p['count'] for p in view.pci_pools.pools))

    def test_domains_pinned_over_one_another(self):
        usage = domains.usage_from_domains([
            (self.pinned('a', 4, 20, '4,20', '11111111-1111-4111-8111-'
                         '111111111111'), True),
            (self.pinned('b', 20, 21, '20-21', '22222222-2222-4222-8222-'
                         '222222222222'), True)], self.numa, 'test')
        numa = host_usage.numa_with_usage(self.numa, usage)
        self.assertEqual({4, 20, 21}, numa.cells[1].pinned_cpus)
        [note] = usage.notes
        self.assertIn('vnf-b [b]: ', note)
        self.assertIn('its CPUs already pinned are not counted twice', note)

    def test_a_guest_without_numa_topology(self):
        usage = domains.usage_from_domains(
            [(FLOATING_DOMAIN % '33333333-3333-4333-8333-333333333333',
              True)], self.numa, 'test')
        [consumer] = usage.consumers
        self.assertIsNone(consumer.claim)
        self.assertEqual({'VCPU': 2, 'MEMORY_MB': 512}, consumer.resources)
        numa = host_usage.numa_with_usage(self.numa, usage)
        # Nova counts such guests in Placement only.
        self.assertEqual([0, 0, 0, 0], [c.cpu_usage for c in numa.cells])


# Flavors instances and requests are drawn from for RandomHostsTest.
MENU = [
    (2, 1024, DED), (4, 2048, DED), (6, 1024, DED), (8, 2048, DED),
    (2, 4096, PAGES_1G), (4, 8192, PAGES_1G), (2, 1024, VF),
    (3, 1024, ISOLATE_EMU), (2, 2048, NUMA1), (4, 1024, NUMA1),
    (4, 4096, {**DED, 'hw:numa_nodes': '2'}),
    (8, 8192, {**PAGES_1G, 'hw:numa_nodes': '2'}),
    (4, 1024, {'hw:cpu_policy': 'mixed', 'hw:cpu_dedicated_mask': '^0'}),
    (2, 16384, DED), (2, 30000, DED),
    (4, 2048, {**DED, 'hw:cpu_thread_policy': 'require'}),
    (2, 1024, {**DED, 'pci_passthrough:alias': 'vf:2',
               'hw:pci_numa_affinity_policy': 'preferred'}),
    (1, 512, {'pci_passthrough:alias': 'vf:1'}),
    (3, 1024, {**DED, 'hw:cpu_realtime': 'yes', 'hw:cpu_realtime_mask': '^0',
               'hw:emulator_threads_policy': 'isolate'}),
]


@ddt.ddt
class RandomHostsTest(AgreementMixin, test_explain.ExplainTestCase):
    """Hosts filled with up to twenty instances drawn at random (seeded:
    the same hosts every run) from MENU, spreading or packing; whatever
    Nova's claim refuses is not on the host. Then a random request:
    explain from the database and from the domains agrees with Nova every
    time. About half of these hosts are too full for the request, and on
    most of the others usage moves the guest to other cells or pins than
    on the empty host, so ignoring usage fails here."""

    @ddt.data(*range(16))
    def test_random_host_in_use(self, seed):
        rnd = random.Random(seed)
        host, options = PACK if rnd.random() < 0.3 else SNC
        self.configure(options)
        facts = host()
        node = self.useFixture(nova_host.NovaHost(facts))
        for i in range(rnd.randint(0, 20)):
            vcpus, ram, specs = rnd.choice(MENU)
            try:
                node.boot('i%d' % i, vcpus, ram, extra_specs=specs)
            except exception.ComputeResourcesUnavailable:
                pass    # Nova would not have put it there either
        vcpus, ram, specs = rnd.choice(MENU)
        req = request.build(vcpus, ram, extra_specs=specs)
        state = node.host_state()

        usage = novadb.local_usage(node.url, nova_host.HOST)[1]
        self.assertEqual(len(node.instances), len(usage.consumers))
        from_db = explain.explain_view(hostview.from_facts(facts, usage),
                                       req)
        self.assertAgrees(from_db, state, req, 'database')
        self.assertEqual(from_db.fits, not from_db.reasons)

        from_domains = domains.usage_from_domains(
            self.domains(facts, node), hostview.host_numa(facts), 'test')
        self.assertEqual([], from_domains.notes)
        self.assertEqual(usage.used(), from_domains.used())
        self.assertAgrees(explain.explain_view(
            hostview.from_facts(facts, from_domains), req), state, req,
            'libvirt domains')
