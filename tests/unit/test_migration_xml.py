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

"""The domain a live migration sends: the source's, on the destination's
claim.

Both claims are Nova's own fitting on the captured 2-socket, 4-node SMT
host; the destination's is made with the source's cells taken, as on a
destination whose first cells are busy. The destination describes its
claim as the driver does (``post_claim_migrate_data``), the source turns
that migrate data into the rewrite; the result must carry exactly the
``<cputune>``, ``<numatune>`` and ``<memoryBacking>`` the driver would
render for the destination's claim, keep everything else of the source's
domain, and pass libvirt's schema.
"""

import copy
import dataclasses
import types

import ddt
from lxml import etree
from nova import exception
from nova.network import model as network_model
from nova import objects
from nova.virt import hardware
import testtools

from nova_kvmx.guest import devices
from nova_kvmx.guest import migration_xml
from nova_kvmx.guest import render
from nova_kvmx.guest import volumes
from nova_kvmx import live_migration
from tests.unit import builders as b
from tests.unit import nfv
from tests.unit import volume_data as vd
from tests.unit import xml_schema

NUMA_PARTS = ('cputune', 'numatune', 'memoryBacking')


def canon(element):
    """``element`` without layout whitespace, attributes in order."""
    element = copy.deepcopy(element)
    for node in element.iter():
        node.text = (node.text or '').strip() or None
        node.tail = None
    return etree.tostring(element, method='c14n')


def occupy(numa, cell_ids):
    """``numa`` (a copy) with the CPUs and large pages of ``cell_ids``
    taken."""
    numa = copy.deepcopy(numa)
    for cell in numa.cells:
        if cell.id in cell_ids:
            cell.pinned_cpus = set(cell.pcpuset)
            cell.cpu_usage = len(cell.cpuset)
            for pages in cell.mempages:
                if pages.size_kb > 4:
                    pages.used = pages.total - pages.reserved
    return numa


