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

"""Per-instance files: qcow2 overlays made by the real qemu-img, the
O_DIRECT probe that chooses the disk cache mode, and paths that only a
UUID can name."""

import dataclasses
import errno
import grp
import io
import json
import os
from unittest import mock
import warnings

from cryptography import exceptions as crypto_exceptions
import ddt
import fixtures
from nova import context as nova_context
from nova import exception
from nova import objects
from nova import test
from oslo_concurrency import processutils
from oslo_utils import units
import testtools

from nova_kvmx import exception as kvmx_exception
from nova_kvmx.guest import spec
from nova_kvmx import storage
from nova_kvmx.storage import base_image
from tests.unit import builders as b
from tests.unit import glance


def image_info(path):
    out, _err = processutils.execute('qemu-img', 'info', '--output=json',
                                     '-U', path)
    return json.loads(out)


@ddt.ddt
class CreateOverlayTest(testtools.TestCase):
    def setUp(self):
        super().setUp()
        self.dir = self.useFixture(fixtures.TempDir()).path
        self.overlay = os.path.join(self.dir, 'disk')

    def base(self, size):
        """A sparse raw base image of ``size`` bytes."""
        path = os.path.join(self.dir, 'base')
        with open(path, 'wb') as f:
            f.truncate(size)
        return path

    @ddt.data(
        (1 * units.Mi, 1, 1 * units.Gi),
        (1 * units.Gi, 1, 1 * units.Gi),       # exactly the flavor's size
        (5 * units.Mi, 0, 5 * units.Mi),       # root_gb=0: the image's size
    )
    @ddt.unpack
    def test_overlay_on_raw_base(self, base_size, root_gb, virtual_size):
        base = self.base(base_size)
        storage.create_overlay(base, self.overlay, root_gb)
        info = image_info(self.overlay)
        self.assertEqual(('qcow2', virtual_size, base, 'raw'), (
            info['format'], info['virtual-size'], info['backing-filename'],
            info['backing-filename-format']))
        self.assertEqual(base_size, image_info(base)['virtual-size'])

    def test_overlay_is_private_from_the_start(self):
        # qemu-img creates files by the umask; nova-compute's is 022.
        self.addCleanup(os.umask, os.umask(0o022))
        storage.create_overlay(self.base(units.Mi), self.overlay, 0)
        self.assertEqual(0o600, os.stat(self.overlay).st_mode & 0o777)

    def test_flavor_smaller_than_image_is_refused(self):
        base = self.base(2 * units.Gi)
        ex = self.assertRaises(exception.FlavorDiskSmallerThanImage,
                               storage.create_overlay, base, self.overlay, 1)
        self.assertIn('%d bytes' % units.Gi, str(ex))
        self.assertIn('%d bytes' % (2 * units.Gi), str(ex))
        self.assertFalse(os.path.exists(self.overlay))


class DirectIOTest(testtools.TestCase):
    """cache='none' needs O_DIRECT; the probe must answer truthfully and
    leave nothing behind."""

    def setUp(self):
        super().setUp()
        # /var/tmp: on disk, as instances_path is (TMPDIR may be tmpfs).
        self.dir = self.useFixture(fixtures.TempDir(rootdir='/var/tmp')).path

    def test_disk_filesystem_supports_it(self):
        self.assertTrue(storage.supports_direct_io(self.dir))
        self.assertEqual([], os.listdir(self.dir))

    def test_filesystem_refusing_o_direct(self):
        """Like tmpfs before Linux 6.6: the file is created, then the open
        fails with EINVAL."""
        real_open = os.open

        def open_without_direct_io(path, flags, *args):
            if flags & os.O_DIRECT:
                os.close(real_open(path, flags & ~os.O_DIRECT, *args))
                raise OSError(errno.EINVAL, 'Invalid argument')
            return real_open(path, flags, *args)

        with mock.patch('os.open', open_without_direct_io):
            self.assertFalse(storage.supports_direct_io(self.dir))
        self.assertEqual([], os.listdir(self.dir))

    def test_missing_directory(self):
        self.assertFalse(storage.supports_direct_io(
            os.path.join(self.dir, 'missing')))


