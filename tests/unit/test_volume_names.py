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

"""Disk names: what Nova stores in the block device mappings is what the
domain names the disks and what the guest's kernel calls them (virtio
``vd*``, SCSI/SATA ``sd*``, the lowest free letter, in Nova's order: root,
ephemeral, swap, volumes). Then the domain layouts built from them: a
volume-backed guest, an image-backed one with volumes, both rescues."""

import dataclasses
import itertools
from unittest import mock

import ddt
from nova import exception
from nova import objects
from nova.virt import driver as virt_driver
from nova.virt.libvirt import blockinfo
from oslo_config import cfg
from oslo_config import fixture as config_fixture
import testtools

from nova_kvmx.guest import disk_names
from nova_kvmx.guest import planner
from nova_kvmx.guest import render
from nova_kvmx.guest import spec
from nova_kvmx.guest import volumes
from nova_kvmx import volume_ops
from tests.unit import builders as b
from tests.unit import volume_data as vd
from tests.unit import xml_schema

CONF = cfg.CONF


@ddt.ddt
class NamesTest(testtools.TestCase):
    @ddt.data(
        ('virtio', set(), 'vda'),
        ('virtio', {'vda', 'vdb'}, 'vdc'),
        ('virtio', {'vda', 'vdc'}, 'vdb'),      # a detached one's name
        ('scsi', {'sda', 'sdz'}, 'sdb'),
        ('sata', {'vda', 'sda'}, 'sdb'),
        ('virtio', {'vd' + c for c in 'abcdefghijklmnopqrstuvwxyz'}, 'vdaa'),
    )
    @ddt.unpack
    def test_next_free(self, bus, used, name):
        self.assertEqual(name, disk_names.next_free(bus, used))

    def test_maximum(self):
        self.assertRaises(exception.TooManyDiskDevices,
                          disk_names.next_free, 'virtio', {'vda', 'vdb'}, 2)

    def test_ide_takes_four_disks(self):
        self.assertEqual('hdd', disk_names.next_free(
            'ide', {'hda', 'hdb', 'hdc'}))
        self.assertRaises(exception.TooManyDiskDevices,
                          disk_names.next_free, 'ide',
                          {'hda', 'hdb', 'hdc', 'hdd'})

    @ddt.data('fdc', 'xen', 'uml')
    def test_buses_without_names(self, bus):
        self.assertRaises(exception.UnsupportedHardware,
                          disk_names.next_free, bus, set())

    @ddt.data(
        # requested bus, name, default, chosen
        ('scsi', '/dev/vdb', 'virtio', 'scsi'),
        (None, '/dev/vdb', 'virtio', 'virtio'),
        (None, '/dev/sdb', 'virtio', 'scsi'),
        (None, '/dev/sdb', 'sata', 'sata'),     # the image's SATA disks
        ('ide', '/dev/hdb', 'virtio', 'ide'),
        (None, '/dev/hdb', 'virtio', 'ide'),
        ('usb', '/dev/sdb', 'virtio', 'usb'),
        ('fdc', '/dev/vdb', 'virtio', 'virtio'),
        (None, None, 'scsi', 'scsi'),
    )
    @ddt.unpack
    def test_choose_bus(self, requested, name, default, bus):
        self.assertEqual(bus, disk_names.choose_bus(requested, name,
                                                    default))

    @ddt.data(('/dev/vdb', 'vdb'), ('/dev/sda1', 'sda'), ('vdc', 'vdc'),
              (None, None), ('', None))
    @ddt.unpack
    def test_strip(self, name, stripped):
        self.assertEqual(stripped, disk_names.strip(name))

    def test_local_names_skip_volumes_and_config_drive(self):
        self.assertEqual(
            {'root': 'vdb', 'ephemeral': 'vdd', 'swap': 'vde'},
            disk_names.local_names('virtio', ['root', 'ephemeral', 'swap'],
                                   {'vda', 'vdc'}))
        self.assertEqual({'root': 'sda', 'swap': 'sdb'},
                         disk_names.local_names('scsi', ['root', 'swap']))


def bdm(**fields):
    values = dict(id=0, device_name=None, disk_bus=None,
                  device_type=None, boot_index=None, source_type='volume',
                  destination_type='volume', volume_id=vd.OTHER_VOLUME_ID)
    values.update(fields)
    obj = objects.BlockDeviceMapping(**values)
    obj.save = mock.Mock()
    return obj


