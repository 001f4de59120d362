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

"""Live migration between host shapes this machine lacks, on Nova's fake
libvirt.

Two compute services, each on its own fake libvirt host with two NUMA
nodes (and SR-IOV VFs where a test needs them), sharing one instances
directory (shared instance storage). libvirt's migration itself is what
the fake cannot do: ``migrateToURI3`` is replaced, as in Nova's own NUMA
live migration tests, by a step that records what the driver asked of
libvirt, defines the incoming domain on the destination host from the
XML the driver sent and ends the source's job (completed or failed).
Everything else is real: Nova's API, conductor, scheduler, claims, PCI
tracker and Placement, and the driver on both hosts.

tests/functional/test_live_migration.py migrates real guests between two
real libvirt hosts on this machine (one NUMA node, no VFs).
"""

import os
import threading
import time
from unittest import mock

import fixtures
from lxml import etree
from nova import objects
from nova.tests.fixtures import libvirt as fakelibvirt
from nova.virt.libvirt import guest as libvirt_guest
from oslo_serialization import jsonutils
from oslo_utils import uuidutils

from tests.functional import base
from tests.functional import fake_host
from tests.functional import test_sriov

# Two NUMA nodes of two cores x two threads: CPUs 0-3 and 4-7; 2 MiB
# pages on both.
PAGES = [fakelibvirt.create_mempages([(4, 1024 * 1024), (2048, 1024)])
         for _ in range(2)]
LM_ALIAS = jsonutils.dumps({
    'name': 'lm-vf', 'vendor_id': fakelibvirt.PCI_VEND_ID,
    'product_id': fakelibvirt.VF_PROD_ID, 'device_type': 'type-VF',
    'live_migratable': 'yes'})
LM_DEVICE_SPEC = [jsonutils.dumps(dict(spec, live_migratable='yes'))
                  for spec in (jsonutils.loads(s)
                               for s in test_sriov.DEVICE_SPEC)]


def two_node_host(mempages=PAGES):
    return fakelibvirt.HostInfo(cpu_nodes=2, cpu_sockets=1, cpu_cores=2,
                                cpu_threads=2, kB_mem=16 * 1024 * 1024,
                                mempages=mempages)


class NoNodeDeviceEvents(fixtures.Fixture):
    """Nova's fake libvirt has no node-device events (not even their
    constants): make it the libvirt that does not support them, which the
    driver handles by reading the devices in every periodic task."""

    def _setUp(self):
        for name, value in (('VIR_NODE_DEVICE_EVENT_ID_LIFECYCLE', 0),
                            ('VIR_NODE_DEVICE_EVENT_ID_UPDATE', 1)):
            self.useFixture(fixtures.MonkeyPatch(
                'nova.tests.fixtures.libvirt.' + name, value))

        def unsupported(conn, *args, **kwargs):
            raise fakelibvirt.make_libvirtError(
                fakelibvirt.libvirtError, 'no node-device events',
                error_code=fakelibvirt.VIR_ERR_NO_SUPPORT)

        self.useFixture(fixtures.MonkeyPatch(
            'nova.tests.fixtures.libvirt.Connection.'
            'nodeDeviceEventRegisterAny', unsupported))


