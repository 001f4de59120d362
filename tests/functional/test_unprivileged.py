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

"""nova-compute as the unprivileged ``nova`` user, on a real libvirtd.

The compute service runs with the ``nova`` user's effective uid and gid
and the groups ``libvirt`` and ``kvm`` (unprivileged.AsNovaUser); Nova's
privsep context is a daemon started from ``privsep-helper`` before, as
in a deployment. The libvirtd is one of the test's own, which lets the
``libvirt`` group manage it through its socket, as Debian's polkit rule
does (this machine runs no polkit, and the main libvirtd admits the
group only if it started after .ci/setup configured it). A guest with
every kind of disk is spawned, rebooted, snapshotted live and cold,
rescued, resized and deleted; what a user or an operator would check is
asserted: the guest booted, its console log is read, the snapshots are
images, the instance's files are the ``nova`` user's with private modes
while the guest is off and QEMU's (libvirt's dynamic ownership) while it
runs, and nothing is left behind.
"""

import grp
import os
import pwd
import stat
import time

import libvirt
from nova import objects
from oslo_serialization import jsonutils
from oslo_utils import units

from tests.functional import base
from tests.functional import guest_image
from tests.functional import second_libvirtd
from tests.functional import test_file_modes
from tests.functional import unprivileged

import nova.privsep

# QEMU's user on Debian (qemu.conf's default there).
QEMU_USER = 'libvirt-qemu'
# The instance's own files, made by the driver; console.log is virtlogd's.
INSTANCE_FILES = ('disk', 'disk.eph0', 'disk.swap', 'disk.config',
                  'kernel', 'ramdisk')
DISKS = ('disk', 'disk.eph0', 'disk.swap', 'disk.config')


class NovaUserTestCase(test_file_modes.FileModesTestMixin,
                       base.RealLibvirtTestCase):
    """nova-compute as the ``nova`` user on a libvirtd of the test's own
    (``libvirtd``); ``prepare`` adds what else is set up as root."""

    START_COMPUTE = False
    # SecondLibvirtd's: an index of its own (a second host beside it),
    # an sshd.
    LIBVIRTD_INDEX = None
    LIBVIRTD_SSH = False
    _conn = None

    def setUp(self):
        super().setUp()
        workdir = os.path.dirname(self.instances_path)
        # Cleanups run last first: leftovers are looked for on the main
        # libvirtd once this one has stopped with its guests.
        self.addCleanup(setattr, self, 'libvirtd', None)
        self.libvirtd = self.useFixture(second_libvirtd.SecondLibvirtd(
            workdir, hostname='kvmx-' + self.domain_prefix.strip('-'),
            group='libvirt', index=self.LIBVIRTD_INDEX,
            ssh=self.LIBVIRTD_SSH, binds=self.libvirtd_binds(),
            ssh_users=(unprivileged.NOVA_USER,) if self.LIBVIRTD_SSH
            else ()))
        self.flags(connection_uri=self.libvirtd.uri, group='kvmx')
        self.flags(lock_path=unprivileged.private_dir(
            workdir, 'locks', self.nova), group='oslo_concurrency')
        # The test's images are made as root, before the drop: the
        # harness, not nova-compute.
        self.image_id = self.create_bootable_image()
        self.small = self._create_flavor(
            name='kvmx.disks', vcpu=1, memory_mb=256, disk=1, ephemeral=1,
            swap=64)
        self.big = self._create_flavor(
            name='kvmx.disks.big', vcpu=1, memory_mb=256, disk=2,
            ephemeral=1, swap=64)
        self.prepare()
        # The process becomes nova here (base.RealLibvirtTestCase).
        self.start_compute()

    def libvirtd_binds(self):
        """SecondLibvirtd's ``binds`` of the test's libvirtd."""
        return ()

    def prepare(self):
        """More of the test's set-up, as root, before the drop."""

    def libvirt(self):
        """The test's connection to the libvirtd nova-compute uses (the
        base's own connection to the main libvirtd before it starts)."""
        if getattr(self, 'libvirtd', None) is None:
            return super().libvirt()
        if self._conn is None:
            self._conn = libvirt.open(self.libvirtd.uri)
            self.addCleanup(self._conn.close)
        return self._conn

    def snapshot(self, server):
        image_id = self.api.post_server_action(
            server['id'], {'createImage': {'name': 'snap'}})['image_id']
        self.wait_for_task_done(server)
        image = self.glance.show(self.ctxt, image_id)
        self.assertEqual('active', image['status'])
        self.assertGreater(image['size'], 0)

    def owners(self, server, names, directory=None):
        """{file name: (owner, group, mode)} of the instance's files (in
        ``directory``, by default its directory here)."""
        directory = directory or self.instance_dir(server)
        found = {}
        for name in names:
            info = os.stat(os.path.join(directory, name))
            found[name] = (pwd.getpwuid(info.st_uid).pw_name,
                           grp.getgrgid(info.st_gid).gr_name,
                           '%04o' % stat.S_IMODE(info.st_mode))
        return found

    def assert_nova_owns(self, server, directory=None):
        """The guest is off: every file of its own is the nova user's
        and private, its directory traversable only (QEMU's user passes
        through it while a guest runs). libvirt never gives back a
        read-only disk (the config drive): it stays QEMU's user's, as
        private, until a move takes it back."""
        directory = directory or self.instance_dir(server)
        expected = {name: (unprivileged.NOVA_USER, self.nova_group, '0600')
                    for name in INSTANCE_FILES}
        expected['disk.config'] = (QEMU_USER, QEMU_USER, '0600')
        self.assertEqual(expected,
                         self.owners(server, INSTANCE_FILES, directory))
        info = os.stat(directory)
        self.assertEqual((self.nova.pw_uid, 0o711),
                         (info.st_uid, stat.S_IMODE(info.st_mode)))

    def assert_qemu_holds(self, server, directory=None):
        """The guest runs: libvirt handed its disks to QEMU's user; they
        are private, in the nova user's directory, traversable only."""
        directory = directory or self.instance_dir(server)
        self.assertEqual(
            {name: (QEMU_USER, '0600') for name in DISKS},
            {name: (owner, mode) for name, (owner, _group, mode)
             in self.owners(server, DISKS, directory).items()})
        info = os.stat(directory)
        self.assertEqual((self.nova.pw_uid, 0o711),
                         (info.st_uid, stat.S_IMODE(info.st_mode)))

    @property
    def nova_group(self):
        return grp.getgrgid(self.nova.pw_gid).gr_name

    def domains_left(self, timeout=30):
        """The names of the domains left in the test's libvirtd once they
        are all gone or ``timeout`` seconds have passed (libvirt may
        still be tearing the last one down when Nova reports it
        deleted)."""
        deadline = time.monotonic() + timeout
        while True:
            names = [d.name() for d in self.libvirt().listAllDomains()]
            if not names or time.monotonic() > deadline:
                return names
            time.sleep(0.5)

    def assert_disk_info(self, server):
        """What a live migration's checks read of a running guest's disks
        (QEMU's user's now), from libvirt: the files cannot be read."""
        instance = objects.Instance.get_by_uuid(self.ctxt, server['id'])
        disks = {os.path.basename(d['path']): d for d in jsonutils.loads(
            self.compute.manager.driver.get_instance_disk_info(instance))}
        self.assertEqual(set(DISKS), set(disks))
        root = disks['disk']
        self.assertEqual(('qcow2', units.Gi),
                         (root['type'], root['virt_disk_size']))
        self.assertEqual(os.path.join(self.instances_path, '_base'),
                         os.path.dirname(root['backing_file']))
        self.assertEqual('raw', disks['disk.config']['type'])
        self.assertTrue(all(d['disk_size'] > 0 for d in disks.values()))