@ddt.ddt
class DestinationClaimTest(testtools.TestCase):
    def setUp(self):
        super().setUp()
        self.host = self.useFixture(nfv.NFVHost())
        self.migrations = live_migration.LiveMigrations(
            None, None, None, None, lambda: self.host.settings)

    def migrate(self, source):
        """(source XML, rewritten XML, XML rendered for the destination
        claim, destination instance)."""
        flavor, image = source.flavor, b.image()
        constraints = hardware.numa_get_constraints(flavor, image)
        dest_claim = hardware.numa_fit_instance_to_host(
            occupy(self.host.numa, {c.id for c in
                                    source.numa_topology.cells}),
            constraints, provider_mapping=None)
        self.assertIsNotNone(dest_claim)
        dest = b.instance(flavor_obj=flavor, numa_topology=dest_claim)

        data = objects.LibvirtLiveMigrateData()
        self.migrations.post_claim(source, data, types.SimpleNamespace(
            claimed_numa_topology=dest_claim, flavor=flavor,
            image_meta=image))
        data = objects.LibvirtLiveMigrateData.obj_from_primitive(
            data.obj_to_primitive())   # as it crosses RPC
        source.migration_context = objects.MigrationContext(
            old_numa_topology=source.numa_topology,
            new_numa_topology=dest_claim)
        source_xml = render.render_domain(nfv.plan(self.host, source))
        rewritten = migration_xml.destination_xml(
            source_xml, self.migrations.destination_host(source, data))
        xml_schema.assert_valid_domain(self, rewritten)
        return (xml_schema.parse(source_xml), xml_schema.parse(rewritten),
                xml_schema.parse(render.render_domain(
                    nfv.plan(self.host, dest))), dest)

    def assert_destination_claim(self, source_root, root, expected):
        for part in NUMA_PARTS:
            found, wanted = root.find(part), expected.find(part)
            self.assertEqual(wanted is None, found is None, part)
            if wanted is not None:
                self.assertEqual(canon(wanted), canon(found), part)
        self.assertNotEqual(canon(source_root.find('cputune')),
                            canon(root.find('cputune')))
        # Everything else is the running guest's, unchanged.
        for child in source_root:
            if child.tag not in NUMA_PARTS:
                self.assertEqual(canon(child), canon(root.find(child.tag)),
                                 child.tag)

    @ddt.data(
        dict(hw_cpu_policy='dedicated'),
        dict(hw_cpu_policy='dedicated', hw_numa_nodes=2,
             hw_mem_page_size='1GB', hw_emulator_threads_policy='isolate'),
        dict(hw_cpu_policy='dedicated', hw_cpu_realtime='yes',
             hw_cpu_realtime_mask='^0', hw_mem_page_size='2MB'),
        dict(hw_cpu_policy='mixed', hw_cpu_dedicated_mask='^0'),
        dict(hw_cpu_policy='shared', hw_mem_page_size='2MB'),
        dict(hw_cpu_policy='dedicated', hw_mem_page_size='large'),
    )
    def test_domain_realises_the_destination_claim(self, specs):
        source = self.host.instance(vcpus=4, memory_mb=4096, **specs)
        source_root, root, expected, dest = self.migrate(source)
        self.assert_destination_claim(source_root, root, expected)
        self.assertEqual(
            {c.id for c in dest.numa_topology.cells},
            {int(m.get('nodeset')) for m in root.findall(
                'numatune/memnode')})
        self.assertFalse(
            {c.id for c in dest.numa_topology.cells} &
            {c.id for c in source.numa_topology.cells})

    def test_realtime_scheduler_follows_the_claim(self):
        source = self.host.instance(
            vcpus=4, memory_mb=4096, hw_cpu_policy='dedicated',
            hw_cpu_realtime='yes', hw_cpu_realtime_mask='^0',
            hw_mem_page_size='2MB')
        _, root, _, dest = self.migrate(source)
        sched = root.findall('cputune/vcpusched')
        self.assertEqual([('1-3', 'fifo', '1')], [
            (s.get('vcpus'), s.get('scheduler'), s.get('priority'))
            for s in sched])
        pins = nfv.pinning(dest.numa_topology)
        self.assertEqual(
            {vcpu: {cpu} for vcpu, cpu in pins.items()},
            {int(p.get('vcpu')): hardware.parse_cpu_spec(
                p.get('cpuset')) for p in root.findall('cputune/vcpupin')})

    def test_iothread_moves_with_the_emulator_threads(self):
        source = self.host.instance(
            vcpus=4, memory_mb=4096, hw_cpu_policy='dedicated',
            hw_emulator_threads_policy='isolate')
        source_root, root, _, dest = self.migrate(source)
        reserved = dest.numa_topology.cells[0].cpuset_reserved
        self.assertNotEqual(source.numa_topology.cells[0].cpuset_reserved,
                            reserved)
        self.assertEqual('1', root.findtext('iothreads'))
        self.assertEqual([('1', reserved)], [
            (pin.get('iothread'), hardware.parse_cpu_spec(pin.get('cpuset')))
            for pin in root.findall('cputune/iothreadpin')])


