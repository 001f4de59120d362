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

"""``[libvirt] images_type = rbd``: the options, the decisions (clone or
import, grow, refuse), what each Ceph failure is called, and how the
instance storage, moves and snapshots use the RBD disks. Ceph itself is
a mock here; tests/functional/test_rbd_images.py uses a real cluster."""

import contextlib
import os
import types
from unittest import mock

import ddt
import fixtures
from nova.compute import task_states
import nova.conf
from nova import exception
from nova import objects
from nova.storage import rbd_utils
from oslo_concurrency import processutils
from oslo_config import fixture as config_fixture
from oslo_utils import units
import testtools

from nova_kvmx import exception as kvmx_exception
from nova_kvmx import live_migration
from nova_kvmx import migration
from nova_kvmx import snapshot
from nova_kvmx import storage
from nova_kvmx.guest import spec
from nova_kvmx.storage import rbd
from tests.unit import builders as b

CONF = nova.conf.CONF
FSID = '22b145c8-11a7-45ed-8fa0-907b623aaac2'
IMAGE_ID = '8b2c7a35-4c1e-4c37-9d0c-9a1c6f2f4b10'
SETTINGS = rbd.RBDSettings(pool='vms', ceph_conf='/etc/ceph/ceph.conf',
                           user='nova', secret_uuid=b.INSTANCE_UUID)


class FakeRadosError(Exception):
    pass


@ddt.ddt
class SettingsTest(testtools.TestCase):
    def setUp(self):
        super().setUp()
        self.conf = self.useFixture(config_fixture.Config(CONF))

    @ddt.data('default', 'qcow2')
    def test_local_qcow2(self, images_type):
        self.conf.config(images_type=images_type, group='libvirt')
        self.assertIsNone(rbd.settings_from_conf(CONF))

    @ddt.data('raw', 'flat', 'lvm', 'ploop')
    def test_other_backends_refused_by_name(self, images_type):
        self.conf.config(images_type=images_type, group='libvirt')
        self.assertRaisesRegex(
            kvmx_exception.HostNotSupported,
            r'\[libvirt\] images_type = %s is not supported' % images_type,
            rbd.settings_from_conf, CONF)

    def test_local_disks_without_copy_on_write(self):
        # Full copies in the instance directory (storage.create_copy).
        self.conf.config(use_cow_images=False)
        self.assertIsNone(rbd.settings_from_conf(CONF))

    def test_rbd(self):
        self.conf.config(images_type='rbd', images_rbd_pool='vms',
                         images_rbd_ceph_conf='/etc/ceph/c.conf',
                         rbd_user='nova', rbd_secret_uuid=b.INSTANCE_UUID,
                         rbd_connect_timeout=7, group='libvirt')
        self.conf.config(never_download_image_if_on_rbd=True,
                         group='workarounds')
        self.assertEqual(
            rbd.RBDSettings(pool='vms', ceph_conf='/etc/ceph/c.conf',
                            user='nova', secret_uuid=b.INSTANCE_UUID,
                            connect_timeout=7, never_download=True,
                            cache='writeback'),
            rbd.settings_from_conf(CONF, 'writeback'))

    @ddt.data(({'rbd_user': 'nova'}, 'needs rbd_secret_uuid'),
              ({'images_rbd_glance_store_name': 'ceph'},
               'images_rbd_glance_store_name is not supported'),
              ({'images_rbd_pool': ''}, 'needs images_rbd_pool'))
    @ddt.unpack
    def test_refused(self, options, message):
        self.conf.config(images_type='rbd', group='libvirt', **options)
        self.assertRaisesRegex(kvmx_exception.HostNotSupported, message,
                               rbd.settings_from_conf, CONF)

    def test_missing_bindings_named(self):
        real_import = __import__

        def no_rados(name, *args, **kwargs):
            if name in ('rados', 'rbd'):
                raise ImportError('No module named %r' % name)
            return real_import(name, *args, **kwargs)

        with mock.patch('builtins.__import__', no_rados):
            self.assertRaisesRegex(kvmx_exception.HostNotSupported,
                                   'python3-rados python3-rbd',
                                   rbd.bindings)