@ddt.ddt
class DriverNamesTest(testtools.TestCase):
    """default_root_device_name, default_device_names_for_instance and
    get_device_name_for_instance, as Nova's compute manager calls them."""

    def setUp(self):
        super().setUp()
        self.conf = self.useFixture(config_fixture.Config(CONF))
        host = mock.Mock()
        host.get_guest.side_effect = exception.InstanceNotFound(
            instance_id='x')
        self.ops = volume_ops.VolumeOperations(host, None, None)
        self.instance = b.instance()
        self.instance.system_metadata = {}
        self.instance.image_ref = b.IMAGE_ID

    @ddt.data(({}, None, '/dev/vda'), ({'hw_disk_bus': 'scsi'}, None,
                                       '/dev/sda'),
              ({}, {'disk_bus': 'sata'}, '/dev/sda'))
    @ddt.unpack
    def test_root(self, props, root, name):
        self.assertEqual(name, self.ops.default_root_device_name(
            self.instance, b.image(**props), bdm(boot_index=0, **(root or
                                                                  {}))))

    def test_volume_backed_build(self):
        """Boot from a volume with ephemeral and swap and a data volume:
        names asked for are ignored, as with Nova's libvirt driver."""
        root = bdm(boot_index=0, device_name='/dev/xvda',
                   volume_id=vd.VOLUME_ID)
        eph = bdm(source_type='blank', destination_type='local',
                  device_name='/dev/sdq')
        swap = bdm(source_type='blank', destination_type='local',
                   guest_format='swap')
        data = bdm(disk_bus='scsi')
        self.ops.default_device_names(self.instance, '/dev/vda', [], [eph],
                                      [swap], [root, data])
        self.assertEqual(
            [('/dev/vda', 'virtio'), ('/dev/vdb', 'virtio'),
             ('/dev/vdc', 'virtio'), ('/dev/sda', 'scsi')],
            [(x.device_name, x.disk_bus) for x in (root, eph, swap, data)])
        for x in (root, eph, swap, data):
            x.save.assert_called_once_with()

    def test_names_match_the_rendered_domain(self):
        """What the mappings say is what the domain calls the disks."""
        image_root = bdm(boot_index=0, source_type='image',
                         destination_type='local')
        eph = bdm(source_type='blank', destination_type='local')
        vol = bdm(volume_id=vd.VOLUME_ID)
        self.ops.default_device_names(self.instance, '/dev/vda',
                                      [image_root], [eph], [], [vol])
        disk = volumes.plan_volume(vd.RBD, volumes.DiskInfo(
            dev=disk_names.strip(vol.device_name), bus=vol.disk_bus),
            volumes.VolumeSettings())
        guest = planner.plan_guest(
            b.context(), self.instance, b.image(),
            b.files(ephemeral=True, config_drive=True), b.settings(),
            volumes=(disk,))
        self.assertEqual(
            [('vda', 'disk'), ('vdb', 'disk.eph0'), ('vdc', vd.VOLUME_ID),
             ('sdz', 'disk.config')],
            [(d.target_dev, getattr(d, 'volume_id', None) or
              d.path.rpartition('/')[2]) for d in guest.disks])
        self.assertEqual(['/dev/vda', '/dev/vdb', '/dev/vdc'],
                         [x.device_name for x in (image_root, eph, vol)])

    def test_next_attachment(self):
        existing = [bdm(id=1, device_name='/dev/vda', boot_index=0),
                    bdm(id=2, device_name='/dev/vdc')]
        new = objects.BlockDeviceMapping(device_name='/dev/vdz',
                                         volume_id=vd.VOLUME_ID)
        self.assertEqual('/dev/vdb', self.ops.device_name_for(
            self.instance, existing, new))
        self.assertEqual('/dev/sda', self.ops.device_name_for(
            self.instance, existing, bdm(id=3, disk_bus='scsi')))

    def test_next_attachment_skips_disks_of_the_domain(self):
        guest = mock.Mock()
        guest.get_all_disks.return_value = [
            mock.Mock(target_dev=name) for name in ('vda', 'vdb', 'sdz')]
        self.ops.host.get_guest.side_effect = None
        self.ops.host.get_guest.return_value = guest
        self.assertEqual('/dev/vdc', self.ops.device_name_for(
            self.instance, [bdm(id=1, device_name='/dev/vda')], bdm(id=2)))

    def test_too_many(self):
        self.conf.config(max_disk_devices_to_attach=2, group='compute')
        self.assertRaises(
            exception.TooManyDiskDevices, self.ops.device_name_for,
            self.instance, [bdm(id=1, device_name='/dev/vda'),
                            bdm(id=2, device_name='/dev/vdb')], bdm(id=3))


