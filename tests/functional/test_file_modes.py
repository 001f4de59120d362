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

"""What another local user could read of a guest's data, at any moment of
its life on a real compute node.

The instances directories are watched (every few milliseconds) while a
guest is spawned, snapshotted live and cold, rescued, resized, and moved
by cold and live migration; every file and directory seen is listed with
its modes (the ``file-modes`` detail of each test). A file another user
can reach (every directory above it traversable by others) must be 0600
from the moment it appears, as it may hold a copy of the guest's disk; a
directory is never listable nor writable by others (0700, or 0711 where
QEMU's user must pass).
"""

import collections
import grp
import os
import re
import stat
import threading
import time

import fixtures
from testtools import content

from nova_kvmx import storage
from tests.functional import base
from tests.functional import guest_image
from tests.functional import test_live_migration

DEST = test_live_migration.DEST
# Nova's qemu-img convert first checks that the instances path takes
# O_DIRECT with a file of its own (nova.privsep.utils.supports_direct_io):
# 4 KiB of "x", made by the umask and removed at once.
NOVA_DIRECTIO_PROBE = '.directio.test.'


class ModeWatcher(fixtures.Fixture):
    """Every file and directory under ``roots`` as polled every POLL
    seconds: {path: {(kind, mode, reachable)}}, ``reachable`` when every
    directory from the root down is traversable by others."""

    POLL = 0.005

    def __init__(self, *roots):
        super().__init__()
        self.roots = roots

    def _setUp(self):
        self.seen = collections.defaultdict(set)
        self.groups = collections.defaultdict(set)
        self._stop = threading.Event()
        thread = threading.Thread(target=self._run, daemon=True)
        thread.start()
        self.addCleanup(thread.join)
        self.addCleanup(self._stop.set)

    def _run(self):
        while not self._stop.is_set():
            for root in self.roots:
                self._look(root, True)
            self._stop.wait(self.POLL)

    def _look(self, directory, reachable):
        try:
            entries = list(os.scandir(directory))
        except OSError:
            return      # removed meanwhile
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            mode = stat.S_IMODE(info.st_mode)
            if stat.S_ISDIR(info.st_mode):
                self.seen[entry.path].add(('dir', mode, reachable))
                self._look(entry.path, reachable and bool(mode & 0o001))
            elif stat.S_ISREG(info.st_mode):
                self.seen[entry.path].add(('file', mode, reachable))
                if mode & 0o070:
                    self.groups[entry.path].add(info.st_gid)

    def listing(self):
        lines = []
        for path in sorted(self.seen):
            modes = sorted(self.seen[path], key=lambda look: look[1])
            lines.append('%s %s %s' % (modes[0][0], ' '.join(
                '%04o%s' % (mode, '' if reachable else '(unreachable)')
                for _kind, mode, reachable in modes), path))
        return '\n'.join(lines)

    def exposed(self, allowed=()):
        """What others could read (a file not 0600, a directory listable
        or writable by group or others), where they could reach it, but
        for the paths ``allowed`` and Nova's O_DIRECT probes."""
        found = []
        for path, looks in self.seen.items():
            if (path in allowed or os.path.basename(path).startswith(
                    NOVA_DIRECTIO_PROBE)):
                continue
            for kind, mode, reachable in looks:
                loose = mode & (0o077 if kind == 'file' else 0o066)
                if kind == 'file' and self.shared_base(path, mode):
                    continue
                if reachable and loose:
                    found.append('%s %04o %s' % (kind, mode, path))
        return sorted(found)

    def shared_base(self, path, mode):
        """A base of the image cache, readable by QEMU through the
        cache's group only (storage.BASE_MODE, [kvmx] image_cache_group)
        from the moment it appears under its name."""
        return (os.path.basename(os.path.dirname(path)) == '_base' and
                mode == storage.BASE_MODE and
                self.groups[path] == {grp.getgrnam('kvm').gr_gid})

    def names(self):
        return {os.path.basename(path) for path in self.seen}


class FileModesTestMixin(object):

    def watch(self, *roots):
        watcher = self.useFixture(ModeWatcher(*roots))
        self.addCleanup(lambda: self.addDetail(
            'file-modes', content.text_content(watcher.listing())))
        return watcher

    def assert_private(self, watcher, *names, allowed=()):
        """Nothing was exposed (but the paths ``allowed``), and the files
        ``names`` were seen (the watch did see what it is about)."""
        self.assertEqual([], watcher.exposed(allowed), watcher.listing())
        self.assertEqual(set(), set(names) - watcher.names(),
                         watcher.listing())

    def boot_every_disk(self, flavor_id, image_id, host=None):
        server = self._build_server(image_uuid=image_id, flavor_id=flavor_id,
                                    networks='none', host=host)
        server['config_drive'] = True
        server = self.wait_for_status(self.api.post_server(
            {'server': server}), 'ACTIVE')
        self.wait_for_console(server, guest_image.BOOT_MARKER_PREFIX)
        return server


