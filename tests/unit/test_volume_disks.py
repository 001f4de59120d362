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

"""Cinder's connection info -> the volume's <disk>, as Nova's libvirt volume
drivers write it, for the connection info of Cinder's real drivers
(tests/unit/volume_data.py). Every domain is validated against libvirt's
schema before its elements are read."""

import dataclasses

import ddt
from nova import exception
import testtools

from nova_kvmx import exception as kvmx_exception
from nova_kvmx.guest import render
from nova_kvmx.guest import volumes
from tests.unit import builders as b
from tests.unit import volume_data as vd
from tests.unit import xml_schema

VDB = volumes.DiskInfo(dev='vdb', bus='virtio')
NOVA_AUTH = volumes.VolumeSettings(rbd_user='nova',
                                   rbd_secret_uuid=vd.NOVA_SECRET_UUID)


def disk_xml(testcase, info, disk_info=VDB,
             settings=volumes.VolumeSettings()):
    """The <disk> of ``info`` in a whole domain libvirt's schema accepts."""
    disk = volumes.plan_volume(info, disk_info, settings)
    guest = b.plan(guest_files=b.files())
    guest = dataclasses.replace(guest, disks=guest.disks + (disk,))
    xml = render.render_domain(guest)
    xml_schema.assert_valid_domain(testcase, xml)
    return xml_schema.find(
        xml_schema.parse(xml),
        "devices/disk[target/@dev='%s']" % disk_info.dev)


def attr(root, path, name):
    return xml_schema.find(root, path).get(name)