class FakeTwoHostsTestCase(fake_host.FakeLibvirtTestCase):

    def setUp(self):
        super().setUp()
        self.useFixture(NoNodeDeviceEvents())
        self.flags(cpu_dedicated_set='0-7', cpu_shared_set=None,
                   group='compute')
        self.flags(live_migration_monitor_interval=1, group='libvirt')
        self.flags(device_spec=LM_DEVICE_SPEC,
                   alias=test_sriov.ALIAS + [LM_ALIAS], group='pci')
        self.neutron._networks[self.neutron.network_2['id']] = \
            self.neutron.network_2
        self.useFixture(fixtures.MonkeyPatch(
            'nova.tests.fixtures.libvirt.Domain.migrateToURI3',
            self._migrate))
        self.useFixture(fixtures.MonkeyPatch(
            'nova.tests.fixtures.libvirt.Domain.XMLDesc',
            self._migratable_xml(fakelibvirt.Domain.XMLDesc)))
        self.attached_xml = []
        real_attach = libvirt_guest.Guest.attach_device

        def attach_device(guest, conf, persistent=False, live=False):
            self.attached_xml.append(conf.to_xml())
            return real_attach(guest, conf, persistent, live)

        self.useFixture(fixtures.MonkeyPatch(
            'nova.virt.libvirt.guest.Guest.attach_device', attach_device))
        self.hosts = {}
        self.computes = {}
        self.migrations = []
        self.outcome = 'complete'
        self.image_id = self.create_image()

    def start_host(self, name, host_info=None, pci_info=None):
        pci_info = pci_info or fakelibvirt.HostPCIDevicesInfo(
            num_pci=0, num_pfs=0, num_vfs=0)
        conn = fakelibvirt.Connection(
            'qemu:///system', version=fakelibvirt.FAKE_LIBVIRT_VERSION,
            hv_version=fakelibvirt.FAKE_QEMU_VERSION,
            host_info=host_info or two_node_host(), pci_info=pci_info,
            hostname=name)
        self.mock_conn.return_value = conn
        self.libvirt.update_sriov_mac_address_mapping(
            pci_info.get_pci_address_mac_mapping())
        # One process, two nodes: each needs its own node UUID.
        with mock.patch('nova.virt.node.get_local_node_uuid',
                        return_value=uuidutils.generate_uuid()):
            compute = self.start_service('compute', host=name)
        compute.driver._host.get_connection = lambda: conn
        self.hosts[name] = conn
        self.computes[name] = compute
        return compute

    def run_periodics(self):
        """The resource tracker's periodic task on every host (the
        source counts a migrated guest until it runs)."""
        for compute in self.computes.values():
            compute.manager.update_available_resource(self.ctxt)

    def _migratable_xml(self, fake_xml_desc):
        """Nova's fake libvirt keeps only part of a domain's XML: not its
        ``<cpu>`` (the guest NUMA cells) nor its ``<memoryBacking>``, which
        libvirt's migratable XML has. Those two come from the XML the
        driver defined, the rest (devices as attached now) from the
        fake."""
        def xml_desc(domain, flags=0):
            xml = fake_xml_desc(domain, flags)
            if not flags & fakelibvirt.VIR_DOMAIN_XML_MIGRATABLE:
                return xml
            root = etree.fromstring(xml)
            defined = self.given_xml({'id': domain.UUIDString()})
            for tag in ('cpu', 'memoryBacking'):
                if root.find(tag) is None and defined.find(tag) is not None:
                    root.append(defined.find(tag))
            return etree.tostring(root, encoding='unicode')
        return xml_desc

    def _migrate(self, domain, destination, params, flags):
        """What libvirt's peer-to-peer migration would do, as far as the
        fake allows: the domain appears on the destination from the XML
        the driver sent, the source's job ends."""
        self.migrations.append({'uri': destination, 'params': params,
                                'flags': flags,
                                'source_xml': domain.XMLDesc(0)})
        dest = self.hosts[self.dest_host]
        dest.defineXML(params['destination_xml']).create()
        if self.outcome == 'complete':
            domain.complete_job()
        else:
            domain.fail_job()

    def boot(self, host, vcpus=2, networks='none', **extra_specs):
        """A pinned server on ``host`` (the hosts have dedicated CPUs
        only); ``hw_foo`` stands for ``hw:foo``."""
        extra_specs.setdefault('hw_cpu_policy', 'dedicated')
        flavor_id = self._create_flavor(
            name='nfv.%s' % uuidutils.generate_uuid()[:8], vcpu=vcpus,
            memory_mb=1024, disk=1, ephemeral=0, extra_spec={
                key.replace('hw_', 'hw:', 1): value
                for key, value in extra_specs.items()})
        return self._create_server(
            image_uuid=self.image_id, flavor_id=flavor_id, networks=networks,
            host=host)

    def live_migrate(self, server, host, expected='completed'):
        self.dest_host = host
        self.api.post_server_action(server['id'], {'os-migrateLive': {
            'host': host, 'block_migration': 'auto'}})
        self.assertEqual(expected, self.wait_for_migration_end(server))
        return self._wait_for_state_change(server, 'ACTIVE')

    def wait_for_migration_end(self, server, timeout=base.STATE_TIMEOUT):
        """The final status of the server's live migration."""
        deadline = time.monotonic() + timeout
        while True:
            migrations = self.api.api_get(
                '/os-migrations?instance_uuid=%s' % server['id']
            ).body['migrations']
            if migrations and migrations[-1]['status'] in (
                    'completed', 'failed', 'error', 'cancelled'):
                return migrations[-1]['status']
            if time.monotonic() > deadline:
                self.fail('live migration of %s not over after %ds' % (
                    server['id'], timeout))
            time.sleep(0.2)

    def pinned_cpus(self, host):
        node = objects.ComputeNode.get_by_nodename(self.ctxt, host)
        return {cell.id: cell.pinned_cpus for cell in
                objects.NUMATopology.obj_from_db_obj(
                    node.numa_topology).cells}

    def sent_xml(self):
        """The destination domain the driver gave libvirt. Not checked
        against libvirt's schema: it is the fake's own (partial, not
        schema-valid) XML of the source, rewritten; tests/unit/
        test_migration_xml.py checks rewritten domains."""
        return etree.fromstring(
            self.migrations[-1]['params']['destination_xml'])

    def held_xml(self, host, server):
        return etree.fromstring(self.hosts[host].lookupByUUIDString(
            server['id']).XMLDesc(0))

    def has_domain(self, host, server):
        return server['id'] in [d.UUIDString() for d in
                                self.hosts[host]._vms.values()]

    def allocation_hosts(self, server):
        allocations = self.placement.get(
            '/allocations/%s' % server['id']).body['allocations']
        return {self.placement.get('/resource_providers/%s' % rp).body[
            'name'] for rp in allocations}

    def events(self, server):
        action = [a for a in self.api.get_instance_actions(server['id'])
                  if a['action'] == 'live-migration'][-1]
        return {e['event']: e for e in self.api.get_instance_action_details(
            server['id'], action['request_id'])['events']}


