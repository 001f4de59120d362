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

"""UEFI guests on the real libvirtd: OVMF (Debian's ``ovmf``, chosen by
libvirt from its firmware descriptors) boots the test guest's kernel
through fw_cfg; the NVRAM libvirt makes for it stays the same file over a
hard reboot and goes with the server."""

import os

from lxml import etree
import os_traits as ot

from tests.functional import base
from tests.functional import guest_image
from tests.functional import unprivileged

# Set on the NVRAM file by the test: a file libvirt made afresh from the
# template would not have it.
MARK = 'user.kvmx-test-nvram'
# OVMF under TCG takes longer than SeaBIOS to reach the kernel.
BOOT_TIMEOUT = base.STATE_TIMEOUT * 2


def nvram_state(path):
    """(contents, the test's mark or None, inode) of the NVRAM file at
    ``path``, None when there is none. The file is libvirtd's, in its
    own directory: the test reads it as root (unprivileged.as_root)."""
    if not os.path.isfile(path):
        return None
    with open(path, 'rb') as f:
        contents = f.read()
    try:
        mark = os.getxattr(path, MARK)
    except OSError:
        mark = None
    return contents, mark, os.stat(path).st_ino


def mark_nvram(path):
    os.setxattr(path, MARK, b'1')


class UEFIGuestTest(base.RealLibvirtTestCase):

    def setUp(self):
        super().setUp()
        self.flags(image_metadata_prefilter=True, group='scheduler')
        guest = guest_image.get_guest_artifacts()
        self.kernel_id = self._upload(guest.kernel, 'aki', 'kernel')
        self.ramdisk_id = self._upload(guest.initramfs, 'ari', 'initrd')
        self.cmdline = guest.cmdline
        self.root_disk = guest.root_disk

    def image(self, **properties):
        return self._upload(
            self.root_disk, 'qcow2', 'kvmx-uefi', kernel_id=self.kernel_id,
            ramdisk_id=self.ramdisk_id, os_command_line=self.cmdline,
            hw_firmware_type='uefi', **properties)

    def boot(self, image_id, extra_specs=None):
        flavor_id = self.create_flavor(name='kvmx.uefi',
                                       extra_specs=extra_specs)
        server = self._create_server(
            image_uuid=image_id, flavor_id=flavor_id, networks='none',
            expected_state='BUILD')
        server = self.wait_for_status(server, 'ACTIVE', BOOT_TIMEOUT)
        self.wait_for_console(server, guest_image.BOOT_MARKER_PREFIX,
                              timeout=BOOT_TIMEOUT)
        return server

    def nvram(self, path):
        """nvram_state(path), read as root."""
        return unprivileged.as_root(nvram_state, path)

    def firmware(self, server):
        """(loader element, nvram element, smm present) of the running
        domain, as libvirt holds it."""
        xml = etree.fromstring(self.domain(server).XMLDesc(0))
        return (xml.find('./os/loader'), xml.find('./os/nvram'),
                xml.find("./features/smm[@state='on']") is not None)

    def test_boots_keeps_nvram_over_hard_reboot_removes_it_on_delete(self):
        server = self.boot(self.image())
        loader, nvram, _ = self.firmware(server)
        self.assertTrue(loader.text.startswith('/usr/share/OVMF/'),
                        loader.text)
        self.assertEqual('pflash', loader.get('type'))
        self.assertNotEqual('yes', loader.get('secure'))
        path = nvram.text
        state = self.nvram(path)
        self.assertIsNotNone(state, path)
        with open(nvram.get('template'), 'rb') as f:
            # OVMF wrote its variables.
            self.assertNotEqual(f.read(), state[0])
        unprivileged.as_root(mark_nvram, path)
        inode = state[2]

        self.api.post_server_action(server['id'],
                                    {'reboot': {'type': 'HARD'}})
        server = self.wait_for_status(server, 'ACTIVE', BOOT_TIMEOUT)
        self.wait_for_console(server, guest_image.BOOT_MARKER_PREFIX,
                              count=2, timeout=BOOT_TIMEOUT)
        loader_after, nvram_after, _ = self.firmware(server)
        self.assertEqual((loader.text, path),
                         (loader_after.text, nvram_after.text))
        # The same file, not one made again from the template.
        self.assertEqual((b'1', inode), self.nvram(path)[1:])

        # Stopped and started (a hard reboot in the driver) too.
        self.api.post_server_action(server['id'], {'os-stop': None})
        server = self.wait_for_status(server, 'SHUTOFF')
        self.assertEqual(b'1', self.nvram(path)[1])
        self.api.post_server_action(server['id'], {'os-start': None})
        server = self.wait_for_status(server, 'ACTIVE', BOOT_TIMEOUT)
        self.wait_for_console(server, guest_image.BOOT_MARKER_PREFIX,
                              count=3, timeout=BOOT_TIMEOUT)
        self.assertEqual(b'1', self.nvram(path)[1])

        self.api.delete_server(server['id'])
        self.wait_until_deleted(server)
        self.assertFalse(self.domain_exists(server))
        self.assertIsNone(self.nvram(path))

    def test_secure_boot_required(self):
        traits = self.traits()
        self.assertIn(ot.COMPUTE_SECURITY_UEFI_SECURE_BOOT, traits)
        server = self.boot(self.image(),
                           extra_specs={'os:secure_boot': 'required'})
        loader, nvram, smm = self.firmware(server)
        self.assertEqual('yes', loader.get('secure'))
        self.assertTrue(smm)
        path = nvram.text
        self.assertIsNotNone(self.nvram(path), path)
        unprivileged.as_root(mark_nvram, path)

        # Defined again with the same Secure Boot firmware, SMM and NVRAM.
        self.api.post_server_action(server['id'],
                                    {'reboot': {'type': 'HARD'}})
        server = self.wait_for_status(server, 'ACTIVE', BOOT_TIMEOUT)
        self.wait_for_console(server, guest_image.BOOT_MARKER_PREFIX,
                              count=2, timeout=BOOT_TIMEOUT)
        loader_after, nvram_after, smm = self.firmware(server)
        self.assertEqual((loader.text, 'yes', path), (
            loader_after.text, loader_after.get('secure'), nvram_after.text))
        self.assertTrue(smm)
        self.assertEqual(b'1', self.nvram(path)[1])
        self.api.delete_server(server['id'])
        self.wait_until_deleted(server)
        self.assertIsNone(self.nvram(path))

    def test_stateless_firmware_has_no_host_here(self):
        """Debian 12's ovmf has no UEFI firmware without NVRAM: the trait
        is not reported, and Nova's scheduler finds no host."""
        self.assertNotIn(ot.COMPUTE_SECURITY_STATELESS_FIRMWARE,
                         self.traits())
        message = self.boot_and_expect_error(
            self.image(hw_firmware_stateless=True),
            self.create_flavor(name='kvmx.uefi'))
        self.assertIn('No valid host', message)

    def test_secure_boot_on_the_pc_machine_is_refused(self):
        image_id = self.image(os_secure_boot='required',
                              hw_machine_type='pc')
        flavor_id = self.create_flavor(name='kvmx.uefi')
        message = self.boot_and_expect_error(image_id, flavor_id)
        self.assertIn('Secure Boot is not supported by host', message)