@ddt.ddt
class ProtocolTest(testtools.TestCase):
    """What each protocol's disk is, value for value with Nova's volume
    drivers."""

    def test_rbd_network_disk(self):
        disk = disk_xml(self, vd.RBD)
        self.assertEqual(('network', 'disk'), (disk.get('type'),
                                               disk.get('device')))
        self.assertEqual({'name': 'qemu', 'type': 'raw', 'cache': 'none',
                          'discard': 'unmap'},
                         dict(xml_schema.find(disk, 'driver').attrib))
        source = xml_schema.find(disk, 'source')
        self.assertEqual(('rbd', 'volumes/volume-' + vd.VOLUME_ID),
                         (source.get('protocol'), source.get('name')))
        self.assertEqual(
            [('10.20.0.11', '6789'), ('10.20.0.12', '6789'),
             ('10.20.0.13', '6789')],
            [(h.get('name'), h.get('port'))
             for h in xml_schema.findall(disk, 'source/host')])
        self.assertEqual('cinder', attr(disk, 'auth', 'username'))
        self.assertEqual(('ceph', vd.SECRET_UUID),
                         (attr(disk, 'auth/secret', 'type'),
                          attr(disk, 'auth/secret', 'uuid')))
        self.assertEqual(vd.VOLUME_ID, xml_schema.find(disk, 'serial').text)
        self.assertEqual('ua-' + vd.VOLUME_ID, attr(disk, 'alias', 'name'))
        self.assertEqual([], xml_schema.findall(disk, 'readonly|shareable'))

    @ddt.data(
        # protocol, connection, expected io (Nova's volume drivers)
        ('iscsi', vd.ISCSI, 'native'),
        ('iscsi multipath', vd.ISCSI_MULTIPATH, 'native'),
        ('fibre_channel', vd.FIBRE_CHANNEL, 'native'),
        ('nvmeof', vd.NVMEOF, None),
        ('scaleio', dict(vd.ISCSI, driver_volume_type='scaleio'), 'native'),
        ('storpool', dict(vd.ISCSI, driver_volume_type='storpool'),
         'native'),
        ('lightos', dict(vd.NVMEOF, driver_volume_type='lightos'), None),
    )
    @ddt.unpack
    def test_block_protocols(self, what, info, io):
        disk = disk_xml(self, info)
        self.assertEqual('block', disk.get('type'), what)
        self.assertEqual(info['data']['device_path'],
                         attr(disk, 'source', 'dev'))
        self.assertEqual(io, attr(disk, 'driver', 'io'))
        self.assertEqual('none', attr(disk, 'driver', 'cache'))
        self.assertEqual([], xml_schema.findall(disk, 'auth'))
        self.assertEqual(vd.VOLUME_ID, xml_schema.find(disk, 'serial').text)

    def test_default_aio_mode(self):
        # [libvirt] use_default_aio_mode_for_volumes: iSCSI/FC leave the
        # AIO mode to QEMU; ScaleIO and StorPool always ask for native.
        settings = volumes.VolumeSettings(default_aio=True)
        self.assertIsNone(attr(disk_xml(self, vd.ISCSI, settings=settings),
                               'driver', 'io'))
        self.assertEqual('native', attr(disk_xml(
            self, dict(vd.ISCSI, driver_volume_type='scaleio'),
            settings=settings), 'driver', 'io'))

    @ddt.data(
        ('nfs', {'export': '10.0.0.5:/srv/cinder', 'name': 'volume-x'}),
        ('smbfs', {'export': '//10.0.0.5/cinder', 'name': 'volume-x'}),
        ('quobyte', {'export': 'quobyte://10.0.0.5/cinder'}),
        ('vzstorage', {'export': 'cluster1:/cinder'}),
        ('fake', {}),
        (None, {}),
    )
    @ddt.unpack
    def test_unsupported_protocols_refused_by_name(self, kind, data):
        info = {'driver_volume_type': kind, 'serial': vd.VOLUME_ID,
                'data': data}
        ex = self.assertRaises(kvmx_exception.UnsupportedVolumeType,
                               volumes.plan_volume, info, VDB,
                               volumes.VolumeSettings())
        self.assertIsInstance(ex, exception.VolumeDriverNotFound)
        self.assertIn('does not attach %s volumes (volume %s)' % (
            kind, vd.VOLUME_ID), str(ex))
        self.assertIn('rbd, iscsi', str(ex))

    def test_encrypted_refused(self):
        ex = self.assertRaises(
            exception.VolumeEncryptionNotSupported, volumes.check_supported,
            vd.connection(vd.RBD, encrypted=True))
        self.assertIn(vd.VOLUME_ID, str(ex))

    def test_block_volume_not_connected(self):
        info = vd.connection(vd.ISCSI)
        del info['data']['device_path']
        ex = self.assertRaises(kvmx_exception.InvalidConnectionInfo,
                               volumes.plan_volume, info, VDB,
                               volumes.VolumeSettings())
        self.assertIn('no host block device', str(ex))

    def test_volume_id_from_data_without_serial(self):
        info = vd.connection(vd.RBD)
        del info['serial']
        self.assertEqual(vd.VOLUME_ID, volumes.volume_id(info))

    @ddt.data(
        {'serial': '../../etc'},
        {'serial': 'not-a-uuid'},
        {'serial': None, 'data': {}},
    )
    def test_volume_id_must_be_a_uuid(self, change):
        info = dict(vd.connection(vd.RBD), **change)
        self.assertRaises(kvmx_exception.InvalidConnectionInfo,
                          volumes.check_supported, info)

    @ddt.data(
        {'name': 'volume-without-pool'},
        {'name': 'volumes/volume x'},
        {'name': 'volumes/image@snap'},
        {'name': None},
        {'hosts': ['10.0.0.1 --inject'], 'ports': ['6789']},
        {'hosts': ['10.0.0.1'], 'ports': ['67a9']},
    )
    def test_bad_rbd_source_refused(self, data):
        ex = self.assertRaises(
            kvmx_exception.InvalidConnectionInfo, volumes.plan_volume,
            vd.connection(vd.RBD, **data), VDB, volumes.VolumeSettings())
        self.assertIn(vd.VOLUME_ID, str(ex))

    def test_rbd_namespace_and_ipv6_monitor(self):
        disk = disk_xml(self, vd.connection(
            vd.RBD, name='volumes/tenant-a/volume-' + vd.VOLUME_ID,
            hosts=['fd00::11'], ports=['3300']))
        self.assertEqual('volumes/tenant-a/volume-' + vd.VOLUME_ID,
                         attr(disk, 'source', 'name'))
        self.assertEqual(('fd00::11', '3300'),
                         (attr(disk, 'source/host', 'name'),
                          attr(disk, 'source/host', 'port')))