class NUMALiveMigrationTest(FakeTwoHostsTestCase):

    def test_destination_xml_carries_the_destination_claim(self):
        self.start_host('host_a')
        self.start_host('host_b')
        server = self.boot('host_a', hw_cpu_policy='dedicated',
                           hw_mem_page_size='2MB',
                           hw_emulator_threads_policy='isolate')
        source_claim = self.claim(server)
        self.assertEqual(0, source_claim.cells[0].id)
        # Node 0 of the destination is taken: the guest must go to node 1.
        self.boot('host_b', vcpus=4, hw_cpu_policy='dedicated')
        self.assertEqual({0: {0, 1, 2, 3}, 1: set()},
                         self.pinned_cpus('host_b'))

        server = self.live_migrate(server, 'host_b')
        self.assertEqual('host_b', server['OS-EXT-SRV-ATTR:host'])
        claim = self.claim(server)
        self.assertEqual(1, claim.cells[0].id)
        pins = claim.cells[0].cpu_pinning
        self.assertTrue(set(pins.values()) <= {4, 5, 6, 7})

        root = self.sent_xml()
        self.assertEqual(
            {vcpu: str(cpu) for vcpu, cpu in pins.items()},
            {int(p.get('vcpu')): p.get('cpuset')
             for p in root.findall('cputune/vcpupin')})
        self.assertEqual(
            [str(cpu) for cpu in claim.cells[0].cpuset_reserved],
            [root.find('cputune/emulatorpin').get('cpuset')])
        self.assertEqual(
            [str(cpu) for cpu in claim.cells[0].cpuset_reserved],
            [pin.get('cpuset') for pin in root.findall(
                'cputune/iothreadpin')])
        self.assertEqual('1', root.find(
            "numatune/memnode[@cellid='0']").get('nodeset'))
        self.assertEqual('1', root.find('numatune/memory').get('nodeset'))
        self.assertEqual(('2048', '0'), tuple(
            root.find('memoryBacking/hugepages/page').get(k)
            for k in ('size', 'nodeset')))
        # The source's domain had the source's claim.
        source = etree.fromstring(self.migrations[-1]['source_xml'])
        self.assertEqual('0', source.find(
            "numatune/memnode[@cellid='0']").get('nodeset'))

        # Shared instance storage: no disk copied, nothing removed.
        migration = self.migrations[-1]
        self.assertEqual('qemu+tcp://host_b/system', migration['uri'])
        self.assertFalse(migration['flags'] &
                         fakelibvirt.VIR_MIGRATE_NON_SHARED_INC)
        self.assertNotIn('migrate_disks', migration['params'])
        self.assertTrue(os.path.exists(os.path.join(
            self.instances_path, server['id'], 'disk')))
        # The claim moved: CPUs on the destination's node 1, none left on
        # the source; the domain is gone from the source.
        self.run_periodics()
        self.assertEqual(set(), self.pinned_cpus('host_a')[0])
        self.assertEqual(set(pins.values()) |
                         set(claim.cells[0].cpuset_reserved),
                         self.pinned_cpus('host_b')[1])
        self.assertFalse(self.has_domain('host_a', server))
        self.assertEqual({'host_b'}, self.allocation_hosts(server))

    def test_failed_migration_is_rolled_back_on_both_hosts(self):
        self.start_host('host_a')
        self.start_host('host_b')
        server = self.boot('host_a', hw_cpu_policy='dedicated')
        self.outcome = 'fail'
        server = self.live_migrate(server, 'host_b', expected='failed')
        self.assertEqual('host_a', server['OS-EXT-SRV-ATTR:host'])
        # The incoming domain libvirt would have left is removed, the
        # claim on the destination dropped, the guest still at the source.
        self.assertFalse(self.has_domain('host_b', server))
        self.assertTrue(self.has_domain('host_a', server))
        self.assertEqual({0: set(), 1: set()}, self.pinned_cpus('host_b'))
        self.assertEqual({0: {0, 1}, 1: set()}, self.pinned_cpus('host_a'))
        self.assertEqual({'host_a'}, self.allocation_hosts(server))
        self.assertTrue(os.path.exists(os.path.join(
            self.instances_path, server['id'], 'disk')))
        event = self.events(server)['compute_live_migration_failure']
        self.assertEqual('Error', event['result'])
        self.assertIn('Live migration to host_b failed, the guest carried '
                      'on at host_a', event['details'])


