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

"""Cold and live migration between two hosts whose nova-compute runs as
the unprivileged ``nova`` user (test_unprivileged.py's set-up, twice).

Both hosts are libvirtds of the test's own (second_libvirtd.py), which
the ``libvirt`` group manages, each with its own address, its own sshd
and its own instances directory at the same path (compute2's is mounted
there in its namespace; in this one process compute2's nova-compute
has it at another path, where compute1's namespace shows compute1's),
so moves copy the disks: scp and ssh as ``nova`` for a cold migration,
with the key, known hosts and client configuration a deployment gives
the ``nova`` user (unprivileged.SshLogin); libvirtd to libvirtd
(``qemu+tcp``) and NBD for a block live migration. What a user and an
operator check is asserted after each move: where the server is, the
domain running in that host's libvirtd, the guest still up, nothing
left on the other host, and the owners and modes of the files the
Security section of the README states.
"""

import hashlib
import os
import re
import time

import fixtures
from lxml import etree

import nova.privsep.path

from tests.functional import guest_image
from tests.functional import second_libvirtd
from tests.functional import test_firmware
from tests.functional import test_live_migration
from tests.functional import test_unprivileged
from tests.functional import unprivileged

DEST = test_live_migration.DEST
NVRAM_MAX = 16 * 1024 * 1024


