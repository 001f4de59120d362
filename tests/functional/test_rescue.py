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

"""Rescue and unrescue of a real pinned guest through Nova's API."""

import json
import os
import subprocess

from lxml import etree

from tests.functional import base
from tests.functional import guest_image
from tests.functional import unprivileged


class RescueTest(base.RealLibvirtTestCase):

    PINNED_HOST = base.ONE_PINNED_CPU

    def disks(self, server):
        """{target dev: source file} of the domain libvirt holds."""
        xml = etree.fromstring(self.domain(server).XMLDesc(0))
        return {d.find('target').get('dev'): d.find('source').get('file')
                for d in xml.findall("devices/disk[@device='disk']")}

    def test_rescue_then_unrescue(self):
        flavor_id = self.create_pinned_flavor()
        server = self._create_server(
            image_uuid=self.create_bootable_image(), flavor_id=flavor_id,
            networks='none')
        server = self.wait_for_status(server, 'ACTIVE')
        marker = guest_image.BOOT_MARKER_PREFIX
        self.wait_for_console(server, marker)
        inst_dir = self.instance_dir(server)
        pins = etree.fromstring(self.domain(server).XMLDesc(0)).find(
            'cputune').findall('vcpupin')

        self.api.post_server_action(server['id'], {'rescue': {}})
        server = self.wait_for_status(server, 'RESCUE')
        self.wait_for_console(server, marker, count=2)
        self.assertEqual({'vda': os.path.join(inst_dir, 'disk.rescue'),
                          'vdb': os.path.join(inst_dir, 'disk')},
                         self.disks(server))
        # The rescue guest keeps the claim: same pins.
        rescue_pins = etree.fromstring(self.domain(server).XMLDesc(0)).find(
            'cputune').findall('vcpupin')
        self.assertEqual([dict(p.attrib) for p in pins],
                         [dict(p.attrib) for p in rescue_pins])

        self.api.post_server_action(server['id'], {'unrescue': None})
        server = self.wait_for_status(server, 'ACTIVE')
        self.wait_for_console(server, marker, count=3)
        self.assertEqual({'vda': os.path.join(inst_dir, 'disk')},
                         self.disks(server))
        self.assertFalse(os.path.exists(os.path.join(inst_dir,
                                                     'disk.rescue')))

    def config_drive_metadata(self, path):
        """The OpenStack metadata in the config drive at ``path`` (read
        as root: QEMU's while the guest runs)."""
        return json.loads(unprivileged.as_root(
            subprocess.run, ['isoinfo', '-i', path, '-R', '-x',
                             '/openstack/latest/meta_data.json'],
            check=True, capture_output=True, timeout=60).stdout)

    def config_drive(self, server):
        xml = etree.fromstring(self.domain(server).XMLDesc(0))
        [path] = xml.xpath("devices/disk[target/@dev='sdz']/source/@file")
        return path

    def test_rescue_password(self):
        """As with Nova's libvirt driver, the rescue guest gets a new
        config drive whose admin password is the rescue password."""
        server = self._build_server(
            image_uuid=self.create_bootable_image(),
            flavor_id=self.create_pinned_flavor(), networks='none')
        server['config_drive'] = True
        server = self.wait_for_status(self.api.post_server(
            {'server': server}), 'ACTIVE')
        inst_dir = self.instance_dir(server)
        own = os.path.join(inst_dir, 'disk.config')
        self.assertEqual(own, self.config_drive(server))
        boot_password = self.config_drive_metadata(own).get('admin_pass')

        password = 'rescue-Pa55-%s' % server['id'][:8]
        self.api.post_server_action(server['id'],
                                    {'rescue': {'adminPass': password}})
        server = self.wait_for_status(server, 'RESCUE')
        rescue_drive = os.path.join(inst_dir, 'disk.config.rescue')
        self.assertEqual(rescue_drive, self.config_drive(server))
        metadata = self.config_drive_metadata(rescue_drive)
        self.assertEqual(password, metadata['admin_pass'])
        self.assertEqual(server['id'], metadata['uuid'])
        # The instance's own config drive is left as it was.
        self.assertEqual(boot_password,
                         self.config_drive_metadata(own).get('admin_pass'))

        self.api.post_server_action(server['id'], {'unrescue': None})
        server = self.wait_for_status(server, 'ACTIVE')
        self.assertEqual(own, self.config_drive(server))
        self.assertFalse(os.path.exists(rescue_drive))