class BadDestinationTest(FakeTwoHostsTestCase):
    """A destination without what the guest claimed: a clear error, the
    guest still at the source, nothing of it at the destination."""

    def assert_nothing_moved(self, server, dest='host_b'):
        server = self._wait_for_state_change(server, 'ACTIVE')
        self.assertEqual('host_a', server['OS-EXT-SRV-ATTR:host'])
        self.assertTrue(self.has_domain('host_a', server))
        self.assertFalse(self.has_domain(dest, server))
        self.assertEqual([], self.migrations)
        self.assertEqual({'host_a'}, self.allocation_hosts(server))
        self.assertEqual(set(), set().union(
            *self.pinned_cpus(dest).values()) - self.dest_pinned)
        self.assertEqual([], [
            d.address for d in objects.PciDeviceList.get_by_compute_node(
                self.ctxt, self.node_id(dest))
            if d.instance_uuid == server['id']])

    def node_id(self, host):
        return objects.ComputeNode.get_by_nodename(self.ctxt, host).id

    def migrate_and_fail(self, server):
        self.dest_host = 'host_b'
        self.dest_pinned = set().union(*self.pinned_cpus('host_b').values())
        self.api.post_server_action(server['id'], {'os-migrateLive': {
            'host': 'host_b', 'block_migration': 'auto'}})
        # 'failed' when the destination refused, 'error' from the
        # conductor; Nova may end a refused one as either.
        self.assertIn(self.wait_for_migration_end(server),
                      ('error', 'failed'))
        self.assert_nothing_moved(server)
        return self.events(server)

    def test_destination_without_the_page_size(self):
        self.start_host('host_a')
        self.start_host('host_b', host_info=two_node_host(mempages=[
            fakelibvirt.create_mempages([(4, 2 * 1024 * 1024)])] * 2))
        server = self.boot('host_a', hw_cpu_policy='dedicated',
                           hw_mem_page_size='2MB')
        events = self.migrate_and_fail(server)
        self.assertIn('No valid host', events[
            'conductor_live_migrate_instance']['details'])

    def test_destination_without_free_pinned_cpus(self):
        self.start_host('host_a')
        self.start_host('host_b')
        server = self.boot('host_a', hw_cpu_policy='dedicated')
        for _ in range(2):
            self.boot('host_b', vcpus=4, hw_cpu_policy='dedicated')
        events = self.migrate_and_fail(server)
        self.assertIn('No valid host', events[
            'conductor_live_migrate_instance']['details'])

    def test_destination_without_a_pci_device(self):
        self.start_host('host_a', pci_info=fakelibvirt.HostPCIDevicesInfo(
            num_pfs=1, num_vfs=2))
        self.start_host('host_b')
        server = self.boot('host_a', **{'pci_passthrough:alias': 'lm-vf:1'})
        events = self.migrate_and_fail(server)
        self.assertIn('No valid host', events[
            'conductor_live_migrate_instance']['details'])

    def test_claimed_device_gone_from_the_destination(self):
        """Nova's PCI tracker claims a VF its last report listed, but the
        destination's libvirt no longer has it: the destination refuses
        before anything is created."""
        self.start_host('host_a', pci_info=fakelibvirt.HostPCIDevicesInfo(
            num_pfs=1, num_vfs=2))
        dest_pci = fakelibvirt.HostPCIDevicesInfo(num_pfs=1, num_vfs=2,
                                                  bus=0x82)
        self.start_host('host_b', pci_info=dest_pci)
        server = self.boot('host_a', **{'pci_passthrough:alias': 'lm-vf:1'})
        for name in [n for n, d in dest_pci.devices.items()
                     if d.dev_type == 'VF']:
            del dest_pci.devices[name]
        events = self.migrate_and_fail(server)
        self.assertRegex(
            events['compute_pre_live_migration']['details'],
            r'PCI device 0000:82:0[0-9a-f]\.[0-7] claimed for the '
            r"flavor's PCI alias request is not on this host")