def _nova_names(instance, *bdm_lists):
    """What Nova's libvirt driver names the mappings: its
    default_device_names_for_instance (names asked for dropped, then
    Nova's blockinfo)."""
    mappings = list(itertools.chain(*bdm_lists))
    for mapping in mappings:
        mapping.device_name = None
    blockinfo.default_device_names(
        'kvm', None, instance,
        virt_driver.get_block_device_info(instance, mappings),
        instance.image_meta)


def _full_bdm(**fields):
    values = dict(no_device=None, attachment_id=None, guest_format=None,
                  connection_info=None, snapshot_id=None, image_id=None,
                  volume_size=1, delete_on_termination=False, tag=None,
                  volume_type=None, encrypted=False,
                  encryption_secret_uuid=None, encryption_format=None,
                  encryption_options=None, instance_uuid=b.INSTANCE_UUID)
    values.update(fields)
    return bdm(**values)


def _local(**fields):
    return _full_bdm(source_type='blank', destination_type='local',
                     volume_id=None, **fields)


@ddt.ddt
class NovaBlockinfoTest(testtools.TestCase):
    """Our names are the ones Nova's blockinfo gives the same mappings
    (on Nova's default q35 machine, where CD-ROMs are on SATA)."""

    CASES = {
        'volume-backed': lambda: (
            [], [_local()], [_local(guest_format='swap')],
            [_full_bdm(boot_index=0, volume_id=vd.VOLUME_ID),
             _full_bdm(disk_bus='scsi', device_name='/dev/vdq')]),
        'image-backed': lambda: (
            [_full_bdm(boot_index=0, source_type='image',
                       destination_type='local', volume_id=None,
                       image_id=b.IMAGE_ID)],
            [_local(device_name='/dev/sdc')], [],
            [_full_bdm(volume_id=vd.VOLUME_ID),
             _full_bdm(device_type='cdrom'), _full_bdm(disk_bus='sata')]),
    }

    def instance(self, config_drive):
        instance = b.instance()
        instance.system_metadata = {'image_hw_machine_type': 'q35'}
        instance.image_ref = b.IMAGE_ID
        instance.config_drive = 'True' if config_drive else ''
        instance.ephemeral_gb = instance.flavor.ephemeral_gb = 1
        instance.flavor.swap = 0
        instance.root_device_name = '/dev/vda'
        instance.default_ephemeral_device = None
        instance.default_swap_device = None
        return instance

    @ddt.data(*itertools.product(sorted(CASES), (False, True)))
    @ddt.unpack
    def test_same_as_novas_blockinfo(self, case, config_drive):
        instance = self.instance(config_drive)
        host = mock.Mock()
        host.get_guest.side_effect = exception.InstanceNotFound(
            instance_id='x')
        ours, novas = self.CASES[case](), self.CASES[case]()
        volume_ops.VolumeOperations(host, None, None).default_device_names(
            instance, '/dev/vda', *ours)
        _nova_names(instance, *novas)
        # (Nova leaves a swap mapping's device type unset: a disk.)
        self.assertEqual(
            [(x.device_name, x.disk_bus, x.device_type or 'disk')
             for x in itertools.chain(*novas)],
            [(x.device_name, x.disk_bus, x.device_type)
             for x in itertools.chain(*ours)])

    @ddt.data(None, 'scsi', 'sata')
    def test_next_attachment_as_novas_blockinfo(self, bus):
        # Without a config drive: Nova's blockinfo names it after the
        # volumes (the next SATA name), ours is always sdz, so with one the
        # next SCSI/SATA attachment here is a letter lower than in Nova.
        instance = self.instance(config_drive=False)
        existing = [
            _full_bdm(id=1, boot_index=0, source_type='image',
                      destination_type='local', volume_id=None,
                      image_id=b.IMAGE_ID, device_name='/dev/vda'),
            _local(id=2, device_name='/dev/vdb'),
            _full_bdm(id=3, volume_id=vd.VOLUME_ID, device_name='/dev/vdc'),
            _full_bdm(id=4, disk_bus='scsi', device_name='/dev/sda')]
        host = mock.Mock()
        host.get_guest.side_effect = exception.InstanceNotFound(
            instance_id='x')
        ours = volume_ops.VolumeOperations(host, None, None).device_name_for(
            instance, existing, _full_bdm(id=5, disk_bus=bus,
                                          device_name='/dev/vdz'))
        # Nova's libvirt get_device_name_for_instance.
        mapping = blockinfo.get_disk_info(
            'kvm', instance, instance.image_meta,
            virt_driver.get_block_device_info(instance, existing))['mapping']
        new = _full_bdm(id=5, disk_bus=bus)
        novas = '/dev/' + blockinfo.get_info_from_bdm(
            instance, 'kvm', instance.image_meta, new,
            mapping=mapping)['dev']
        self.assertEqual(novas, ours)


