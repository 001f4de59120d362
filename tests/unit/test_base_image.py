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

"""Images into the image cache and onto instance disks: real qcow2 and raw
files made by qemu-img, served by a stand-in for Glance that copies them;
the virtual size is bounded before anything expands an image, and the
storage options of Nova's libvirt driver (force_raw_images,
preallocate_images) show in ``qemu-img info`` of the disks."""

import os
import shutil
from unittest import mock

import fixtures
from nova import exception
from nova import objects
from nova.virt import images
from oslo_concurrency import processutils
from oslo_utils import units
import testtools

from nova_kvmx import exception as kvmx_exception
from nova_kvmx import storage
from tests.unit import builders as b
from tests.unit.test_storage import image_info

IMAGE_ID = 'c0ffee00-1111-4222-8333-444455556666'


class FakeGlance(object):
    """What nova.virt.images asks of Glance: an image's record and its
    bytes."""

    def __init__(self):
        self.files = {}

    def add(self, image_id, path, disk_format):
        self.files[image_id] = (path, disk_format)

    def get(self, context, image_id):
        return {'id': image_id, 'disk_format': self.files[image_id][1]}

    def download(self, context, image_id, dest_path=None,
                 trusted_certs=None):
        shutil.copyfile(self.files[image_id][0], dest_path)


def qemu_img(*args):
    processutils.execute('qemu-img', *args)