class SRIOVLiveMigrationTest(FakeTwoHostsTestCase):

    def test_direct_port_unplugged_before_and_plugged_after(self):
        self.start_host('host_a', pci_info=fakelibvirt.HostPCIDevicesInfo(
            num_pfs=1, num_vfs=2))
        self.start_host('host_b', pci_info=fakelibvirt.HostPCIDevicesInfo(
            num_pfs=1, num_vfs=2, bus=0x82))
        port = test_sriov.SRIOVTestBase.add_port(self, 'direct', vlan=100)
        server = self.boot('host_a', networks=[{'port': port['id']}])
        source_vf = self.neutron.show_port(port['id'])['port'][
            'binding:profile']['pci_slot']
        self.assertTrue(source_vf.startswith('0000:81:'))
        self.assertEqual([port['mac_address']], [
            m.get('address') for m in self.held_xml('host_a', server)
            .findall('devices/interface/mac')])

        server = self.live_migrate(server, 'host_b')
        # The port was out of the guest while it moved: neither the source
        # domain at that time nor the XML sent have it.
        migration = self.migrations[-1]
        self.assertEqual([], etree.fromstring(migration['source_xml'])
                         .findall('devices/interface'))
        self.assertEqual([], self.sent_xml().findall('devices/interface'))
        # On the destination the guest has it back, on the destination's
        # VF that Nova bound the port to.
        dest_vf = self.neutron.show_port(port['id'])['port'][
            'binding:profile']['pci_slot']
        self.assertTrue(dest_vf.startswith('0000:82:'))
        [nic] = self.held_xml('host_b', server).findall('devices/interface')
        self.assertEqual(port['mac_address'], nic.find('mac').get('address'))
        # (The fake keeps no source of a hot-plugged interface: the device
        # the driver plugged is read from what it gave libvirt.)
        [plugged] = [etree.fromstring(xml) for xml in self.attached_xml
                     if port['mac_address'] in xml]
        self.assertEqual(dest_vf, test_sriov.source_address(plugged))
        self.assertEqual([dest_vf], [
            d.address for d in objects.PciDeviceList.get_by_instance_uuid(
                self.ctxt, server['id'])])

    def test_flavor_device_moves_to_the_destinations_device(self):
        self.start_host('host_a', pci_info=fakelibvirt.HostPCIDevicesInfo(
            num_pfs=1, num_vfs=2))
        self.start_host('host_b', pci_info=fakelibvirt.HostPCIDevicesInfo(
            num_pfs=1, num_vfs=2, bus=0x82))
        server = self.boot('host_a', **{'pci_passthrough:alias': 'lm-vf:1'})
        [source_dev] = objects.PciDeviceList.get_by_instance_uuid(
            self.ctxt, server['id'])
        server = self.live_migrate(server, 'host_b')
        [dest_dev] = objects.PciDeviceList.get_by_instance_uuid(
            self.ctxt, server['id'])
        self.assertNotEqual(source_dev.address, dest_dev.address)
        [address] = self.sent_xml().findall('devices/hostdev/source/address')
        self.assertEqual(dest_dev.address, test_sriov.source_address(
            address.getparent().getparent()))