@ddt.ddt
class CauseTest(testtools.TestCase):
    """Each failure of Ceph is named by its cause."""

    @ddt.data(
        (FakeRadosError('RADOS timed out (error connecting to the '
                        'cluster)'),
         'no Ceph monitor answered within 5 s ([libvirt] '
         'rbd_connect_timeout; monitors of /etc/ceph/ceph.conf)'),
        (FakeRadosError('RADOS permission denied (error connecting to the '
                        'cluster)'),
         'cephx refused client.nova: wrong key in its keyring '
         '(/etc/ceph/ceph.conf)'),
        (FakeRadosError('RADOS object not found (error connecting to the '
                        'cluster)'),
         'cannot connect as client.nova: no keyring or monitors for it in '
         '/etc/ceph/ceph.conf'),
        (FakeRadosError("RADOS object not found (error opening pool "
                        "'vms')"), 'pool vms does not exist'),
        (processutils.ProcessExecutionError(
            stderr='rbd: import failed\nrbd: error opening pool: (1) '
                   'Operation not permitted'),
         'client.nova may not do this (its caps): rbd: error opening '
         'pool: (1) Operation not permitted'),
        (FakeRadosError('RADOS object not found (error calling '
                        'conf_read_file)'),
         'cannot read /etc/ceph/ceph.conf ([libvirt] images_rbd_ceph_conf)'),
        (RuntimeError('rbd python libraries not found'),
         'the rados and rbd Python bindings are missing'),
    )
    @ddt.unpack
    def test_cause(self, error, expected):
        self.assertEqual(expected, rbd.cause(error, SETTINGS))

    def test_errors_are_typed_and_name_the_pool(self):
        disks = rbd.RBDDisks(SETTINGS)
        fake_rados = types.SimpleNamespace(Error=FakeRadosError)
        self.useFixture(fixtures.MockPatchObject(rbd_utils, 'rados',
                                                 fake_rados))
        with testtools.ExpectedException(
                kvmx_exception.RBDStorageError,
                r'Ceph RBD pool vms \(\[libvirt\] images_type=rbd\): '
                r'removing x: pool vms does not exist'):
            with disks.errors('removing x'):
                raise FakeRadosError("error opening pool 'vms'")
        # Others are not Ceph's to name.
        with testtools.ExpectedException(KeyError):
            with disks.errors('removing x'):
                raise KeyError('x')