class BaseImageTest(testtools.TestCase):
    def setUp(self):
        super().setUp()
        # On disk, as instances_path is (TMPDIR may be tmpfs).
        root = self.useFixture(fixtures.TempDir(rootdir='/var/tmp')).path
        self.src = os.path.join(root, 'glance')
        os.makedirs(self.src)
        self.instances = os.path.join(root, 'instances')
        self.glance = FakeGlance()
        self.useFixture(fixtures.MockPatchObject(images, 'IMAGE_API',
                                                 self.glance))
        # Seen, not replaced: whether anything expanded the image.
        self.convert = self.useFixture(fixtures.MockPatchObject(
            images, 'convert_image', wraps=images.convert_image)).mock

    def storage(self, **kw):
        return storage.InstanceStorage(self.instances, '_base', **kw)

    def qcow2(self, virtual_size, data_mib=1):
        """A compressed qcow2 image of ``virtual_size`` bytes holding
        ``data_mib`` MiB of data."""
        raw = os.path.join(self.src, 'data.raw')
        qemu_img('create', '-f', 'raw', raw, str(virtual_size))
        with open(raw, 'r+b') as f:
            f.write(b'\xa5' * data_mib * units.Mi)
        path = os.path.join(self.src, 'image.qcow2')
        qemu_img('convert', '-c', '-f', 'raw', '-O', 'qcow2', raw, path)
        os.unlink(raw)
        self.glance.add(IMAGE_ID, path, 'qcow2')
        return path

    def cached(self):
        cache = os.path.join(self.instances, '_base')
        return os.listdir(cache) if os.path.isdir(cache) else []

    def instance(self, root_gb):
        inst = b.instance(flavor_obj=b.flavor(root_gb=root_gb))
        inst.image_ref = IMAGE_ID
        os.makedirs(os.path.join(self.instances, inst.uuid))
        return inst

    def test_image_larger_than_flavor_root_disk_never_expanded(self):
        self.qcow2(2 * units.Gi)
        store = self.storage()
        ex = self.assertRaises(exception.FlavorDiskSmallerThanImage,
                               store.create_root, None, self.instance(1),
                               IMAGE_ID)
        self.assertIn('Flavor disk is %d bytes, image is %d bytes' % (
            units.Gi, 2 * units.Gi), str(ex))
        self.convert.assert_not_called()
        self.assertEqual([], self.cached())

    def test_image_without_root_disk_bounded_by_option(self):
        self.qcow2(2 * units.Gi)
        store = self.storage(max_image_gb=1)
        ex = self.assertRaises(kvmx_exception.ImageTooLarge,
                               store.create_root, None, self.instance(0),
                               IMAGE_ID)
        self.assertIsInstance(ex, exception.FlavorDiskSmallerThanImage)
        self.assertIn('virtual size is %d bytes' % (2 * units.Gi), str(ex))
        self.assertIn('[kvmx] max_image_virtual_size_gb', str(ex))
        self.convert.assert_not_called()
        self.assertEqual([], self.cached())

    def test_no_bound_with_option_zero(self):
        self.qcow2(2 * units.Gi)
        inst = self.instance(0)
        self.storage(max_image_gb=0).create_root(None, inst, IMAGE_ID)
        disk = os.path.join(self.instances, inst.uuid, 'disk')
        self.assertEqual(2 * units.Gi, image_info(disk)['virtual-size'])

    def test_rescue_image_bounded_by_option(self):
        self.qcow2(2 * units.Gi)
        inst = self.instance(4)
        inst.config_drive = False
        store = self.storage(max_image_gb=1)
        self.assertRaises(kvmx_exception.ImageTooLarge, store.rescue_files,
                          None, inst, objects.ImageMeta(id=IMAGE_ID))
        self.assertEqual([], os.listdir(store.instance_dir(inst)))
        self.assertEqual([], self.cached())

    def test_cached_base_larger_than_flavor_refused(self):
        # Cached for a larger flavor (or by an operator's pre-caching).
        self.qcow2(2 * units.Gi)
        store = self.storage()
        store.cached_image(None, IMAGE_ID)
        inst = self.instance(1)
        self.assertRaises(exception.FlavorDiskSmallerThanImage,
                          store.create_root, None, inst, IMAGE_ID)
        self.assertEqual([], os.listdir(store.instance_dir(inst)))

    def test_image_that_fits_is_converted_to_raw(self):
        self.qcow2(64 * units.Mi)
        inst = self.instance(1)
        self.storage(max_image_gb=1).create_root(None, inst, IMAGE_ID)
        [base] = self.cached()
        disk = image_info(os.path.join(self.instances, inst.uuid, 'disk'))
        self.assertEqual(('qcow2', units.Gi, 'raw'), (
            disk['format'], disk['virtual-size'],
            disk['backing-filename-format']))
        self.assertEqual('raw', image_info(os.path.join(
            self.instances, '_base', base))['format'])
        self.convert.assert_called_once()

    def test_force_raw_images_false_keeps_the_qcow2_base(self):
        self.qcow2(64 * units.Mi)
        inst = self.instance(1)
        self.storage(force_raw=False).create_root(None, inst, IMAGE_ID)
        [base] = self.cached()
        base = os.path.join(self.instances, '_base', base)
        disk = image_info(os.path.join(self.instances, inst.uuid, 'disk'))
        self.assertEqual(('qcow2', units.Gi, base, 'qcow2'), (
            disk['format'], disk['virtual-size'], disk['backing-filename'],
            disk['backing-filename-format']))
        self.assertEqual('qcow2', image_info(base)['format'])
        self.convert.assert_not_called()

    def test_kernel_bounded_by_option(self):
        kernel = os.path.join(self.src, 'vmlinuz')
        with open(kernel, 'wb') as f:
            f.truncate(2 * units.Mi + 1)
        self.glance.add(IMAGE_ID, kernel, 'aki')
        inst = self.instance(1)
        inst.kernel_id = IMAGE_ID
        path = os.path.join(self.instances, inst.uuid, 'kernel')
        limit = storage.base_image.SizeLimit(2 * units.Mi)
        ex = self.assertRaises(
            kvmx_exception.ImageTooLarge, storage.base_image.fetch_file,
            None, IMAGE_ID, path, limit)
        self.assertIn('%d bytes' % (2 * units.Mi + 1), str(ex))
        self.assertFalse(os.path.exists(path))
        with open(kernel, 'r+b') as f:
            f.truncate(2 * units.Mi)
        storage.base_image.fetch_file(None, IMAGE_ID, path, limit)
        self.assertEqual(2 * units.Mi, os.path.getsize(path))

    def test_spawn_with_too_large_kernel_leaves_nothing(self):
        kernel = os.path.join(self.src, 'vmlinuz')
        with open(kernel, 'wb') as f:
            f.truncate(units.Gi + 1)
        self.glance.add(IMAGE_ID, kernel, 'aki')
        inst = b.instance()
        inst.kernel_id = IMAGE_ID
        inst.config_drive = False
        store = self.storage(max_image_gb=1)
        self.assertRaises(kvmx_exception.ImageTooLarge, store.prepare,
                          None, inst, objects.ImageMeta(), volume_backed=True)
        self.assertEqual([], os.listdir(self.instances))

    def test_preallocate_images_space(self):
        self.qcow2(64 * units.Mi)
        inst = self.instance(1)
        store = self.storage(preallocate=True)
        store.check_host()
        store.create_root(None, inst, IMAGE_ID)
        disk = os.path.join(self.instances, inst.uuid, 'disk')
        info = image_info(disk)
        self.assertEqual(('qcow2', units.Gi), (info['format'],
                                               info['virtual-size']))
        # The space is the disk's; its file keeps its qcow2 size.
        self.assertGreaterEqual(info['actual-size'], units.Gi)
        self.assertLess(os.path.getsize(disk), units.Mi)

    def test_without_copy_on_write_disks_are_full_copies(self):
        # use_cow_images = False: no backing file, the image's data in the
        # disk, grown to the flavor's size; ephemeral and swap too.
        self.qcow2(64 * units.Mi, data_mib=2)
        inst = self.instance(1)
        store = self.storage(use_cow=False)
        store.create_root(None, inst, IMAGE_ID)
        store.create_ephemeral(inst, 1, 'linux')
        store.create_swap(inst, 16)
        inst_dir = os.path.join(self.instances, inst.uuid)
        for name, size in (('disk', units.Gi), ('disk.eph0', units.Gi),
                           ('disk.swap', 16 * units.Mi)):
            info = image_info(os.path.join(inst_dir, name))
            self.assertEqual(('qcow2', size, None), (
                info['format'], info['virtual-size'],
                info.get('backing-filename')), name)
        disk = os.path.join(inst_dir, 'disk')
        self.assertGreaterEqual(image_info(disk)['actual-size'],
                                2 * units.Mi)
        qemu_img('compare', '-f', 'qcow2', '-F', 'qcow2', disk,
                 os.path.join(self.src, 'image.qcow2'))
        # With copy-on-write (the default), an overlay on the cached base.
        shutil.rmtree(inst_dir)
        os.makedirs(inst_dir)
        self.storage().create_root(None, inst, IMAGE_ID)
        self.assertIn('backing-filename', image_info(disk))

    def test_no_preallocation_by_default(self):
        self.qcow2(64 * units.Mi)
        inst = self.instance(1)
        self.storage().create_root(None, inst, IMAGE_ID)
        info = image_info(os.path.join(self.instances, inst.uuid, 'disk'))
        self.assertLess(info['actual-size'], units.Mi)

    def test_preallocation_refused_where_fallocate_fails(self):
        store = self.storage(preallocate=True)
        os.makedirs(self.instances)
        with mock.patch.object(
                processutils, 'execute', side_effect=processutils.
                ProcessExecutionError(stderr='Operation not supported')):
            ex = self.assertRaises(kvmx_exception.HostNotSupported,
                                   store.check_host)
        self.assertIn('preallocate_images', str(ex))
        self.assertEqual([], os.listdir(self.instances))
