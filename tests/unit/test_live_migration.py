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

"""Live migration policy: libvirt flags and URIs from Nova's options, the
data Nova's downtime steps and timeout count, and how the source tells
shared instance storage from a block migration (real directories)."""

import os
from unittest import mock

import ddt
import fixtures
import libvirt
import nova.conf
from nova import exception
from nova import objects
from oslo_concurrency import processutils
from oslo_config import fixture as config_fixture
from oslo_utils import units
import testtools

from nova_kvmx import exception as kvmx_exception
from nova_kvmx import live_migration
from nova_kvmx import live_migration_job as job
from nova_kvmx import storage
from tests.unit import builders as b
from tests.unit import volume_data as vd

CONF = nova.conf.CONF
BASE = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER |
        libvirt.VIR_MIGRATE_UNDEFINE_SOURCE | libvirt.VIR_MIGRATE_PERSIST_DEST)


@ddt.ddt
class FlagsTest(testtools.TestCase):
    def setUp(self):
        super().setUp()
        self.conf = self.useFixture(config_fixture.Config(CONF))

    @ddt.data(
        # (options, block migration, paused, extra flags)
        ({}, False, False, 0),
        ({}, True, False, libvirt.VIR_MIGRATE_NON_SHARED_INC),
        ({'live_migration_permit_auto_converge': True}, False, False,
         libvirt.VIR_MIGRATE_AUTO_CONVERGE),
        # Post-copy replaces auto-converge...
        ({'live_migration_permit_auto_converge': True,
          'live_migration_permit_post_copy': True}, False, False,
         libvirt.VIR_MIGRATE_POSTCOPY),
        # ... except for a paused guest, where QEMU refuses it.
        ({'live_migration_permit_auto_converge': True,
          'live_migration_permit_post_copy': True}, False, True,
         libvirt.VIR_MIGRATE_AUTO_CONVERGE),
        ({'live_migration_with_native_tls': True,
          'live_migration_parallel_connections': 4}, True, False,
         libvirt.VIR_MIGRATE_TLS | libvirt.VIR_MIGRATE_PARALLEL |
         libvirt.VIR_MIGRATE_NON_SHARED_INC),
    )
    @ddt.unpack
    def test_flags(self, options, block, paused, extra):
        self.conf.config(group='libvirt', **options)
        self.assertEqual(BASE | extra, job.migration_flags(block, paused))

    @ddt.data(
        ({}, 'compute2', 'qemu+tcp://compute2/system'),
        ({}, '2001:db8::7', 'qemu+tcp://[2001:db8::7]/system'),
        ({'live_migration_scheme': 'tls'}, '192.0.2.7',
         'qemu+tls://192.0.2.7/system'),
        ({'live_migration_uri': 'qemu+ssh://nova@%s/system'}, 'compute2',
         'qemu+ssh://nova@compute2/system'),
    )
    @ddt.unpack
    def test_destination_libvirt(self, options, dest, uri):
        self.conf.config(group='libvirt', **options)
        self.assertEqual(uri, job.libvirt_uri(dest))

    @ddt.data(
        # Memory and each disk count 2 GiB at least, as in Nova.
        (256, [], 2),
        (8192, [], 8),
        (4096, [5 * units.Mi], 6),
        (4096, [10 * units.Gi, units.Gi], 16),
    )
    @ddt.unpack
    def test_data_to_transfer(self, memory_mb, disks, gigabytes):
        self.assertEqual(gigabytes, job.data_gb(memory_mb, disks))


