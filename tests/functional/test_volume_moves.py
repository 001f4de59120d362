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

"""Servers with RBD volumes moving between the two libvirt hosts of
test_live_migration (compute2: a second libvirtd in its own namespaces,
with its own instances directory and an sshd for disk copies).

Both hosts have client.cinder's key in a libvirt secret of the UUID
Cinder's connection info names, as every compute host of a cloud does.
No volume is copied: the source lets go of it, the destination opens it
with the connection info Cinder gives it.
"""

import os

from tests.functional import guest_image
from tests.functional import test_live_migration
from tests.functional import volume_base
from tests.functional import volume_image

DEST = test_live_migration.DEST
GiB = 1024 ** 3


class VolumeMovesTest(volume_base.VolumesMixin,
                      test_live_migration.TwoHostsTestCase):

    # Root: the test drives its Ceph cluster with the admin keyring
    # (root's) from set-up to the last check; tests/cloud runs
    # nova-compute as nova on Ceph.
    AS_NOVA = False
    DEST_SSH = True

    def setUp(self):
        self.setup_ceph()
        super().setUp()
        self.setup_volumes()
        self.add_secret(self.dest_conn, self.ceph.key('cinder'),
                        secret_uuid=self.secret_uuid)
        self.volume_image_id = self.create_volume_guest_image()
        self.root_id = self.cinder.create_volume(
            image_id=self.volume_image_id)
        self.data_id = self.cinder.create_volume()
        server = self.wait_for_status(self.boot_from_volume(
            self.flavor_id, volume_id=self.root_id, host=self.compute_host,
            extra_bdms=[{'boot_index': -1, 'uuid': self.data_id,
                         'source_type': 'volume',
                         'destination_type': 'volume'}]), 'ACTIVE')
        self.wait_for_disks(server, [
            ('vda', 'read', volume_image.IMAGE_TOKEN, GiB),
            ('vdb', 'wrote', None, GiB)])
        self.token = self.token_of(server)
        self.server = server

    def token_of(self, server):
        return self.token(server, 'vdb')

    def assert_on_dest(self, server):
        """The guest runs on compute2 with both volumes, opened there
        only; nothing of it is left at the source."""
        self.assertEqual(DEST, server['OS-EXT-SRV-ATTR:host'])
        self.assert_disk(server, self.root_id, 'vda', conn=self.dest_conn)
        self.assert_disk(server, self.data_id, 'vdb', conn=self.dest_conn)
        self.assertFalse(self.domain_exists(server))
        self.assertFalse(os.path.exists(self.instance_dir(server)))
        for volume_id in (self.root_id, self.data_id):
            self.assertEqual(1, len(self.cinder.watchers(volume_id)))
        self.assert_no_secret_leaked([self.secret_uuid])

    def test_live_migration(self):
        self.live_migrate(self.server)
        migration = self.wait_for_migration(
            self.server, ('completed', 'error', 'failed'))
        self.assertEqual('completed', migration['status'])
        server = self.wait_for_status(self.server, 'ACTIVE')
        self.assert_on_dest(server)
        # Only volumes: nothing was copied (no block migration).
        self.assertFalse(os.path.exists(os.path.join(
            self.dest_instances, server['id'], 'disk')))
        self.assertIn('starting (no disk to copy)',
                      self.stdlog.logger.output)

        # The same guest, its data intact: restarted there, it reads the
        # image's token and the one it wrote before the move.
        self.api.post_server_action(server['id'],
                                    {'reboot': {'type': 'HARD'}})
        self.wait_for_console(server, guest_image.BOOT_MARKER_PREFIX, 1)
        self.wait_for_disks(server, [
            ('vda', 'read', volume_image.IMAGE_TOKEN, GiB),
            ('vdb', 'read', self.token, GiB)])

    def test_cold_migration(self):
        self.api.post_server_action(self.server['id'],
                                    {'migrate': {'host': DEST}})
        server = self.wait_for_status(self.server, 'VERIFY_RESIZE')
        self.wait_for_disks(server, [
            ('vda', 'read', volume_image.IMAGE_TOKEN, GiB),
            ('vdb', 'read', self.token, GiB)])
        self.api.post_server_action(server['id'], {'confirmResize': None})
        server = self.wait_for_status(server, 'ACTIVE')
        self.assert_on_dest(server)
