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

"""Cold migration's pieces that need no guest: overlays copied from another
host find their bases in this host's cache (real qemu-img and mkswap), a
destination that cannot be reached through the remote filesystem transport
(a real ssh to an address where nothing answers), disks that would shrink.
tests/functional/test_cold_migration.py moves real guests."""

import os
import shutil

import fixtures
from nova import exception
from nova import objects
from oslo_concurrency import processutils
from oslo_utils import units
import testtools

from nova_kvmx import migration
from nova_kvmx import storage
from tests.unit import builders as b
from tests.unit import test_storage

UNREACHABLE = '127.255.255.254'


class CopiedOverlayTest(testtools.TestCase):
    """An overlay made on the source points at the source's cache; the
    destination's instances path is another one here."""

    def setUp(self):
        super().setUp()
        root = self.useFixture(fixtures.TempDir()).path
        self.source = storage.InstanceStorage(
            os.path.join(root, 'source'), '_base')
        self.dest = storage.InstanceStorage(
            os.path.join(root, 'dest'), '_base')
        self.moves = migration.ColdMigration(None, self.dest)
        self.instance = b.instance()
        self.instance.image_ref = b.IMAGE_ID
        os.makedirs(self.dest.instance_dir(self.instance))

    def copied_overlay(self, base, name='disk'):
        """An overlay on ``base`` (in the source's cache), as the copy
        leaves it in the destination's instance directory."""
        overlay = os.path.join(self.dest.instance_dir(self.instance), name)
        storage.create_overlay(base, overlay, 0)
        return overlay

    def test_blank_base_is_made_again_here(self):
        base = self.source.blank_disk('swap', 64 * units.Mi)
        overlay = self.copied_overlay(base, 'disk.swap')
        shutil.rmtree(self.source.cache_dir)
        self.moves.rebase_onto_local_cache(None, self.instance, overlay)
        info = test_storage.image_info(overlay)
        here = os.path.join(self.dest.cache_dir, 'swap_64')
        self.assertEqual((here, 'raw'), (info['backing-filename'],
                                         info['backing-filename-format']))
        self.assertEqual(64 * units.Mi, os.path.getsize(here))

    def test_image_base_already_cached_here(self):
        name = storage.cache_name(self.instance.image_ref)
        base = self.write_base(self.source.cache_dir, name)
        here = self.write_base(self.dest.cache_dir, name)
        overlay = self.copied_overlay(base)
        # Found in this host's cache: nothing is fetched.
        self.moves.rebase_onto_local_cache(None, self.instance, overlay)
        self.assertEqual(here, test_storage.image_info(overlay)[
            'backing-filename'])

    def test_qcow2_image_base_keeps_its_format(self):
        # [DEFAULT] force_raw_images = False: the bases stay qcow2.
        name = storage.cache_name(self.instance.image_ref)
        bases = []
        for cache_dir in (self.source.cache_dir, self.dest.cache_dir):
            os.makedirs(cache_dir)
            bases.append(os.path.join(cache_dir, name))
            processutils.execute('qemu-img', 'create', '-f', 'qcow2',
                                 bases[-1], str(units.Mi))
        overlay = os.path.join(self.dest.instance_dir(self.instance), 'disk')
        storage.create_overlay(bases[0], overlay, 0, 'qcow2')
        self.moves.rebase_onto_local_cache(None, self.instance, overlay)
        info = test_storage.image_info(overlay)
        self.assertEqual((bases[1], 'qcow2'), (
            info['backing-filename'], info['backing-filename-format']))

    def test_grown_disks_preallocated_here(self):
        # [DEFAULT] preallocate_images = space on the destination.
        self.dest.preallocate = True
        self.instance.flavor = b.flavor(root_gb=1, ephemeral_gb=1)
        base = self.write_base(self.dest.cache_dir,
                               storage.cache_name(self.instance.image_ref))
        root = self.copied_overlay(base)
        ephemeral = self.copied_overlay(self.dest.blank_disk(
            'ext4', units.Gi, 'ephemeral0'), 'disk.eph0')
        self.moves.adopt_files(None, self.instance,
                               self.dest.instance_dir(self.instance))
        for disk in (root, ephemeral):
            info = test_storage.image_info(disk)
            self.assertEqual(units.Gi, info['virtual-size'])
            self.assertGreaterEqual(info['actual-size'], units.Gi)

    def test_unknown_base_is_refused(self):
        base = self.write_base(self.source.cache_dir, 'someone-elses')
        overlay = self.copied_overlay(base)
        ex = self.assertRaises(exception.ResizeError,
                               self.moves.rebase_onto_local_cache, None,
                               self.instance, overlay)
        self.assertIn('neither the instance\'s image nor a blank disk',
                      str(ex))
        self.assertEqual(base, test_storage.image_info(overlay)[
            'backing-filename'])

    @staticmethod
    def write_base(cache_dir, name):
        os.makedirs(cache_dir, exist_ok=True)
        path = os.path.join(cache_dir, name)
        with open(path, 'wb') as f:
            f.truncate(units.Mi)
        return path


class DestinationTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        root = self.useFixture(fixtures.TempDir()).path
        self.moves = migration.ColdMigration(
            None, storage.InstanceStorage(root, '_base'))

    def test_this_host_shares_its_storage(self):
        self.assertTrue(self.moves.shares_storage_with('127.0.0.1'))

    def test_unreachable_destination(self):
        self.assertFalse(self.moves.shares_storage_with(UNREACHABLE))
        ex = self.assertRaises(exception.ResizeError,
                               self.moves.remote_mkdir, UNREACHABLE,
                               '/nonexistent/instance')
        self.assertIn('cannot reach %s through the remote filesystem '
                      'transport (ssh): ssh' % UNREACHABLE, str(ex))

    def test_disks_never_shrink(self):
        old = objects.Flavor(root_gb=2, ephemeral_gb=1)
        for new in (objects.Flavor(root_gb=1, ephemeral_gb=1),
                    objects.Flavor(root_gb=2, ephemeral_gb=0)):
            self.assertRaises(exception.ResizeError,
                              migration.check_no_shrink, old, new)
        migration.check_no_shrink(old, objects.Flavor(root_gb=2,
                                                      ephemeral_gb=1))