class SourceCheckTest(testtools.TestCase):
    """check_can_live_migrate_source on real directories: the
    destination's test file is seen only through a shared one."""

    def setUp(self):
        super().setUp()
        self.source_dir = self.useFixture(fixtures.TempDir()).path
        self.dest_dir = self.useFixture(fixtures.TempDir()).path
        self.instance = b.instance()

    def check(self, dest_dir, block_migration=None, bdi=None,
              settings=b.settings, **data):
        dest = live_migration.LiveMigrations(
            None, storage.InstanceStorage(dest_dir, '_base'), None, None,
            b.settings)
        source = live_migration.LiveMigrations(
            None, storage.InstanceStorage(self.source_dir, '_base'), None,
            None, settings)
        migrate_data = objects.LibvirtLiveMigrateData(
            filename=dest.storage.make_probe(), **data)
        if block_migration is not None:
            migrate_data.block_migration = block_migration
        try:
            return source.check_source(None, self.instance, migrate_data,
                                       bdi)
        finally:
            dest.cleanup_destination_check(migrate_data)
            self.assertEqual([], os.listdir(dest_dir))

    def test_shared_directory_migrates_without_copying_disks(self):
        data = self.check(self.source_dir)
        self.assertTrue(data.is_shared_instance_path)
        self.assertFalse(data.block_migration)
        self.assertEqual(self.instance.uuid, data.instance_relative_path)

    def test_own_directories_need_a_block_migration(self):
        data = self.check(self.dest_dir)
        self.assertFalse(data.is_shared_instance_path)
        self.assertTrue(data.block_migration)

    def test_block_migration_onto_the_shared_directory_is_refused(self):
        self.assertRaises(exception.InvalidLocalStorage, self.check,
                          self.source_dir, block_migration=True)

    def test_shared_storage_migration_without_it_is_refused(self):
        self.assertRaises(exception.InvalidSharedStorage, self.check,
                          self.dest_dir, block_migration=False)

    def test_destination_without_serial_console_is_refused(self):
        """The guest's TCP serial ports need a serial console address
        there (Nova's check)."""
        self.assertRaisesRegex(
            exception.MigrationPreCheckError, r'\[serial_console\] enabled',
            self.check, self.dest_dir, serial_listen_addr=None,
            settings=lambda: b.settings(serial_listen='127.0.0.1'))
        data = self.check(self.dest_dir, serial_listen_addr='192.0.2.3',
                          settings=lambda: b.settings(
                              serial_listen='127.0.0.1'))
        self.assertTrue(data.block_migration)

    def test_tunnelled_migration_is_refused(self):
        self.useFixture(config_fixture.Config(CONF)).config(
            live_migration_tunnelled=True, group='libvirt')
        self.assertRaisesRegex(
            exception.MigrationPreCheckError, 'use '
            'live_migration_with_native_tls', self.check, self.dest_dir)

    def test_destination_without_room_for_the_disks_is_refused(self):
        inst_dir = os.path.join(self.source_dir, self.instance.uuid)
        os.mkdir(inst_dir)
        processutils.execute(
            'qemu-img', 'create', '-f', 'qcow2',
            os.path.join(inst_dir, 'disk'), '2G')
        self.assertRaisesRegex(
            exception.MigrationPreCheckError, 'need 2048 MiB on the '
            'destination, it has 1000 MiB', self.check, self.dest_dir,
            disk_over_commit=False, disk_available_mb=1000)
        # Counting what the disks really use, they fit.
        data = self.check(self.dest_dir, disk_over_commit=True,
                          disk_available_mb=1000)
        self.assertTrue(data.block_migration)

    def volume_backed(self):
        return {'block_device_mapping': [
            {'connection_info': vd.RBD, 'boot_index': 0,
             'mount_device': '/dev/vda'}]}

    def test_only_volumes_need_no_copy(self):
        """Nova's rule: a volume-backed guest without local disks is on
        shared block storage, whatever the instances directory."""
        data = self.check(self.dest_dir, bdi=self.volume_backed())
        self.assertFalse(data.is_shared_instance_path)
        self.assertTrue(data.is_shared_block_storage)
        self.assertFalse(data.block_migration)
        self.assertRaises(exception.InvalidLocalStorage, self.check,
                          self.dest_dir, block_migration=True,
                          bdi=self.volume_backed())

    def test_volume_backed_with_an_ephemeral_disk_is_copied(self):
        inst_dir = os.path.join(self.source_dir, self.instance.uuid)
        os.mkdir(inst_dir)
        processutils.execute('qemu-img', 'create', '-f', 'qcow2',
                             os.path.join(inst_dir, 'disk.eph0'), '1G')
        data = self.check(self.dest_dir, bdi=self.volume_backed())
        self.assertFalse(data.is_shared_block_storage)
        self.assertTrue(data.block_migration)

    def test_unsupported_volume_refused_before_anything(self):
        bdi = {'block_device_mapping': [{
            'connection_info': {'driver_volume_type': 'nfs',
                                'serial': vd.VOLUME_ID, 'data': {}},
            'boot_index': None, 'mount_device': '/dev/vdb'}]}
        self.assertRaises(kvmx_exception.UnsupportedVolumeType, self.check,
                          self.dest_dir, bdi=bdi)


class RollbackTest(testtools.TestCase):
    def test_destination_lets_go_of_the_volumes(self):
        lifecycle = mock.Mock()
        lifecycle.find_guest.return_value = None
        migrations = live_migration.LiveMigrations(
            None, mock.Mock(), lifecycle, mock.Mock(), None)
        bdms = [{'connection_info': vd.ISCSI, 'boot_index': 0}]
        migrations.rollback_at_destination(
            b.instance(), [], objects.LibvirtLiveMigrateData(
                is_shared_instance_path=False),
            {'block_device_mapping': bdms}, 'ctxt')
        lifecycle.volumes.disconnect_all.assert_called_once_with(
            'ctxt', mock.ANY, bdms, force=True)
        migrations.storage.destroy.assert_called_once_with(
            mock.ANY, shared_disks=False)

    def test_source_lets_go_of_the_volumes(self):
        lifecycle = mock.Mock()
        migrations = live_migration.LiveMigrations(
            None, None, lifecycle, None, None)
        bdms = [{'connection_info': vd.ISCSI}, {'connection_info': vd.RBD}]
        migrations.post_live_migration('ctxt', b.instance(),
                                       {'block_device_mapping': bdms})
        self.assertEqual(
            [mock.call('ctxt', vd.ISCSI, mock.ANY),
             mock.call('ctxt', vd.RBD, mock.ANY)],
            lifecycle.volumes.disconnect_quietly.call_args_list)