class OneHostFileModesTest(FileModesTestMixin, base.RealLibvirtTestCase):

    def setUp(self):
        super().setUp()
        self.flags(allow_resize_to_same_host=True)

    def snapshot(self, server):
        image_id = self.api.post_server_action(
            server['id'], {'createImage': {'name': 'snap'}})['image_id']
        deadline = time.monotonic() + base.STATE_TIMEOUT
        while self.api.get_server(server['id'])['OS-EXT-STS:task_state']:
            self.assertLess(time.monotonic(), deadline, 'snapshot too long')
            time.sleep(0.5)
        self.assertEqual('active',
                         self.glance.show(self.ctxt, image_id)['status'])

    def test_spawn_snapshots_rescue_resize(self):
        watcher = self.watch(self.instances_path)
        image_id = self.create_bootable_image()
        small = self._create_flavor(name='kvmx.disks', vcpu=1,
                                    memory_mb=256, disk=1, ephemeral=1,
                                    swap=64)
        big = self._create_flavor(name='kvmx.disks.big', vcpu=1,
                                  memory_mb=256, disk=2, ephemeral=1,
                                  swap=64)
        server = self.boot_every_disk(small, image_id)

        # Live, then cold.
        self.snapshot(server)
        self.api.post_server_action(server['id'], {'os-stop': None})
        server = self.wait_for_status(server, 'SHUTOFF')
        self.snapshot(server)
        self.api.post_server_action(server['id'], {'os-start': None})
        server = self.wait_for_status(server, 'ACTIVE')

        self.api.post_server_action(server['id'],
                                    {'rescue': {'adminPass': 'rescue'}})
        server = self.wait_for_status(server, 'RESCUE')
        self.api.post_server_action(server['id'], {'unrescue': None})
        server = self.wait_for_status(server, 'ACTIVE')

        self.api.post_server_action(server['id'],
                                    {'resize': {'flavorRef': big}})
        server = self.wait_for_status(server, 'VERIFY_RESIZE')
        self.api.post_server_action(server['id'], {'confirmResize': None})
        server = self.wait_for_status(server, 'ACTIVE')

        self.assert_private(
            watcher, 'disk', 'disk.eph0', 'disk.swap', 'disk.config',
            'kernel', 'ramdisk', 'console.log', 'delta', 'snapshot',
            'disk.rescue', 'disk.config.rescue', server['id'] + '_resize')


class TwoHostsFileModesTest(FileModesTestMixin,
                            test_live_migration.TwoHostsTestCase):

    # Disks copied by scp to compute2, as between two machines.
    DEST_SSH = True

    def test_cold_and_live_migration(self):
        watcher = self.watch(self.instances_path, self.dest_instances)
        flavor_id = self._create_flavor(
            name='kvmx.pinned.disks', vcpu=1, memory_mb=256, disk=1,
            ephemeral=1, swap=64, extra_spec={'hw:cpu_policy': 'dedicated'})
        cold = self.boot_every_disk(flavor_id, self.image_id,
                                    host=self.compute_host)
        self.api.post_server_action(cold['id'], {'migrate': {'host': DEST}})
        cold = self.wait_for_status(cold, 'VERIFY_RESIZE')
        self.api.post_server_action(cold['id'], {'confirmResize': None})
        self.wait_for_status(cold, 'ACTIVE')

        live = self.boot_every_disk(flavor_id, self.image_id,
                                    host=self.compute_host)
        self.live_migrate(live)
        self.assertEqual('completed', self.wait_for_migration(
            live, ('completed', 'error', 'failed'))['status'])

        # As with Nova's libvirt driver, the source makes the directory
        # the disks are copied into, and the file telling whether the
        # hosts share their instances path, with Nova's remote filesystem
        # transport (mkdir -p and touch over ssh, by the remote umask).
        # The probe is empty; the directory is listable until the
        # destination adopts the copies, which are 0600 all along.
        nova_made = {os.path.join(self.dest_instances, cold['id'])} | {
            path for path in watcher.seen
            if os.path.dirname(path) == self.dest_instances and
            re.fullmatch('[0-9a-f]{32}\\.tmp', os.path.basename(path))}
        self.assert_private(watcher, 'disk', 'disk.eph0', 'disk.swap',
                            'disk.config', cold['id'] + '_resize',
                            allowed=nova_made)
        for server in (cold, live):
            self.assertTrue(os.path.isdir(os.path.join(self.dest_instances,
                                                       server['id'])))