def instance_with_uuid(uuid):
    """A real Instance whose uuid field holds ``uuid``: oslo's UUIDField
    still accepts a non-UUID (with a FutureWarning), so the driver cannot
    rely on the object to have refused it."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', FutureWarning)
        return objects.Instance(uuid=uuid)


@ddt.ddt
class InstanceDirTest(testtools.TestCase):
    def setUp(self):
        super().setUp()
        root = self.useFixture(fixtures.TempDir()).path
        self.instances = os.path.join(root, 'instances')
        self.victim = os.path.join(root, 'victim')
        os.makedirs(self.victim)
        self.storage = storage.InstanceStorage(self.instances, '_base')

    def test_named_by_uuid(self):
        self.assertEqual(
            os.path.join(self.instances, b.INSTANCE_UUID),
            self.storage.instance_dir(instance_with_uuid(b.INSTANCE_UUID)))

    @ddt.data('../../etc', '../victim', '/etc', '', '.', '..',
              b.INSTANCE_UUID + '/../../victim', 'vnf-1')
    def test_non_uuid_is_refused(self, bad):
        inst = instance_with_uuid(bad)
        self.assertRaises(exception.InvalidUUID,
                          self.storage.instance_dir, inst)
        self.assertRaises(exception.InvalidUUID,
                          self.storage.console_log, inst)

    def test_destroy_cannot_reach_outside_instances_path(self):
        self.assertRaises(exception.InvalidUUID, self.storage.destroy,
                          instance_with_uuid('../victim'))
        self.assertTrue(os.path.isdir(self.victim))


@ddt.ddt
class EphemeralFilesystemTest(testtools.TestCase):
    """The filesystem of a new ephemeral disk, as Nova's mkfs chooses it
    (nova.privsep.fs.configurable_mkfs)."""

    @ddt.data((None, 'linux', 'ext4'), (None, 'windows', 'ntfs'),
              (None, None, 'vfat'), (None, 'freebsd', 'vfat'),
              ('xfs', None, 'xfs'), ('ext3', 'linux', 'ext3'))
    @ddt.unpack
    def test_by_option_then_os_type(self, option, os_type, expected):
        store = storage.InstanceStorage('/nonexistent', '_base', option)
        self.assertEqual(expected, store.ephemeral_fs(os_type))


class TrustedCertsTest(test.NoDBTestCase):
    """An image fetched for an instance with trusted image certificates
    goes through Nova's signature and certificate checks (Nova's Glance
    client's, on Nova's fake Glance)."""

    def setUp(self):
        super().setUp()
        self.glance = self.useFixture(glance.VerifyingGlanceFixture(self))
        self.ctxt = nova_context.get_admin_context()
        root = self.useFixture(fixtures.TempDir()).path
        self.storage = storage.InstanceStorage(root, '_base')
        self.flags(lock_path=root, group='oslo_concurrency')
        image = self.glance.create(self.ctxt, {
            'name': 'unsigned', 'status': 'active', 'disk_format': 'raw',
            'container_format': 'bare', 'properties': {}},
            data=io.BytesIO(b'\0' * 65536))
        self.image_id = image['id']

    def test_unsigned_image_refused_naming_it(self):
        certs = objects.TrustedCerts(ids=['0b5d2c72-12cc-4ba6-a8d7-'
                                          '3ff5cc1d8cb8'])
        ex = self.assertRaises(kvmx_exception.ImageVerificationFailed,
                               self.storage.cached_image, self.ctxt,
                               self.image_id, trusted_certs=certs)
        # Nova aborts the build on it rather than trying another host.
        self.assertIsInstance(ex, exception.CertificateValidationFailed)
        self.assertIn('Image %s failed its signature verification'
                      % self.image_id, str(ex))
        self.assertIn('img_signature', str(ex))
        self.assertEqual([], os.listdir(self.storage.cache_dir))

    def test_without_certs_fetched_unchecked(self):
        path = self.storage.cached_image(self.ctxt, self.image_id)
        self.assertEqual(65536, os.path.getsize(path))
        self.assertEqual([os.path.basename(path)],
                         os.listdir(self.storage.cache_dir))

    def test_data_not_matching_signature(self):
        def fetch_func(context, image_id, path, trusted_certs=None):
            raise crypto_exceptions.InvalidSignature()

        ex = self.assertRaises(kvmx_exception.ImageVerificationFailed,
                               base_image.fetch, fetch_func, self.ctxt,
                               self.image_id, '/nonexistent')
        self.assertIn('Image %s failed its signature verification: its data '
                      'does not match its signature' % self.image_id,
                      str(ex))


class SharedBaseTest(test.NoDBTestCase):
    """The image cache's bases: 0640 of [kvmx] image_cache_group, and the
    overlays' bases found for the domain (which tells libvirt not to
    relabel them)."""

    def setUp(self):
        super().setUp()
        self.ctxt = nova_context.get_admin_context()
        root = self.useFixture(fixtures.TempDir()).path
        self.storage = storage.InstanceStorage(root, '_base')
        self.flags(lock_path=root, group='oslo_concurrency')
        self.glance = self.useFixture(glance.VerifyingGlanceFixture(self))
        self.image_id = self.glance.create(self.ctxt, {
            'name': 'img', 'status': 'active', 'disk_format': 'raw',
            'container_format': 'bare', 'properties': {}},
            data=io.BytesIO(b'\0' * 65536))['id']

    def assert_shared(self, path):
        info = os.stat(path)
        self.assertEqual((0o640, grp.getgrnam('kvm').gr_gid),
                         (info.st_mode & 0o777, info.st_gid))

    def test_cached_image_and_blank_disk_are_shared(self):
        self.assert_shared(self.storage.cached_image(self.ctxt,
                                                     self.image_id))
        self.assert_shared(self.storage.blank_disk('swap', units.Mi))

    def test_a_base_cached_before_is_shared_on_use(self):
        path = self.storage.cached_image(self.ctxt, self.image_id)
        os.chmod(path, 0o600)
        self.storage.cached_image(self.ctxt, self.image_id)
        self.assert_shared(path)

    def test_with_bases_reads_each_overlay(self):
        base = self.storage.cached_image(self.ctxt, self.image_id)
        swap = self.storage.blank_disk('swap', units.Mi)
        inst_dir = os.path.join(self.storage.instances_path, b.INSTANCE_UUID)
        os.makedirs(inst_dir)
        root = os.path.join(inst_dir, 'disk')
        storage.create_overlay(base, root, 0)
        files = self.storage.with_bases(
            dataclasses.replace(b.files(swap=True), root_disk=root,
                                swap=os.path.join(inst_dir, 'disk.swap')))
        self.assertEqual(((root, spec.BaseImage(base, 'raw')),),
                         files.bases)
        storage.create_overlay(swap, files.swap, 0)
        self.assertEqual(
            {root: spec.BaseImage(base, 'raw'),
             files.swap: spec.BaseImage(swap, 'raw')},
            dict(self.storage.with_bases(files).bases))

    def test_unknown_group_refused_at_start(self):
        store = storage.InstanceStorage('/nonexistent', '_base',
                                        cache_group='no-such-group')
        ex = self.assertRaises(kvmx_exception.HostNotSupported,
                               store.check_host)
        self.assertIn('[kvmx] image_cache_group no-such-group', str(ex))
