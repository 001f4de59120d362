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

"""A UEFI guest's NVRAM on a live migration between two real libvirt
hosts (tests/functional/test_live_migration.py's second libvirtd): as
with Nova's libvirt driver, the domain keeps its firmware files and QEMU
carries the flash's contents with the guest's memory, which the
destination writes to its own NVRAM file."""

from lxml import etree

from tests.functional import guest_image
from tests.functional import test_firmware
from tests.functional import test_live_migration
from tests.functional import unprivileged


class UEFILiveMigrationTest(test_live_migration.TwoHostsTestCase):

    def test_nvram_contents_move_with_the_guest(self):
        server = self._create_server(
            image_uuid=self.create_bootable_image(
                hw_firmware_type='uefi'), flavor_id=self.flavor_id,
            networks='none', host=self.compute_host,
            expected_state='BUILD')
        server = self.wait_for_status(server, 'ACTIVE',
                                      test_firmware.BOOT_TIMEOUT)
        self.wait_for_console(server, guest_image.BOOT_MARKER_PREFIX,
                              timeout=test_firmware.BOOT_TIMEOUT)
        xml = etree.fromstring(self.domain(server).XMLDesc(0))
        nvram = xml.find('./os/nvram')
        loader = xml.find('./os/loader').text
        with open(nvram.get('template'), 'rb') as f:
            template = f.read()
        contents = unprivileged.as_root(test_firmware.nvram_state,
                                        nvram.text)[0]
        # What OVMF wrote while booting.
        self.assertNotEqual(template, contents)

        server = self.live_migrate_to_dest(server)
        dest = etree.fromstring(self.dest_conn.lookupByUUIDString(
            server['id']).XMLDesc(0))
        self.assertEqual((loader, nvram.text), (
            dest.find('./os/loader').text, dest.find('./os/nvram').text))
        self.assertEqual(contents, unprivileged.as_root(
            test_firmware.nvram_state, self.dest.local_path(nvram.text))[0])
        self.assertIsNone(unprivileged.as_root(test_firmware.nvram_state,
                                               nvram.text))

        self.api.delete_server(server['id'])
        self.wait_until_deleted(server)
        self.assertIsNone(unprivileged.as_root(
            test_firmware.nvram_state, self.dest.local_path(nvram.text)))