class UnprivilegedMovesTest(test_live_migration.TwoHostsMixin,
                            test_unprivileged.NovaUserTestCase):

    LIBVIRTD_INDEX = 0
    LIBVIRTD_SSH = True

    def libvirtd_binds(self):
        """compute1's instances directory also at compute2's path: each
        host sees its own at either, as two hosts with the same instances
        path would (compute2's nova-compute, in this process, has its own
        at another path, which it also gives the other host for a copy)."""
        self.dest_instances = os.path.join(
            os.path.dirname(self.instances_path), 'instances-' + DEST)
        unprivileged.private_dir(os.path.dirname(self.dest_instances),
                                 os.path.basename(self.dest_instances),
                                 self.nova)
        os.chmod(self.dest_instances, 0o711)
        return ((self.instances_path, self.dest_instances),)

    def prepare(self):
        self.dest = self.useFixture(second_libvirtd.SecondLibvirtd(
            os.path.dirname(self.instances_path),
            hostname='kvmx-' + self.domain_prefix.strip('-') + '-2',
            binds=((self.dest_instances, self.instances_path),),
            ssh=True, ssh_users=(unprivileged.NOVA_USER,), group='libvirt',
            index=1))
        for host in (self.libvirtd, self.dest):
            self.useFixture(unprivileged.SshLogin(self.nova, host))
        self.dest_conn = self.dest.connection()

    def start_compute(self):
        """compute1 on the test's first libvirtd, compute2 on the second;
        each with its own address."""
        super().start_compute()
        self.useFixture(fixtures.MockPatchObject(
            self.compute.manager.driver, 'get_host_ip_addr',
            return_value=self.libvirtd.address))
        self.start_dest_compute(self.libvirtd.uri)
        # Live migrations go to compute2 only.
        self.flags(live_migration_inbound_addr=self.dest.address,
                   live_migration_monitor_interval=1, group='libvirt')
        return self.compute

    def dest_dir(self, server):
        return os.path.join(self.dest_instances, server['id'])

    def migration(self, server):
        """The server's latest migration (cold or live) as the API lists
        it, or None before there is one."""
        migrations = self.api.api_get(
            '/os-migrations?instance_uuid=%s' % server['id']
        ).body['migrations']
        return max(migrations, key=lambda m: m['id']) if migrations \
            else None

    def dest_domains_left(self, timeout=30):
        """test_unprivileged's domains_left, of compute2's libvirtd."""
        deadline = time.monotonic() + timeout
        while True:
            names = [d.name() for d in self.dest_conn.listAllDomains()]
            if not names or time.monotonic() > deadline:
                return names
            time.sleep(0.5)

    def assert_on(self, server, host):
        """The server is on ``host``, its domain runs in that host's
        libvirtd only, and nothing of it is left on the other host."""
        self.assertEqual(host, server['OS-EXT-SRV-ATTR:host'])
        here, there = (self.dest_conn, self.libvirt())
        here_dir, there_dir = self.dest_dir(server), self.instance_dir(
            server)
        if host != DEST:
            here, there = there, here
            here_dir, there_dir = there_dir, here_dir
        self.assertTrue(here.lookupByUUIDString(server['id']).isActive())
        self.assertNotIn(server['id'],
                         [d.UUIDString() for d in there.listAllDomains()])
        self.assertTrue(os.path.isdir(here_dir))
        self.assertFalse(os.path.exists(there_dir))
        self.assertFalse(os.path.exists(there_dir + '_resize'))
        return here_dir

    def test_cold_and_live_migration_as_nova_user(self):
        self.assertEqual((self.nova.pw_uid,) * 2,
                         (os.getuid(), os.geteuid()))
        watcher = self.watch(self.instances_path, self.dest_instances)
        server = self.boot_every_disk(self.small, self.image_id,
                                      host=self.compute_host)
        self.assert_qemu_holds(server)

        # Cold migration, reverted: the disks went to compute2 by scp as
        # nova, the guest booted there, then came back.
        self.api.post_server_action(server['id'], {'migrate': {'host': DEST}})
        server = self.wait_for_status(server, 'VERIFY_RESIZE')
        self.assertEqual(DEST, server['OS-EXT-SRV-ATTR:host'])
        self.assertTrue(self.dest_domain_exists(server))
        self.assertFalse(self.domain_exists(server))
        self.wait_for_console(server, guest_image.BOOT_MARKER_PREFIX)
        self.assert_qemu_holds(server, self.dest_dir(server))
        self.assertTrue(os.path.isdir(self.instance_dir(server) + '_resize'))
        self.api.post_server_action(server['id'], {'revertResize': None})
        server = self.wait_for_status(server, 'ACTIVE')
        self.wait_for_migration(server, ('reverted',))
        self.assert_on(server, self.compute_host)
        self.wait_for_console(server, guest_image.BOOT_MARKER_PREFIX,
                              count=2)
        self.assert_qemu_holds(server)

        # Block live migration to compute2: the same guest runs there (it
        # powers off at the power button), nothing is left here.
        server = self.live_migrate_to_dest(server)
        dest_dir = self.assert_on(server, DEST)
        self.assert_qemu_holds(server, dest_dir)
        self.api.post_server_action(server['id'], {'os-stop': None})
        server = self.wait_for_status(server, 'SHUTOFF')
        self.wait_for_console(server, guest_image.POWEROFF_MARKER_PREFIX)
        self.assert_nova_owns(server, dest_dir)

        # Cold migration back, confirmed: scp from compute2 to compute1,
        # as nova; the stopped guest's config drive (QEMU's user's) is
        # taken back through privsep to be copied.
        self.api.post_server_action(server['id'],
                                    {'migrate': {'host': self.compute_host}})
        server = self.wait_for_status(server, 'VERIFY_RESIZE')
        self.api.post_server_action(server['id'], {'confirmResize': None})
        server = self.wait_for_status(server, 'SHUTOFF')
        self.wait_for_migration(server, ('confirmed',))
        self.assertEqual(self.compute_host, server['OS-EXT-SRV-ATTR:host'])
        self.assertFalse(self.dest_domain_exists(server))
        self.assertFalse(os.path.exists(dest_dir))
        self.assertFalse(os.path.exists(dest_dir + '_resize'))
        self.api.post_server_action(server['id'], {'os-start': None})
        server = self.wait_for_status(server, 'ACTIVE')
        self.assert_on(server, self.compute_host)
        self.wait_for_console(server, guest_image.BOOT_MARKER_PREFIX)
        self.assert_qemu_holds(server)

        self.api.delete_server(server['id'])
        self.wait_until_deleted(server)
        self.assertFalse(os.path.exists(self.instance_dir(server)))
        self.assertFalse(os.path.exists(dest_dir))
        self.assertEqual([], self.domains_left())
        self.assertEqual([], self.dest_domains_left())

        # As with Nova's libvirt driver, the source of a cold migration
        # makes the directory the disks are copied into, and the file
        # telling whether the hosts share their instances path, with
        # Nova's remote filesystem transport (mkdir -p and touch over
        # ssh, by the remote umask): see test_file_modes.
        nova_made = {self.dest_dir(server), self.instance_dir(server)} | {
            path for path in watcher.seen
            if os.path.dirname(path) in (self.instances_path,
                                         self.dest_instances) and
            re.fullmatch('[0-9a-f]{32}\\.tmp', os.path.basename(path))}
        self.assert_private(watcher, 'disk', 'disk.eph0', 'disk.swap',
                            'disk.config', server['id'] + '_resize',
                            allowed=nova_made)

    # -- UEFI ---------------------------------------------------------------

    def nvram(self, host, path):
        """The SHA-256 of the NVRAM file ``path`` as ``host``'s libvirtd
        sees it, None when there is none. The file is libvirtd's (root's,
        in a directory of its own): read through Nova's privsep daemon,
        as an operator would with sudo."""
        try:
            contents, left = nova.privsep.path.last_bytes(
                host.local_path(path), NVRAM_MAX)
        except FileNotFoundError:
            return None
        self.assertEqual(0, left)
        return hashlib.sha256(contents).hexdigest()

    def test_uefi_guest_live_migration_as_nova_user(self):
        """The guest's NVRAM moves with it; the source's, which libvirtd
        made (root's), is removed, by libvirt."""
        flavor = self._create_flavor(name='kvmx.uefi', vcpu=1,
                                     memory_mb=256, disk=1)
        server = self._create_server(
            image_uuid=self.create_bootable_image(
                hw_firmware_type='uefi'), flavor_id=flavor,
            networks='none', host=self.compute_host, expected_state='BUILD')
        server = self.wait_for_status(server, 'ACTIVE',
                                      test_firmware.BOOT_TIMEOUT)
        self.wait_for_console(server, guest_image.BOOT_MARKER_PREFIX,
                              timeout=test_firmware.BOOT_TIMEOUT)
        nvram = etree.fromstring(self.domain(server).XMLDesc(0)).find(
            './os/nvram')
        self.assertTrue(nvram.text.startswith('/var/lib/libvirt/'))
        contents = self.nvram(self.libvirtd, nvram.text)
        with open(nvram.get('template'), 'rb') as f:
            # What OVMF wrote while booting.
            self.assertNotEqual(hashlib.sha256(f.read()).hexdigest(),
                                contents)

        server = self.live_migrate_to_dest(server)
        self.assert_on(server, DEST)
        self.assertEqual(nvram.text, etree.fromstring(
            self.dest_conn.lookupByUUIDString(server['id']).XMLDesc(0)
        ).find('./os/nvram').text)
        self.assertEqual(contents, self.nvram(self.dest, nvram.text))
        self.assertIsNone(self.nvram(self.libvirtd, nvram.text))
        # libvirt's placeholder for the removal is gone too.
        self.assertEqual([], self.domains_left())

        self.api.delete_server(server['id'])
        self.wait_until_deleted(server)
        self.assertEqual([], self.dest_domains_left())
        self.assertIsNone(self.nvram(self.dest, nvram.text))