class UnprivilegedComputeTest(NovaUserTestCase):

    def setUp(self):
        super().setUp()
        self.flags(allow_resize_to_same_host=True)

    def test_lifecycle_as_nova_user(self):
        self.assertEqual((self.nova.pw_uid, self.nova.pw_gid),
                         (os.geteuid(), os.getegid()))
        watcher = self.watch(self.instances_path)
        server = self.boot_every_disk(self.small, self.image_id)
        self.assert_qemu_holds(server)
        self.assert_disk_info(server)
        # The console log is virtlogd's (root's, 0600): nova-compute
        # reads it through Nova's privsep.
        self.assertIn(guest_image.BOOT_MARKER_PREFIX,
                      self.console_output(server))
        channel = nova.privsep.sys_admin_pctxt.channel
        self.assertTrue(channel is not None and channel.running)

        self.api.post_server_action(server['id'],
                                    {'reboot': {'type': 'HARD'}})
        server = self.wait_for_status(server, 'ACTIVE')
        self.wait_for_console(server, guest_image.BOOT_MARKER_PREFIX,
                              count=2)

        self.snapshot(server)           # live
        self.api.post_server_action(server['id'], {'os-stop': None})
        server = self.wait_for_status(server, 'SHUTOFF')
        self.assert_nova_owns(server)
        self.snapshot(server)           # cold
        self.api.post_server_action(server['id'], {'os-start': None})
        server = self.wait_for_status(server, 'ACTIVE')

        self.api.post_server_action(server['id'],
                                    {'rescue': {'adminPass': 'rescue'}})
        server = self.wait_for_status(server, 'RESCUE')
        self.api.post_server_action(server['id'], {'unrescue': None})
        server = self.wait_for_status(server, 'ACTIVE')

        self.api.post_server_action(server['id'],
                                    {'resize': {'flavorRef': self.big}})
        server = self.wait_for_status(server, 'VERIFY_RESIZE')
        self.api.post_server_action(server['id'], {'confirmResize': None})
        server = self.wait_for_status(server, 'ACTIVE')
        self.assert_qemu_holds(server)
        self.api.post_server_action(server['id'], {'os-stop': None})
        server = self.wait_for_status(server, 'SHUTOFF')
        self.assert_nova_owns(server)

        self.api.delete_server(server['id'])
        self.wait_until_deleted(server)
        self.assertFalse(os.path.exists(self.instance_dir(server)))
        self.assertEqual([], self.domains_left())
        self.assert_private(
            watcher, 'disk', 'disk.eph0', 'disk.swap', 'disk.config',
            'kernel', 'ramdisk', 'console.log', 'delta', 'snapshot',
            'disk.rescue', 'disk.config.rescue', server['id'] + '_resize')
