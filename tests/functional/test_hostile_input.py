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

"""Tenants' strings and tenants' data on a real compute node.

Every string a tenant (or an image owner, or a port's binding) controls
reaches the domain only through the XML library, exactly and escaped, or
is refused with a clear error; none of them chooses a file (instance
directories are named by uuid). A guest's disks, config drive and console
log are readable by root and, while it runs, QEMU only: not by other
local users.
"""

import os
import stat
import subprocess

from lxml import etree

from tests.functional import base


def readable_by_nobody(path):
    """Whether an unprivileged local user can read ``path``."""
    return subprocess.run(
        ['runuser', '-u', 'nobody', '--', 'head', '-c', '1', path],
        capture_output=True, timeout=30).returncode == 0


class PrivateFilesTest(base.RealLibvirtTestCase):

    def test_files_of_a_running_guest_are_private(self):
        flavor_id = self._create_flavor(name='kvmx.disks', vcpu=1,
                                        memory_mb=256, disk=1, ephemeral=1,
                                        swap=64)
        server = self._build_server(
            image_uuid=self.create_bootable_image(), flavor_id=flavor_id,
            networks='none')
        server['config_drive'] = True
        server = self.wait_for_status(self.api.post_server(
            {'server': server}), 'ACTIVE')

        inst_dir = self.instance_dir(server)
        # Traversable (QEMU runs as another user), not listable.
        self.assertEqual(0o711, stat.S_IMODE(os.stat(inst_dir).st_mode))
        self.assertFalse(readable_by_nobody(inst_dir + '/.'))
        cache = os.path.join(self.instances_path, '_base')
        paths = [os.path.join(inst_dir, name) for name in (
            'disk', 'kernel', 'ramdisk', 'disk.eph0', 'disk.swap',
            'disk.config', 'console.log')] + [
            os.path.join(cache, name) for name in os.listdir(cache)]
        for path in paths:
            mode = stat.S_IMODE(os.stat(path).st_mode)
            self.assertEqual(0, mode & 0o077, '%s is %o' % (path, mode))
            self.assertFalse(readable_by_nobody(path), path)

        # QEMU reads them all: libvirt hands them to its user.
        xml = etree.fromstring(self.domain(server).XMLDesc(0))
        self.assertEqual(
            {'disk', 'disk.eph0', 'disk.swap', 'disk.config'},
            {os.path.basename(d.get('file'))
             for d in xml.findall('./devices/disk/source')})
        self.assertTrue(self.domain(server).isActive())
        self._delete_server(server)