class RBDDisksTest(testtools.TestCase):
    def setUp(self):
        super().setUp()
        self.disks = rbd.RBDDisks(SETTINGS)
        self.driver = self.disks._driver = mock.Mock()
        self.driver.size.return_value = 16 * units.Mi
        self.image = {'id': IMAGE_ID, 'disk_format': 'raw', 'locations': [
            {'url': 'rbd://%s/images/%s/snap' % (FSID, IMAGE_ID),
             'metadata': {}}]}
        self.useFixture(fixtures.MockPatchObject(
            rbd.IMAGE_API, 'get', side_effect=lambda *a, **k: self.image))
        self.fetch = mock.Mock(return_value='/cache/base')
        self.instance = b.instance()
        self.instance.image_ref = IMAGE_ID
        self.name = b.INSTANCE_UUID + '_disk'

    def test_clone_of_glance_image_in_the_cluster(self):
        self.driver.is_cloneable.return_value = True
        self.disks.create_root(None, self.instance, IMAGE_ID, units.Gi,
                               self.fetch)
        self.driver.clone.assert_called_once_with(
            self.image['locations'][0], self.name)
        self.driver.resize.assert_called_once_with(self.name, units.Gi)
        self.fetch.assert_not_called()
        self.driver.import_image.assert_not_called()

    def test_import_when_not_cloneable(self):
        self.driver.is_cloneable.return_value = False
        self.disks.create_root(None, self.instance, IMAGE_ID, 0, self.fetch)
        self.driver.import_image.assert_called_once_with('/cache/base',
                                                         self.name)
        self.driver.resize.assert_not_called()

    def test_qcow2_image_is_imported_not_cloned(self):
        self.image['disk_format'] = 'qcow2'
        self.disks.create_root(None, self.instance, IMAGE_ID, 0, self.fetch)
        self.driver.is_cloneable.assert_not_called()
        self.driver.import_image.assert_called_once_with('/cache/base',
                                                         self.name)

    def test_never_download(self):
        self.disks.settings = rbd.RBDSettings(pool='vms',
                                              never_download=True)
        self.driver.is_cloneable.return_value = False
        self.assertRaisesRegex(
            exception.ImageUnacceptable, 'never_download_image_if_on_rbd',
            self.disks.create_root, None, self.instance, IMAGE_ID, 0,
            self.fetch)
        self.fetch.assert_not_called()

    def test_flavor_smaller_than_image(self):
        self.driver.is_cloneable.return_value = True
        self.assertRaises(exception.FlavorDiskSmallerThanImage,
                          self.disks.create_root, None, self.instance,
                          IMAGE_ID, units.Mi, self.fetch)

    def listing(self, *disks):
        names = [b.INSTANCE_UUID + '_' + d for d in disks] + [
            'f00d0000-0000-4000-8000-000000000000_disk', 'volume-x']
        self.useFixture(fixtures.MockPatchObject(
            rbd_utils, 'RADOSClient', mock.MagicMock()))
        proxy = self.useFixture(fixtures.MockPatchObject(
            rbd_utils, 'RbdProxy')).mock
        proxy.return_value.list.return_value = names

    def test_disks_of(self):
        self.listing('disk', 'disk.eph0')
        self.assertEqual({'disk', 'disk.eph0'},
                         self.disks.disks_of(self.instance))

    def test_existing_disks_are_not_made_again(self):
        self.listing('disk')
        self.assertRaisesRegex(
            kvmx_exception.RBDImageExists,
            'RBD image vms/%s exists already' % self.name,
            self.disks.check_absent, self.instance)

    def test_remove_only_the_instances_disks(self):
        self.disks.remove(self.instance)
        keep = self.driver.cleanup_volumes.call_args[0][0]
        self.assertEqual(
            [self.name, self.name + '.eph0'],
            [n for n in (self.name, self.name + '.eph0', 'volume-x',
                         'f00d0000-0000-4000-8000-000000000000_disk')
             if keep(n)])
        self.disks.remove(self.instance, [rbd.SWAP])
        keep = self.driver.cleanup_volumes.call_args[0][0]
        self.assertFalse(keep(self.name))
        self.assertTrue(keep(self.name + '.swap'))

    def test_resize_snapshot_and_revert(self):
        self.listing('disk', 'disk.eph0', 'disk.swap')
        self.disks.snapshot_for_resize(self.instance)
        self.assertEqual(
            [mock.call(self.name, rbd.RESIZE_SNAPSHOT),
             mock.call(self.name + '.eph0', rbd.RESIZE_SNAPSHOT)],
            self.driver.create_snap.call_args_list)
        # An ephemeral disk the resize made has no snapshot: it goes.
        self.driver.rollback_to_snap.side_effect = [
            None, exception.SnapshotNotFound(snapshot_id='nova-resize')]
        self.disks.revert_resize(self.instance)
        self.driver.destroy_volume.assert_called_once_with(
            self.name + '.eph0')
        self.driver.remove_snap.assert_called_with(self.name,
                                                   rbd.RESIZE_SNAPSHOT)

    def test_source_for_qemu(self):
        self.assertEqual(
            spec.RBDImage(name='vms/' + self.name,
                          hosts=(('192.0.2.1', '6789'),),
                          auth_username='nova',
                          auth_secret_uuid=b.INSTANCE_UUID),
            self.disks.source(self.instance, rbd.ROOT,
                              (('192.0.2.1', '6789'),)))

    def test_direct_snapshot_into_the_parents_pool(self):
        self.driver.get_fsid.return_value = FSID
        self.driver.parent_info.return_value = ('images', IMAGE_ID, 'snap')
        url = self.disks.clone_into_glance_pool(
            None, self.instance, self.name, 's1', 'new-image')
        self.assertEqual('rbd://%s/images/new-image/snap' % FSID, url)
        self.driver.clone.assert_called_once_with(
            {'url': 'rbd://%s/vms/%s/s1' % (FSID, self.name)}, 'new-image',
            dest_pool='images')
        self.driver.flatten.assert_called_once_with('new-image',
                                                    pool='images')

    def test_direct_snapshot_needs_glance_in_the_cluster(self):
        self.driver.get_fsid.return_value = FSID
        self.driver.parent_info.side_effect = exception.ImageUnacceptable(
            image_id='x', reason='no parent')
        self.image['locations'] = [{'url': 'rbd://other-fsid/images/x/snap',
                                    'metadata': {}}]
        self.driver.parse_url.side_effect = lambda url: url[6:].split('/')
        self.assertRaisesRegex(
            exception.ImageUnacceptable, 'no pool of this Ceph cluster',
            self.disks.clone_into_glance_pool, None, self.instance,
            self.name, 's1', 'new-image')
        self.driver.clone.assert_not_called()