class RewriteTest(testtools.TestCase):
    """The rewrite on its own, on a small domain."""

    def setUp(self):
        super().setUp()
        self.host = self.useFixture(nfv.NFVHost())

    def source(self, network_info=None, **specs):
        inst = self.host.instance(vcpus=2, memory_mb=2048, **specs)
        return b.render_xml(inst=inst, network_info=network_info,
                            driver_settings=self.host.settings)

    def test_other_cells_than_the_claim_are_refused(self):
        xml = self.source(hw_cpu_policy='dedicated')
        self.assertRaisesRegex(
            exception.MigrationError, r'guest NUMA cells \[0\], the claim '
            r'has \[0, 1\]', migration_xml.destination_xml, xml,
            migration_xml.DestinationHost(cell_nodes=((0, 1), (1, 2)),
                                          vcpu_pins=((0, {4}),)))

    def test_guest_started_without_iothreads_gets_none(self):
        # A domain defined before guests had an IOThread; libvirt refuses a
        # destination domain with another number of IOThreads.
        root = xml_schema.parse(self.source(hw_cpu_policy='dedicated'))
        root.remove(root.find('iothreads'))
        root.find('cputune').remove(root.find('cputune/iothreadpin'))
        moved = xml_schema.parse(migration_xml.destination_xml(
            etree.tostring(root, encoding='unicode'),
            migration_xml.DestinationHost(
                cell_nodes=((0, 1),), vcpu_pins=((0, {4}), (1, {20})),
                emulator_pin=frozenset({4, 20}))))
        self.assertEqual('4,20', moved.find('cputune/emulatorpin').get(
            'cpuset'))
        self.assertEqual([], moved.findall('cputune/iothreadpin'))
        self.assertIsNone(moved.find('iothreads'))

    def test_small_pages_cannot_become_large(self):
        xml = self.source(hw_cpu_policy='dedicated',
                          hw_mem_page_size='small')
        self.assertRaisesRegex(
            exception.MigrationError, 'source uses small pages, the '
            'destination claim large pages', migration_xml.destination_xml,
            xml, migration_xml.DestinationHost(
                cell_nodes=((0, 1),), vcpu_pins=((0, {4}), (1, {5})),
                cell_pages=((0, 2048),)))

    def test_guest_without_claim_floats_over_the_destinations_shared_set(self):
        xml = self.source()
        self.assertIsNotNone(xml_schema.parse(xml).find('vcpu').get(
            'cpuset'))
        moved = xml_schema.parse(migration_xml.destination_xml(
            xml, migration_xml.DestinationHost(floating={2, 3, 8})))
        self.assertEqual('2-3,8', moved.find('vcpu').get('cpuset'))
        anywhere = xml_schema.parse(migration_xml.destination_xml(
            xml, migration_xml.DestinationHost(floating=frozenset())))
        self.assertIsNone(anywhere.find('vcpu').get('cpuset'))

    def test_pci_devices_vnc_and_ports_of_the_destination(self):
        claimed = objects.PciDevice(address='0000:81:00.2',
                                    dev_type='type-VF', extra_info={},
                                    request_id=None)
        inst = self.host.instance(vcpus=2, memory_mb=2048)
        inst.pci_devices = objects.PciDeviceList(objects=[claimed])
        port_id = '3f0b8c0e-4c7e-4d44-9e0c-1a2b3c4d5e6f'
        port = network_model.VIF(
            id=port_id, address='fa:16:3e:11:22:33', type='ovs',
            vnic_type='normal', devname='tap3f0b8c0e-4c',
            ovs_interfaceid=port_id,
            details={'port_filter': True, 'ovs_hybrid_plug': True},
            network=network_model.Network(
                id='9c7a1d3e-5b2f-4a68-8e0d-7f6a5b4c3d2e', bridge='br-int',
                meta={'mtu': 1500}))
        root = xml_schema.parse(b.render_xml(
            inst=inst, network_info=[port],
            driver_settings=self.host.settings))
        # What libvirt adds to a running domain's interface: the guest's
        # PCI address, which must not change.
        interface = root.find('devices/interface')
        etree.SubElement(interface, 'address', type='pci', domain='0x0000',
                         bus='0x01', slot='0x00', function='0x0')
        graphics = etree.SubElement(root.find('devices'), 'graphics',
                                    type='vnc', listen='192.0.2.1')
        etree.SubElement(graphics, 'listen', type='address',
                         address='192.0.2.1')
        # On the destination the port is bound without the hybrid plug.
        dest_port = copy.deepcopy(port)
        dest_port['details'] = {'port_filter': True,
                                'ovs_hybrid_plug': False}
        spec = devices.plan_port(dest_port, inst.flavor, b.image(), 'kvm')

        moved = xml_schema.parse(migration_xml.destination_xml(
            etree.tostring(root, encoding='unicode'),
            migration_xml.DestinationHost(
                hostdevs=(('0000:81:00.2', '0000:82:10.5'),),
                interfaces=(spec,), vnc_listen='192.0.2.7')))
        xml_schema.assert_valid_domain(self, etree.tostring(
            moved, encoding='unicode'))
        address = moved.find('devices/hostdev/source/address')
        self.assertEqual(('0x0000', '0x82', '0x10', '0x5'), tuple(
            address.get(k) for k in ('domain', 'bus', 'slot', 'function')))
        interface = moved.find('devices/interface')
        self.assertEqual('bridge', interface.get('type'))
        self.assertEqual('br-int', interface.find('source').get('bridge'))
        self.assertEqual('openvswitch',
                         interface.find('virtualport').get('type'))
        self.assertEqual('fa:16:3e:11:22:33',
                         interface.find('mac').get('address'))
        self.assertEqual('0x01', interface.find('address').get('bus'))
        graphics = moved.find('devices/graphics')
        self.assertEqual('192.0.2.7', graphics.get('listen'))
        self.assertEqual('192.0.2.7', graphics.find('listen').get('address'))

    def test_device_the_domain_lacks_is_refused(self):
        self.assertRaisesRegex(
            exception.MigrationError, 'no PCI device 0000:81:00.2',
            migration_xml.destination_xml, self.source(),
            migration_xml.DestinationHost(
                hostdevs=(('0000:81:00.2', '0000:82:10.5'),)))