def files(**kw):
    return dataclasses.replace(b.files(kernel=True, **kw), root_disk=None)


class LayoutTest(testtools.TestCase):
    """Whole domains: every one validated by libvirt's schema."""

    ROOT = volumes.plan_volume(vd.RBD, volumes.DiskInfo(
        'vda', 'virtio', boot_index=0), volumes.VolumeSettings())
    DATA = volumes.plan_volume(
        dict(vd.ISCSI, serial=vd.OTHER_VOLUME_ID),
        volumes.DiskInfo('vdd', 'virtio'), volumes.VolumeSettings())

    def domain(self, guest_files, vols, image_meta=None):
        xml = render.render_domain(planner.plan_guest(
            b.context(), b.instance(), image_meta or b.image(), guest_files,
            b.settings(), volumes=vols))
        xml_schema.assert_valid_domain(self, xml)
        return xml_schema.parse(xml)

    def disks(self, root):
        return [(d.find('target').get('dev'), d.get('type'))
                for d in xml_schema.findall(root, 'devices/disk')]

    def test_volume_backed(self):
        root = self.domain(files(ephemeral=True, swap=True,
                                 config_drive=True), (self.DATA, self.ROOT))
        self.assertEqual([('vda', 'network'), ('vdb', 'file'),
                          ('vdc', 'file'), ('vdd', 'block'),
                          ('sdz', 'file')], self.disks(root))
        self.assertIn('root=/dev/vda ', xml_schema.find(root,
                                                        'os/cmdline').text)
        self.assertEqual(('volume', vd.VOLUME_ID), (
            xml_schema.find(root, 'metadata/nova:instance/nova:root').get(
                'type'),
            xml_schema.find(root, 'metadata/nova:instance/nova:root').get(
                'uuid')))

    def test_volume_backed_needs_its_root_volume(self):
        self.assertRaises(exception.InvalidBDM, planner.plan_guest,
                          b.context(), b.instance(), b.image(), files(),
                          b.settings(), volumes=(self.DATA,))

    def test_names_must_not_collide(self):
        clash = dataclasses.replace(self.DATA, target_dev='sdz', bus='sata')
        self.assertRaises(exception.InvalidBDM, planner.plan_guest,
                          b.context(), b.instance(), b.image(),
                          b.files(config_drive=True), b.settings(),
                          volumes=(clash,))

    def test_stable_rescue_boots_the_rescue_disk(self):
        rescue = spec.RescueDisk(path='/r/disk.rescue', bus='virtio')
        root = self.domain(dataclasses.replace(
            b.files(config_drive=True), rescue=rescue),
            (self.DATA,))
        self.assertEqual([('vda', 'file'), ('vdd', 'block'),
                          ('sdz', 'file'), ('vdb', 'file')],
                         self.disks(root))
        boot = xml_schema.findall(root, 'devices/disk/boot')
        self.assertEqual(['1'], [e.get('order') for e in boot])
        self.assertEqual('/r/disk.rescue', boot[0].getparent().find(
            'source').get('file'))
        self.assertEqual([], xml_schema.findall(root, 'os/boot'))

    def test_stable_rescue_cdrom_of_a_volume_backed_guest(self):
        rescue = spec.RescueDisk(path='/r/disk.rescue', bus='sata',
                                 device='cdrom')
        root = self.domain(dataclasses.replace(files(), rescue=rescue),
                           (self.ROOT,))
        self.assertEqual([('vda', 'network'), ('sda', 'file')],
                         self.disks(root))

    def test_legacy_rescue(self):
        guest_files = dataclasses.replace(
            b.files(), root_disk='/r/disk.rescue', rescued_root='/r/disk')
        root = self.domain(guest_files, ())
        self.assertEqual(['/r/disk.rescue', '/r/disk'], [
            d.get('file') for d in xml_schema.findall(
                root, 'devices/disk/source')])
        self.assertEqual('hd', xml_schema.find(root, 'os/boot').get('dev'))
