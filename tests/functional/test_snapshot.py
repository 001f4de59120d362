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

"""Snapshots through Nova's API of real guests, and servers booted from
them."""

import os

import fixtures

from tests.functional import base
from tests.functional import guest_image


class SnapshotTestBase(base.RealLibvirtTestCase):
    """Helpers of the snapshot tests (no tests of its own)."""

    def setUp(self):
        super().setUp()
        self.flavor_id = self.create_flavor()

    def boot(self, image_id=None):
        server = self._create_server(image_uuid=image_id or self.image_id,
                                     flavor_id=self.flavor_id,
                                     networks='none', expected_state='BUILD')
        server = self.wait_for_status(server, 'ACTIVE')
        self.wait_for_console(server, guest_image.BOOT_MARKER_PREFIX)
        return server

    def snapshot(self, server):
        """createImage, then the image record once the upload is done
        (read from Glance: Nova's image proxy API is gone since 2.36)."""
        image_id = self.api.post_server_action(
            server['id'], {'createImage': {'name': 'snap'}})['image_id']
        server = self.wait_for_task_done(server)
        return server, self.glance.show(self.ctxt, image_id)

    def snapshot_dir(self):
        path = os.path.join(self.instances_path, 'snapshots')
        return os.listdir(path) if os.path.isdir(path) else []


class SnapshotTest(SnapshotTestBase):

    def setUp(self):
        super().setUp()
        self.image_id = self.create_bootable_image()

    def test_live_snapshot_then_boot_from_it(self):
        server = self.boot()
        dom_id = self.domain(server).ID()
        server, image = self.snapshot(server)
        self.assertEqual('snapshot', image['properties']['image_type'])
        self.assertEqual(server['id'], image['properties']['instance_uuid'])
        self.assertEqual('qcow2', image['disk_format'])
        self.assertGreater(image['size'], 0)

        # The guest kept running: same QEMU process, booted once.
        self.assertEqual('ACTIVE', server['status'])
        self.assertEqual(dom_id, self.domain(server).ID())
        self.assertEqual(1, self.console_output(server).count(
            guest_image.BOOT_MARKER_PREFIX))
        self.assertEqual([], self.snapshot_dir())

        self.boot(image['id'])

    def test_cold_snapshot_of_a_stopped_guest(self):
        server = self.boot()
        self.api.post_server_action(server['id'], {'os-stop': None})
        server = self.wait_for_status(server, 'SHUTOFF')
        server, image = self.snapshot(server)
        self.assertEqual('SHUTOFF', server['status'])
        self.assertGreater(image['size'], 0)
        self.boot(image['id'])

    def test_failed_upload_leaves_the_guest_running(self):
        server = self.boot()
        dom_id = self.domain(server).ID()
        self.useFixture(fixtures.MockPatch(
            'nova.tests.fixtures.glance.GlanceFixture.update',
            side_effect=OSError('glance store is full')))
        image_id = self.api.post_server_action(
            server['id'], {'createImage': {'name': 'snap'}})['image_id']

        server = self.wait_for_task_done(server)
        self.assertEqual('ACTIVE', server['status'])
        self.assertEqual(dom_id, self.domain(server).ID())
        # Nova's compute manager deletes the image of a failed snapshot;
        # nothing of the copy stays on the host.
        self.assertNotIn(image_id, [
            i['id'] for i in self.glance.detail(self.ctxt)])
        self.assertEqual([], self.snapshot_dir())


class FullCopyDiskSnapshotTest(SnapshotTestBase):
    """``use_cow_images = False``: the root disk has no backing file, so
    the live copy takes all of it."""

    START_COMPUTE = False

    def setUp(self):
        super().setUp()
        self.flags(use_cow_images=False)
        self.start_compute()
        self.image_id = self.create_bootable_image()

    def test_live_snapshot_then_boot_from_it(self):
        server = self.boot()
        dom_id = self.domain(server).ID()
        server, image = self.snapshot(server)
        self.assertEqual(('ACTIVE', dom_id),
                         (server['status'], self.domain(server).ID()))
        self.assertEqual('qcow2', image['disk_format'])
        self.assertGreater(image['size'], 0)
        self.boot(image['id'])
