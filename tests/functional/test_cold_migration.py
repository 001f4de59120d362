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

"""Cold migration of real guests between two hosts that share no storage.

The hosts are those of test_live_migration: compute2 is a second libvirtd
in its own namespaces with its own instances directory at the same path.
It also runs an sshd there, so the source copies the guest's disks with
Nova's remote filesystem transport (scp over ssh, the default), exactly
as between two machines. compute2 has its own image cache: the copied
overlays find their base there only after it is fetched from Glance.
"""

import os

from lxml import etree
from nova import context as nova_context
from nova.virt import images

from tests.functional import guest_image
from tests.functional import test_live_migration
from tests.functional import unprivileged

DEST = test_live_migration.DEST


class ColdMigrationTest(test_live_migration.TwoHostsTestCase):

    DEST_SSH = True

    def setUp(self):
        super().setUp()
        # Its guests use 2 MiB pages another test may be counting.
        self.hold_hugepages()
        # Every kind of disk moves: root, ephemeral, swap, config drive.
        self.flavor_id = self._create_flavor(
            name='kvmx.pinned.2m.disks', vcpu=1, memory_mb=256, disk=1,
            ephemeral=1, swap=64, extra_spec={'hw:cpu_policy': 'dedicated',
                                              'hw:mem_page_size': '2MB'})
        server = self._build_server(
            image_uuid=self.image_id, flavor_id=self.flavor_id,
            networks='none', host=self.compute_host)
        server['config_drive'] = True
        self.server = self.wait_for_status(
            self.api.post_server({'server': server}), 'ACTIVE')
        self.wait_for_console(self.server, guest_image.BOOT_MARKER_PREFIX)
        self.source_domain_id = self.domain(self.server).ID()
        self.assertEqual({0: 0},
                         self.claim(self.server).cells[0].cpu_pinning)
        self.dest_dir = os.path.join(self.dest_instances, self.server['id'])

    def migrate(self):
        self.api.post_server_action(self.server['id'],
                                    {'migrate': {'host': DEST}})

    def dest_domain(self, server):
        return etree.fromstring(self.dest_conn.lookupByUUIDString(
            server['id']).XMLDesc(0))

    def test_migrate_confirm_pinned_hugepage_guest(self):
        self.take_dest_cpu()
        self.migrate()
        server = self.wait_for_status(self.server, 'VERIFY_RESIZE')
        self.assertEqual(DEST, server['OS-EXT-SRV-ATTR:host'])
        self.wait_for_console(server, guest_image.BOOT_MARKER_PREFIX)

        # The destination's claim (CPU 0 is the blocker's) is the domain's.
        self.assertEqual({0: 1}, self.claim(server).cells[0].cpu_pinning)
        root = self.dest_domain(server)
        self.assertEqual([('0', '1')], [
            (pin.get('vcpu'), pin.get('cpuset'))
            for pin in root.findall('cputune/vcpupin')])
        self.assertEqual('2048', root.find(
            'memoryBacking/hugepages/page').get('size'))
        self.assert_every_disk(root)
        # The disks came over the wire; their bases (the image, the blank
        # ext4 disk) were fetched or made in the destination's own cache
        # (at the instances path compute2's nova-compute sees).
        for name in ('disk', 'disk.eph0', 'disk.swap'):
            disk = os.path.join(self.dest_dir, name)
            # The running guest's disk is QEMU's: read as root.
            backing = unprivileged.as_root(lambda: images.qemu_img_info(
                disk, format='qcow2').backing_file)
            self.assertEqual(os.path.join(self.dest_instances, '_base'),
                             os.path.dirname(backing))
            self.assertTrue(os.path.isfile(backing))
        for name in os.listdir(self.dest_dir):
            if name != 'console.log':
                self.assertEqual(0o600, os.stat(os.path.join(
                    self.dest_dir, name)).st_mode & 0o777, name)
        # The source keeps its files, but no domain, until confirmed.
        self.assertFalse(self.domain_exists(server))
        self.assertTrue(os.path.isdir(self.instance_dir(server) +
                                      '_resize'))

        self.api.post_server_action(server['id'], {'confirmResize': None})
        server = self.wait_for_status(server, 'ACTIVE')
        self.wait_for_migration(server, ('confirmed',))
        self.assertFalse(os.path.exists(self.instance_dir(server) +
                                        '_resize'))
        self.assertFalse(os.path.exists(self.instance_dir(server)))
        self.assertEqual({self.compute_nodename(DEST)},
                         self.allocation_hosts(server))
        self.assertEqual(set(), self.pinned_cpus(self.compute_host))
        self.assertEqual({0, 1}, self.pinned_cpus(DEST))

    def test_revert_brings_the_old_claim_back_on_the_source(self):
        self.migrate()
        server = self.wait_for_status(self.server, 'VERIFY_RESIZE')
        self.assertTrue(os.path.isfile(os.path.join(self.dest_dir, 'disk')))

        self.api.post_server_action(server['id'], {'revertResize': None})
        server = self.wait_for_status(server, 'ACTIVE')
        self.wait_for_migration(server, ('reverted',))
        self.wait_for_console(server, guest_image.BOOT_MARKER_PREFIX,
                              count=2)
        self.assertEqual(self.compute_host, server['OS-EXT-SRV-ATTR:host'])
        self.assertEqual([('0', '0')], [
            (pin.get('vcpu'), pin.get('cpuset')) for pin in etree.fromstring(
                self.domain(server).XMLDesc(0)).findall('cputune/vcpupin')])
        # Nothing of it stays on the destination.
        self.assertFalse(self.dest_domain_exists(server))
        self.assertFalse(os.path.exists(self.dest_dir))
        self.assertFalse(os.path.exists(self.instance_dir(server) +
                                        '_resize'))
        self.assert_still_on_source(server)

    def assert_move_failed_guest_on_source(self, restarted):
        """The user sees the move's error; the guest runs where it was;
        nothing of it is left on either host; returns the error."""
        self.wait_for_migration(self.server, ('error',))
        event = self._wait_for_action_fail_completion(
            self.server, 'migrate', 'compute_resize_instance')
        server = self.wait_for_status(self.server, 'ACTIVE')
        # The destination's claim goes with its next resource update.
        self.compute2.manager.update_available_resource(
            nova_context.get_admin_context())
        self.assertEqual(set(), self.pinned_cpus(DEST))
        self.assertFalse(os.path.exists(self.instance_dir(server) +
                                        '_resize'))
        self.assert_still_on_source(server)
        self.assertEqual(restarted,
                         self.domain(server).ID() != self.source_domain_id)
        self.assertEqual('', self.dest.run_inside(
            'ls', '-A', self.instances_path).replace('_base\n', ''))
        return event['details']

    def test_unreachable_destination_leaves_the_guest_untouched(self):
        self.dest.stop_sshd()
        self.migrate()
        error = self.assert_move_failed_guest_on_source(restarted=False)
        self.assertIn('cannot reach %s through the remote filesystem '
                      'transport (ssh)' % self.dest.address, error)

    def test_destination_disk_full_restarts_the_guest_on_the_source(self):
        """The copy fails midway (no space left on the destination): the
        copied part goes, and the guest runs again where it was."""
        self.dest.run_inside('mount', '-t', 'tmpfs', '-o', 'size=64k',
                             'tmpfs', self.instances_path)
        self.addCleanup(self.dest.run_inside, 'umount', self.instances_path)
        self.migrate()
        error = self.assert_move_failed_guest_on_source(restarted=True)
        self.assertIn('copying the disks to %s failed' % self.dest.address,
                      error)
        self.assertIn('scp: write remote', error)
        self.wait_for_console(self.server, guest_image.BOOT_MARKER_PREFIX,
                              count=2)