@ddt.ddt
class RBDAuthTest(testtools.TestCase):
    """Nova's net.py: Cinder's user and secret first, Nova's
    [libvirt] rbd_user/rbd_secret_uuid as the fallback."""

    @ddt.data(
        # connection data, Nova's settings, expected (user, secret)
        ({}, volumes.VolumeSettings(), ('cinder', vd.SECRET_UUID)),
        ({}, NOVA_AUTH, ('cinder', vd.SECRET_UUID)),
        # Cinder without rbd_secret_uuid: Nova's user and secret.
        ({'secret_uuid': None}, NOVA_AUTH, ('nova', vd.NOVA_SECRET_UUID)),
        # Cinder without cephx: Nova's, if it has a secret.
        ({'auth_enabled': False, 'auth_username': None,
          'secret_uuid': None}, NOVA_AUTH, ('nova', vd.NOVA_SECRET_UUID)),
        ({'auth_enabled': False, 'auth_username': None,
          'secret_uuid': None}, volumes.VolumeSettings(), None),
    )
    @ddt.unpack
    def test_user_and_secret(self, data, settings, expected):
        disk = disk_xml(self, vd.connection(vd.RBD, **data),
                        settings=settings)
        if expected is None:
            self.assertEqual([], xml_schema.findall(disk, 'auth'))
        else:
            self.assertEqual(expected, (attr(disk, 'auth', 'username'),
                                        attr(disk, 'auth/secret', 'uuid')))

    def test_secret_without_user_refused(self):
        ex = self.assertRaises(
            kvmx_exception.InvalidConnectionInfo, volumes.plan_volume,
            vd.connection(vd.RBD, secret_uuid=None), VDB,
            volumes.VolumeSettings(rbd_secret_uuid=vd.NOVA_SECRET_UUID))
        self.assertIn('both are needed', str(ex))


@ddt.ddt
class IOTuneTest(testtools.TestCase):
    """Cinder's front-end QoS specs -> <iotune>, Nova's keys."""

    @ddt.data(*sorted(volumes.QOS_IOTUNE.items()))
    @ddt.unpack
    def test_each_key(self, key, element):
        disk = disk_xml(self, vd.connection(vd.RBD, qos_specs={key: '1024'}))
        self.assertEqual('1024', xml_schema.find(disk, 'iotune/' +
                                                 element).text)
        self.assertEqual(1, len(xml_schema.find(disk, 'iotune')))

    def test_fc_specs_and_unused_keys(self):
        disk = disk_xml(self, vd.FIBRE_CHANNEL)
        self.assertEqual({'total_iops_sec': '2000',
                          'total_bytes_sec': '104857600'},
                         {e.tag: e.text for e in xml_schema.find(
                             disk, 'iotune')})
        self.assertEqual(['consumer'],
                         volumes.unused_qos_keys(vd.FIBRE_CHANNEL))

    @ddt.data(None, {})
    def test_no_specs_no_iotune(self, specs):
        disk = disk_xml(self, vd.connection(vd.RBD, qos_specs=specs))
        self.assertEqual([], xml_schema.findall(disk, 'iotune'))

    @ddt.data('-1', 'fast', '1.5', True)
    def test_bad_value_refused(self, value):
        ex = self.assertRaises(
            kvmx_exception.InvalidConnectionInfo, volumes.plan_volume,
            vd.connection(vd.RBD, qos_specs={'read_iops_sec': value}), VDB,
            volumes.VolumeSettings())
        self.assertIn('read_iops_sec', str(ex))