class VolumeRewriteTest(testtools.TestCase):
    """Each volume's disk gets the destination's host side (its block
    device there, or the RBD source and secret of its connection info);
    the guest's PCI address stays, other disks stay as they are."""

    def domain(self, vols):
        guest = b.plan(guest_files=b.files(config_drive=True))
        guest = dataclasses.replace(guest, disks=guest.disks + vols)
        root = xml_schema.parse(render.render_domain(guest))
        for i, disk in enumerate(root.findall('devices/disk')):
            etree.SubElement(disk, 'address', type='pci', domain='0x0000',
                             bus='0x0%d' % (i + 3), slot='0x00',
                             function='0x0')
        return etree.tostring(root, encoding='unicode')

    def test_destination_connections(self):
        settings = volumes.VolumeSettings()
        iscsi = dict(vd.ISCSI, serial=vd.OTHER_VOLUME_ID)
        source = self.domain((
            volumes.plan_volume(vd.RBD, volumes.DiskInfo('vdb', 'virtio'),
                                settings),
            volumes.plan_volume(iscsi, volumes.DiskInfo('vdc', 'virtio'),
                                settings)))
        dest_rbd = vd.connection(vd.RBD, hosts=['10.40.0.1'],
                                 ports=['6789'])
        dest_iscsi = vd.connection(iscsi, device_path='/dev/sdq')
        moved = migration_xml.destination_xml(
            source, migration_xml.DestinationHost(volumes=(
                volumes.plan_volume(dest_rbd, volumes.DiskInfo(
                    'vdb', 'virtio'), settings),
                volumes.plan_volume(dest_iscsi, volumes.DiskInfo(
                    'vdc', 'virtio'), settings))))
        xml_schema.assert_valid_domain(self, moved)
        disks = xml_schema.parse(moved).findall('devices/disk')
        self.assertEqual(
            [('vda', 'file', '0x03'), ('sdz', 'file', '0x04'),
             ('vdb', 'network', '0x05'), ('vdc', 'block', '0x06')],
            [(d.find('target').get('dev'), d.get('type'),
              d.find('address').get('bus')) for d in disks])
        self.assertEqual(['10.40.0.1'], [
            h.get('name') for h in disks[2].findall('source/host')])
        self.assertEqual(vd.SECRET_UUID,
                         disks[2].find('auth/secret').get('uuid'))
        self.assertEqual('/dev/sdq', disks[3].find('source').get('dev'))
        self.assertEqual(1, len(disks[3].findall('address')))
        self.assertEqual('ua-' + vd.OTHER_VOLUME_ID,
                         disks[3].find('alias').get('name'))

    def test_volume_the_domain_lacks_is_left_alone(self):
        source = self.domain(())
        disk = volumes.plan_volume(vd.RBD, volumes.DiskInfo('vdb', 'virtio'),
                                   volumes.VolumeSettings())
        self.assertEqual(
            canon(xml_schema.parse(source)),
            canon(xml_schema.parse(migration_xml.destination_xml(
                source, migration_xml.DestinationHost(volumes=(disk,))))))