class FakeRBD(object):
    """RBDDisks' calls the instance storage makes, recorded."""

    def __init__(self, existing=()):
        self.existing = set(existing)
        self.calls = []

    def check_absent(self, instance):
        if self.existing:
            raise kvmx_exception.RBDImageExists(name='vms/x',
                                                instance_uuid=instance.uuid)

    def create_root(self, context, instance, image_id, size, fetch_base):
        self.calls.append(('root', size))
        self.existing.add(rbd.ROOT)

    def import_blank(self, instance, disk, base):
        self.calls.append(('blank', disk, os.path.basename(base)))
        self.existing.add(disk)

    def disks_of(self, instance):
        return set(self.existing)

    def monitors(self):
        return (('192.0.2.1', '6789'),)

    def source(self, instance, disk, monitors):
        return spec.RBDImage(name='vms/%s_%s' % (instance.uuid, disk),
                             hosts=monitors)

    def remove(self, instance, disks=None):
        self.calls.append(('remove',))
        self.existing.clear()


class InstanceStorageTest(testtools.TestCase):
    def setUp(self):
        super().setUp()
        self.instances = self.useFixture(fixtures.TempDir()).path
        self.rbd = FakeRBD()
        self.storage = storage.InstanceStorage(self.instances, '_base',
                                               rbd=self.rbd)
        self.useFixture(fixtures.MockPatchObject(
            self.storage, 'blank_disk',
            side_effect=lambda fs, size, label=None: '/cache/%s_%d' % (
                fs, size // units.Mi)))
        self.useFixture(fixtures.MockPatch(
            'nova.virt.configdrive.required_by', return_value=False))
        self.instance = b.instance(flavor_obj=b.flavor(
            root_gb=2, ephemeral_gb=1, swap=64))
        self.instance.kernel_id = None
        self.image_meta = b.image()

    def test_disks_on_rbd_the_rest_in_the_directory(self):
        files = self.storage.prepare(None, self.instance, self.image_meta)
        self.assertEqual(
            # vfat: Nova's ephemeral file system without an os_type.
            [('root', 2 * units.Gi), ('blank', rbd.EPHEMERAL, 'vfat_1024'),
             ('blank', rbd.SWAP, 'swap_64')], self.rbd.calls)
        self.assertEqual('vms/%s_disk' % b.INSTANCE_UUID,
                         files.root_disk.name)
        self.assertEqual('vms/%s_disk.eph0' % b.INSTANCE_UUID,
                         files.ephemeral.name)
        self.assertEqual('vms/%s_disk.swap' % b.INSTANCE_UUID,
                         files.swap.name)
        self.assertEqual([], storage.local_disks(files))
        self.assertEqual([], os.listdir(self.storage.instance_dir(
            self.instance)))

    def test_failure_removes_the_disks_made(self):
        self.rbd.import_blank = mock.Mock(
            side_effect=kvmx_exception.RBDStorageError(pool='vms',
                                                       reason='full'))
        self.assertRaises(kvmx_exception.RBDStorageError,
                          self.storage.prepare, None, self.instance,
                          self.image_meta)
        self.assertEqual([('root', 2 * units.Gi), ('remove',)],
                         self.rbd.calls)
        self.assertFalse(os.path.exists(self.storage.instance_dir(
            self.instance)))

    def test_disks_of_another_are_left_alone(self):
        self.rbd.existing.add(rbd.ROOT)
        self.assertRaises(kvmx_exception.RBDImageExists,
                          self.storage.prepare, None, self.instance,
                          self.image_meta)
        self.assertEqual([], self.rbd.calls)
        self.assertFalse(os.path.exists(self.storage.instance_dir(
            self.instance)))

    def test_live_migration_destination_makes_no_disk(self):
        self.rbd.existing.update({rbd.ROOT, rbd.SWAP})
        files = self.storage.prepare(None, self.instance, self.image_meta,
                                     disks=False)
        self.assertEqual([], self.rbd.calls)
        self.assertIsNotNone(files.root_disk)
        self.assertIsNone(files.ephemeral)

    def test_destroy_keeps_shared_disks_when_asked(self):
        self.storage.prepare(None, self.instance, self.image_meta)
        self.assertTrue(self.storage.destroy(self.instance,
                                             shared_disks=False))
        self.assertNotIn(('remove',), self.rbd.calls)
        self.storage.destroy(self.instance)
        self.assertIn(('remove',), self.rbd.calls)


class MovesTest(testtools.TestCase):
    """Resize and live migration with disks every host reaches."""

    def setUp(self):
        super().setUp()
        self.rbd = mock.Mock()
        self.storage = mock.Mock(rbd=self.rbd, shared_disks=True)

    def test_resize_grows_after_a_snapshot_and_makes_a_fresh_swap(self):
        self.rbd.disks_of.return_value = {rbd.ROOT, rbd.SWAP}
        inst = b.instance(flavor_obj=b.flavor(root_gb=3, ephemeral_gb=1,
                                              swap=32))
        moves = migration.ColdMigration(mock.Mock(), self.storage)
        moves.resize_rbd_disks(inst)
        self.assertEqual(
            ['snapshot_for_resize', 'disks_of', 'grow', 'remove'],
            [c[0] for c in self.rbd.method_calls])
        self.rbd.grow.assert_called_once_with(inst, rbd.ROOT, 3 * units.Gi)
        self.rbd.remove.assert_called_once_with(inst, [rbd.SWAP])
        self.storage.create_ephemeral.assert_called_once_with(
            inst, 1, None)
        self.storage.create_swap.assert_called_once_with(inst, 32)

    def check_source(self, image_type):
        self.storage.sees_probe.return_value = False
        self.storage.files_of.return_value = spec.GuestFiles(
            root_disk=b.rbd_image('disk'), console_log='/x/console.log')
        data = objects.LibvirtLiveMigrateData(filename='probe')
        if image_type:
            data.image_type = image_type
        migrations = live_migration.LiveMigrations(
            None, self.storage, None, None, b.settings)
        return migrations.check_source(None, b.instance(), data, None)

    def test_live_migration_copies_no_disk(self):
        data = self.check_source('rbd')
        self.assertTrue(data.is_shared_block_storage)
        self.assertFalse(data.is_shared_instance_path)
        self.assertFalse(data.block_migration)

    def test_live_migration_to_a_host_with_files_is_refused(self):
        self.assertRaisesRegex(
            exception.MigrationPreCheckError,
            r'this host keeps instance disks on RBD, the destination in '
            r'files \(\[libvirt\] images_type\)', self.check_source,
            'qcow2')


class SnapshotTest(testtools.TestCase):
    """createImage of a guest whose root disk is on RBD."""

    def setUp(self):
        super().setUp()
        self.rbd = mock.Mock()

        @contextlib.contextmanager
        def root_snapshot(instance, cut):
            with cut():
                yield 'uuid_disk', 'kvmx-snapshot-1'

        self.rbd.root_snapshot.side_effect = root_snapshot
        lifecycle = mock.Mock()
        lifecycle.find_guest.return_value.is_active.return_value = True
        store = mock.Mock(rbd=self.rbd,
                          instances_path=self.useFixture(
                              fixtures.TempDir()).path)
        self.snapshots = snapshot.Snapshotter(lifecycle, store, 60)
        self.snapshots.image_api = mock.Mock()
        self.snapshots.image_api.get.return_value = {'name': 'snap-1'}
        self.instance = b.instance()
        self.instance.image_ref = IMAGE_ID
        self.instance.kernel_id = self.instance.ramdisk_id = None
        self.instance.system_metadata = {}
        self.instance.os_type = None
        self.states = []

    def update(self, task_state, expected_state=None):
        self.states.append(task_state)

    def test_cloned_in_ceph_glance_gets_the_location(self):
        self.rbd.clone_into_glance_pool.return_value = 'rbd://f/images/i/snap'
        self.snapshots.snapshot(None, self.instance, 'i', self.update)
        metadata = self.snapshots.image_api.update.call_args[0][2]
        self.assertEqual(('rbd://f/images/i/snap', 'raw'),
                         (metadata['location'], metadata['disk_format']))
        self.assertNotIn('data', self.snapshots.image_api.update.call_args[1])
        self.rbd.export.assert_not_called()
        self.assertEqual([task_states.IMAGE_PENDING_UPLOAD,
                          task_states.IMAGE_UPLOADING], self.states)

    def test_uploaded_when_glance_is_elsewhere(self):
        self.rbd.clone_into_glance_pool.side_effect = exception.Forbidden(
            'no write permission on storage pool images')

        def export(name, snap, path):
            with open(path, 'wb') as f:
                f.write(b'root disk')

        self.rbd.export.side_effect = export
        self.snapshots.image_api.update.side_effect = (
            lambda ctxt, image_id, metadata, data, purge_props: (
                self.assertEqual(b'root disk', data.read())))
        self.snapshots.snapshot(None, self.instance, 'i', self.update)
        self.rbd.export.assert_called_once_with('uuid_disk',
                                                'kvmx-snapshot-1', mock.ANY)
        metadata = self.snapshots.image_api.update.call_args[0][2]
        self.assertNotIn('location', metadata)

    def test_glance_refusing_the_location_removes_the_clone(self):
        self.rbd.clone_into_glance_pool.return_value = 'rbd://f/images/i/snap'
        self.snapshots.image_api.update.side_effect = exception.Forbidden()
        self.assertRaises(exception.Forbidden, self.snapshots.snapshot,
                          None, self.instance, 'i', self.update)
        self.rbd.remove_glance_image.assert_called_once_with('i', 'images')


class RevertDestinationTest(testtools.TestCase):
    """On RBD, the destination of a reverted resize removes its copies of
    the instance's files and leaves the disks (the source's) alone."""

    def test_revert(self):
        from nova_kvmx import driver
        drv = driver.KVMXDriver.__new__(driver.KVMXDriver)
        drv._storage = mock.Mock(shared_disks=True)
        drv._lifecycle = mock.Mock()
        inst = b.instance()
        inst.task_state = task_states.RESIZE_REVERTING
        drv.destroy(None, inst, [], None, destroy_disks=False)
        drv._lifecycle.destroy.assert_called_once_with(
            inst, [], True, None, None, False)
        self.assertIsNone(drv.check_instance_shared_storage_local(None,
                                                                  inst))
        drv.delete_instance_files(inst)
        drv._storage.destroy.assert_called_once_with(inst,
                                                     shared_disks=False)