@ddt.ddt
class AttachmentModeTest(testtools.TestCase):
    def test_read_only(self):
        disk = disk_xml(self, vd.connection(vd.RBD, access_mode='ro'))
        self.assertEqual(1, len(xml_schema.findall(disk, 'readonly')))

    def test_bad_access_mode(self):
        self.assertRaises(exception.InvalidVolumeAccessMode,
                          volumes.plan_volume,
                          vd.connection(vd.RBD, access_mode='rwx'), VDB,
                          volumes.VolumeSettings())

    @ddt.data(vd.RBD, vd.ISCSI)
    def test_multiattach_shareable_and_uncached(self, info):
        info = dict(vd.connection(info), multiattach=True)
        settings = volumes.VolumeSettings(
            cachemodes=(('network', 'writeback'), ('block', 'writeback')))
        disk = disk_xml(self, info, settings=settings)
        self.assertEqual(1, len(xml_schema.findall(disk, 'shareable')))
        self.assertEqual('none', attr(disk, 'driver', 'cache'))

    @ddt.data(
        # source type mode, expected cache and io of an iSCSI disk
        (('block', 'writeback'), 'writeback', 'threads'),
        (('block', 'directsync'), 'directsync', 'native'),
        (('network', 'writeback'), 'none', 'native'),
        (('file', 'unsafe'), 'none', 'native'),
    )
    @ddt.unpack
    def test_disk_cachemodes(self, mode, cache, io):
        disk = disk_xml(self, vd.ISCSI,
                        settings=volumes.VolumeSettings(cachemodes=(mode,)))
        self.assertEqual((cache, io), (attr(disk, 'driver', 'cache'),
                                       attr(disk, 'driver', 'io')))

    def test_discard_only_when_cinder_says_true(self):
        self.assertIsNone(attr(disk_xml(self, vd.ISCSI), 'driver',
                               'discard'))
        self.assertIsNone(attr(disk_xml(
            self, vd.connection(vd.RBD, discard='true')), 'driver',
            'discard'))

    def test_block_sizes(self):
        disk = disk_xml(self, vd.connection(
            vd.ISCSI, logical_block_size='512', physical_block_size=4096))
        self.assertEqual(('512', '4096'),
                         (attr(disk, 'blockio', 'logical_block_size'),
                          attr(disk, 'blockio', 'physical_block_size')))

    def test_bad_block_size(self):
        self.assertRaises(kvmx_exception.InvalidConnectionInfo,
                          volumes.plan_volume,
                          vd.connection(vd.ISCSI, logical_block_size='500'),
                          VDB, volumes.VolumeSettings())


@ddt.ddt
class DeviceTest(testtools.TestCase):
    @ddt.data(('vdc', 'virtio'), ('sdb', 'scsi'), ('sdb', 'sata'))
    @ddt.unpack
    def test_bus_and_name(self, dev, bus):
        disk = disk_xml(self, vd.RBD, volumes.DiskInfo(dev=dev, bus=bus))
        self.assertEqual((dev, bus), (attr(disk, 'target', 'dev'),
                                      attr(disk, 'target', 'bus')))

    def test_scsi_lun(self):
        disk = disk_xml(self, vd.ISCSI, volumes.DiskInfo(
            dev='sdb', bus='scsi', device_type='lun'))
        self.assertEqual('lun', disk.get('device'))

    @ddt.data((vd.RBD, 'scsi'), (vd.ISCSI, 'virtio'))
    @ddt.unpack
    def test_lun_needs_block_on_scsi(self, info, bus):
        ex = self.assertRaises(
            kvmx_exception.UnsupportedVolumeDevice, volumes.plan_volume,
            info, volumes.DiskInfo(dev='sdb', bus=bus, device_type='lun'),
            volumes.VolumeSettings())
        self.assertIsInstance(ex, exception.InvalidBDM)

    def test_cdrom_volume(self):
        disk = disk_xml(self, vd.RBD, volumes.DiskInfo(
            dev='sdb', bus='sata', device_type='cdrom'))
        self.assertEqual('cdrom', disk.get('device'))

    @ddt.data(('floppy', 'virtio'), ('disk', 'fdc'), ('disk', 'xen'))
    @ddt.unpack
    def test_refused_devices(self, device_type, bus):
        self.assertRaises(
            (kvmx_exception.UnsupportedVolumeDevice,
             exception.UnsupportedHardware), volumes.plan_volume, vd.RBD,
            volumes.DiskInfo(dev='vdb', bus=bus, device_type=device_type),
            volumes.VolumeSettings())