class NeutronEventsLiveMigrationTest(FakeTwoHostsTestCase):
    """For a live migration Nova's compute manager waits for Neutron's
    network-vif-plugged events itself, on the source, after the
    destination's pre_live_migration plugged the ports and before
    libvirt's migration starts: the driver plugs them there and returns
    Nova's migrate data with the ports' bindings (``vifs``), from which the
    destination's manager sets ``wait_for_vif_plugged``."""

    def setUp(self):
        super().setUp()
        self.start_host('host_a', pci_info=fakelibvirt.HostPCIDevicesInfo(
            num_pfs=1, num_vfs=2))
        self.start_host('host_b', pci_info=fakelibvirt.HostPCIDevicesInfo(
            num_pfs=1, num_vfs=2, bus=0x82))
        self.port = test_sriov.SRIOVTestBase.add_port(self, 'direct')
        self.server = self.boot('host_a',
                                networks=[{'port': self.port['id']}])
        self.prepared = threading.Event()
        driver = self.computes['host_b'].driver
        real = driver.pre_live_migration

        def pre_live_migration(*args, **kwargs):
            data = real(*args, **kwargs)
            self.prepared.set()
            return data

        self.useFixture(fixtures.MockPatchObject(
            driver, 'pre_live_migration', side_effect=pre_live_migration))

    def start_migration(self):
        """Start the live migration to host_b; return once the
        destination has plugged the ports."""
        self.dest_host = 'host_b'
        self.api.post_server_action(self.server['id'], {'os-migrateLive': {
            'host': 'host_b', 'block_migration': 'auto'}})
        self.assertTrue(self.prepared.wait(base.STATE_TIMEOUT))

    def test_waits_for_the_ports_plugged_on_the_destination(self):
        self.flags(vif_plugging_timeout=base.STATE_TIMEOUT)
        self.start_migration()
        time.sleep(1)
        # Held before libvirt's migration.
        self.assertEqual([], self.migrations)
        self.api.create_server_external_events([{
            'name': 'network-vif-plugged', 'server_uuid': self.server['id'],
            'tag': self.port['id']}])
        self.assertEqual('completed',
                         self.wait_for_migration_end(self.server))
        server = self._wait_for_state_change(self.server, 'ACTIVE')
        self.assertEqual('host_b', server['OS-EXT-SRV-ATTR:host'])

    def test_no_event_fails_before_libvirt_is_asked(self):
        self.flags(vif_plugging_timeout=2)
        self.start_migration()
        self.assertEqual('error', self.wait_for_migration_end(self.server))
        self.assertEqual([], self.migrations)
        server = self._wait_for_state_change(self.server, 'ACTIVE')
        self.assertEqual('host_a', server['OS-EXT-SRV-ATTR:host'])
        self.assertTrue(self.has_domain('host_a', server))
        self.assertFalse(self.has_domain('host_b', server))
