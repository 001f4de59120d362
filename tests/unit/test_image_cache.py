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

"""The image cache under Nova's image cache manager, and pre-caching: real
files in a temporary instances path, a guest spawned on Nova's fake
libvirt (its disk a real qcow2 overlay on its base)."""

import os
import time

from nova import objects
from nova import test
from nova.tests.unit.virt import test_virt_drivers

from nova_kvmx import storage
from nova_kvmx.storage import image_cache
from tests.unit import test_virt_driver_suite as suite

DAY = 24 * 3600


@suite.only_own_tests
class ImageCacheTest(suite.FakeLibvirtDriverMixin,
                     test_virt_drivers._VirtDriverTestCase, test.TestCase):

    def setUp(self):
        super().setUp()
        # The privsep helper cannot start in unit tests: the same touch,
        # in this process.
        self.stub_out('nova.privsep.path.utime',
                      lambda path: os.utime(path, None))
        self.flags(remove_unused_original_minimum_age_seconds=DAY,
                   group='image_cache')
        self.base_dir = self.connection._storage.cache_dir

    def base(self, image_id):
        return os.path.join(self.base_dir, storage.cache_name(image_id))

    def unused_base(self, image_id, age):
        os.makedirs(self.base_dir, exist_ok=True)
        path = self.base(image_id)
        with open(path, 'wb') as f:
            f.write(b'\0' * 512)
        then = time.time() - age
        os.utime(path, (then, then))
        return path

    def test_nova_keeps_the_cache(self):
        self.assertTrue(self.connection.capabilities['has_imagecache'])

    def test_unused_base_aged_out_used_base_kept(self):
        instance, _ = self._get_running_instance()
        used = self.base(instance.image_ref)
        self.assertTrue(os.path.exists(used))
        # Used by a guest, however old.
        os.utime(used, (time.time() - 2 * DAY,) * 2)
        old = self.unused_base('11111111-1111-1111-1111-111111111111',
                               DAY + 60)
        young = self.unused_base('22222222-2222-2222-2222-222222222222',
                                 DAY - 60)
        self.connection.manage_image_cache(
            self.ctxt, objects.InstanceList(objects=[instance]))
        self.assertFalse(os.path.exists(old))
        self.assertTrue(os.path.exists(young))
        self.assertTrue(os.path.exists(used))
        # Touched: in use now.
        self.assertLess(time.time() - os.path.getmtime(used), 60)

    def test_base_of_a_deleted_guest_goes_once_old_enough(self):
        instance, network_info = self._get_running_instance()
        used = self.base(instance.image_ref)
        self.connection.destroy(self.ctxt, instance, network_info)
        os.utime(used, (time.time() - DAY - 60,) * 2)
        self.connection.manage_image_cache(self.ctxt, objects.InstanceList())
        self.assertFalse(os.path.exists(used))

    def test_bases_stay_without_remove_unused_base_images(self):
        self.flags(remove_unused_base_images=False, group='image_cache')
        self.connection._image_cache = image_cache.manager(
            self.connection._host)
        old = self.unused_base('11111111-1111-1111-1111-111111111111',
                               2 * DAY)
        self.connection.manage_image_cache(self.ctxt, objects.InstanceList())
        self.assertTrue(os.path.exists(old))

    def test_precache_fetches_once_then_touches(self):
        image_id = self.image_service.detail(self.ctxt)[0]['id']
        self.assertTrue(self.connection.cache_image(self.ctxt, image_id))
        path = self.base(image_id)
        self.assertTrue(os.path.isfile(path))
        os.utime(path, (time.time() - 2 * DAY,) * 2)
        self.assertFalse(self.connection.cache_image(self.ctxt, image_id))
        self.assertLess(time.time() - os.path.getmtime(path), 60)
