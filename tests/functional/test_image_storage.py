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

"""Images onto local disks, through Nova's API: an image too large for
the disk it is for is refused before anything expands it, and the
``[DEFAULT]`` storage options of Nova's libvirt driver show in the disks
(``qemu-img info``) and in what a real guest reads from them: the guest
of tests/functional/volume_image.py reports the token its image has in
its first sector."""

import json
import os

import fixtures
from lxml import etree
from oslo_concurrency import processutils
from oslo_utils import units

from nova_kvmx import storage
from tests.functional import base
from tests.functional import unprivileged
from tests.functional import volume_base
from tests.functional import volume_image


def image_info(path):
    """qemu-img info of a disk, also while its guest runs (then QEMU's:
    read as root)."""
    out, _err = unprivileged.as_root(
        processutils.execute, 'qemu-img', 'info', '--output=json', '-U',
        path)
    return json.loads(out)


class TooLargeImageTest(base.RealLibvirtTestCase):

    def test_image_larger_than_flavor_root_disk(self):
        # 2 GiB of virtual disk in a few hundred KiB of compressed qcow2.
        tmp = self.useFixture(fixtures.TempDir()).path
        raw, path = os.path.join(tmp, 'big.raw'), os.path.join(tmp, 'big')
        processutils.execute('qemu-img', 'create', '-f', 'raw', raw, '2G')
        with open(raw, 'r+b') as f:
            f.write(os.urandom(256 * units.Ki))
        processutils.execute('qemu-img', 'convert', '-c', '-f', 'raw',
                             '-O', 'qcow2', raw, path)
        self.assertLess(os.path.getsize(path), units.Mi)
        image_id = self._upload(path, 'qcow2', 'too-large')

        fault = self.boot_and_expect_error(image_id, self.create_flavor())
        self.assertIn('Flavor disk is %d bytes, image is %d bytes' % (
            units.Gi, 2 * units.Gi), fault)
        cache = os.path.join(self.instances_path, '_base')
        self.assertEqual([], os.listdir(cache))


class LocalDiskOptionsTest(volume_base.VolumesMixin,
                           base.RealLibvirtTestCase):
    """Nova's options are read when nova-compute starts."""

    START_COMPUTE = False

    def upload_guest(self, disk_format):
        guest = volume_image.get_artifacts()
        path = guest.root_disk
        if disk_format != 'raw':
            path = os.path.join(self.useFixture(fixtures.TempDir()).path,
                                'root.' + disk_format)
            processutils.execute('qemu-img', 'convert', '-f', 'raw', '-O',
                                 disk_format, guest.root_disk, path)
        return self._upload(
            path, disk_format, 'kvmx-volume-guest',
            kernel_id=self._upload(guest.kernel, 'aki', 'kvmx-kernel'),
            ramdisk_id=self._upload(guest.initramfs, 'ari', 'kvmx-initrd'),
            os_command_line=guest.cmdline)

    def boot(self, image_id):
        """An ACTIVE server of a 1 GiB root disk whose guest read the
        image's token from it; the server."""
        server = self._create_server(
            image_uuid=image_id, flavor_id=self.create_flavor(),
            networks='none')
        self.wait_for_disks(server, [
            ('vda', 'read', volume_image.IMAGE_TOKEN, units.Gi)])
        return server

    def root_disk(self, server):
        """The root disk's qemu-img info, and its <driver> in libvirt's
        domain."""
        [driver] = etree.fromstring(self.domain(server).XMLDesc()).xpath(
            "devices/disk[target/@dev='vda']/driver")
        return (image_info(os.path.join(self.instance_dir(server), 'disk')),
                driver)

    def base(self, image_id):
        return os.path.join(self.instances_path, '_base',
                            storage.cache_name(image_id))

    def test_force_raw_images_false_keeps_qcow2_base(self):
        self.flags(force_raw_images=False)
        self.start_compute()
        image_id = self.upload_guest('qcow2')
        disk, driver = self.root_disk(self.boot(image_id))
        self.assertEqual('qcow2', image_info(self.base(image_id))['format'])
        self.assertEqual(('qcow2', self.base(image_id), 'qcow2'), (
            disk['format'], disk['backing-filename'],
            disk['backing-filename-format']))
        self.assertIsNone(driver.get('io'))

    def test_preallocate_images_space(self):
        self.flags(preallocate_images='space')
        self.start_compute()
        disk, driver = self.root_disk(self.boot(self.upload_guest('raw')))
        self.assertEqual(('qcow2', units.Gi), (disk['format'],
                                               disk['virtual-size']))
        self.assertGreaterEqual(disk['actual-size'], units.Gi)
        self.assertEqual(('none', 'native'), (driver.get('cache'),
                                              driver.get('io')))

    def test_use_cow_images_false_copies_the_image(self):
        self.flags(use_cow_images=False)
        self.start_compute()
        image_id = self.upload_guest('raw')
        server = self.boot(image_id)
        disk, _driver = self.root_disk(server)
        # The guest read its image's token from a disk with no backing
        # file: a full copy, which needs no base in the image cache.
        self.assertEqual(('qcow2', units.Gi, None), (
            disk['format'], disk['virtual-size'],
            disk.get('backing-filename')))
        [source] = etree.fromstring(self.domain(server).XMLDesc()).xpath(
            "devices/disk[target/@dev='vda']")
        self.assertEqual([], source.xpath('backingStore/source'))
