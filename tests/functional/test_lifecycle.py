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

"""A real guest's whole lifecycle through Nova's API on our driver."""

import os
import subprocess

import libvirt
from lxml import etree

from tests.functional import base
from tests.functional import guest_image


class ServerLifecycleTest(base.RealLibvirtTestCase):

    def test_boot_and_lifecycle(self):
        marker = guest_image.BOOT_MARKER_PREFIX
        image_id = self.create_bootable_image()
        flavor_id = self.create_flavor(vcpus=1, ram=256, disk=1)
        server = self._create_server(
            name='lifecycle <guest>', image_uuid=image_id,
            flavor_id=flavor_id, networks='none', expected_state='BUILD')
        server = self.wait_for_status(server, 'ACTIVE')
        self.assertEqual(self.compute_host, server['OS-EXT-SRV-ATTR:host'])

        # The guest really booted: its init printed the marker on the
        # serial console, and the API shows it.
        self.wait_for_console(server, marker)

        # libvirt holds the domain Nova asked for.
        dom = self.domain(server)
        self.assertTrue(dom.isActive())
        xml = etree.fromstring(dom.XMLDesc(0))
        self.assertEqual('qemu', xml.get('type'))
        self.assertEqual(server['OS-EXT-SRV-ATTR:instance_name'],
                         xml.findtext('name'))
        self.assertEqual(str(256 * 1024), xml.findtext('memory'))
        self.assertEqual(
            'lifecycle <guest>',
            xml.findtext('.//{http://openstack.org/xmlns/libvirt/nova/1.1}'
                         'name'))
        disk = xml.find("./devices/disk[@device='disk']/source")
        self.assertEqual(
            os.path.join(self.instance_dir(server), 'disk'), disk.get('file'))
        self.assertEqual(
            os.path.join(self.instance_dir(server), 'kernel'),
            xml.findtext('./os/kernel'))

        # The VNC console points at the port libvirt gave the guest.
        vnc = self.remote_console(server, 'vnc', 'novnc')
        self.assertEqual('novnc', vnc['type'])
        graphics = xml.find("./devices/graphics[@type='vnc']")
        self.assertGreaterEqual(int(graphics.get('port')), 5900)

        # Stop: the guest gets the ACPI button and powers off by itself.
        self.api.post_server_action(server['id'], {'os-stop': None})
        server = self.wait_for_status(server, 'SHUTOFF')
        self.assertFalse(dom.isActive())
        self.wait_for_console(server, guest_image.POWEROFF_MARKER_PREFIX)

        self.api.post_server_action(server['id'], {'os-start': None})
        server = self.wait_for_status(server, 'ACTIVE')
        self.wait_for_console(server, marker, count=2)

        # Soft reboot shuts the guest down cleanly and boots it again.
        self.api.post_server_action(server['id'],
                                    {'reboot': {'type': 'SOFT'}})
        server = self.wait_for_status(server, 'ACTIVE')
        self.wait_for_console(server, marker, count=3)

        self.api.post_server_action(server['id'],
                                    {'reboot': {'type': 'HARD'}})
        server = self.wait_for_status(server, 'ACTIVE')
        self.wait_for_console(server, marker, count=4)

        self.api.post_server_action(server['id'], {'pause': None})
        server = self.wait_for_status(server, 'PAUSED')
        self.assertEqual('paused', self._libvirt_state(server))
        self.api.post_server_action(server['id'], {'unpause': None})
        server = self.wait_for_status(server, 'ACTIVE')
        self.assertEqual('running', self._libvirt_state(server))

        # Suspend is a managed save: memory on disk, no QEMU process; resume
        # restores it without a new boot.
        self.api.post_server_action(server['id'], {'suspend': None})
        server = self.wait_for_status(server, 'SUSPENDED')
        self.assertFalse(self.domain(server).isActive())
        self.assertTrue(self.domain(server).hasManagedSaveImage(0))
        self.api.post_server_action(server['id'], {'resume': None})
        server = self.wait_for_status(server, 'ACTIVE')
        self.assertTrue(self.domain(server).isActive())
        output = self.console_output(server)
        self.assertEqual(4, output.count(marker))

        # Delete leaves nothing behind.
        self.api.delete_server(server['id'])
        self.wait_until_deleted(server)
        self.assertFalse(self.domain_exists(server))
        self.assertFalse(os.path.exists(self.instance_dir(server)))

    def _libvirt_state(self, server):
        state, _reason = self.domain(server).state()
        return {libvirt.VIR_DOMAIN_RUNNING: 'running',
                libvirt.VIR_DOMAIN_PAUSED: 'paused',
                libvirt.VIR_DOMAIN_SHUTOFF: 'shutoff'}.get(state, str(state))


class LifecycleEventTest(base.RealLibvirtTestCase):
    """libvirt's lifecycle events reach Nova: a guest whose QEMU dies
    outside Nova's control shows SHUTOFF through the API."""

    def test_qemu_killed_under_running_guest(self):
        image_id = self.create_bootable_image()
        server = self._create_server(
            image_uuid=image_id, flavor_id=self.create_flavor(),
            networks='none', expected_state='BUILD')
        server = self.wait_for_status(server, 'ACTIVE')
        self.wait_for_console(server, guest_image.BOOT_MARKER_PREFIX)

        self.kill_qemu(server)

        # Only the event tells Nova (the power-state sync period is off in
        # Nova's tests); libvirt's STOPPED events are delayed 15 s by
        # Nova's Host to tell a reboot from a stop.
        server = self.wait_for_status(server, 'SHUTOFF')
        self.assertFalse(self.domain(server).isActive())
        self.assertEqual(4, server['OS-EXT-STS:power_state'])  # SHUTDOWN

        self.api.delete_server(server['id'])
        self.wait_until_deleted(server)
        self.assertFalse(self.domain_exists(server))


class HostRebootTest(base.RealLibvirtTestCase):
    """After a host reboot nova-compute brings its guests back, with the
    disks (ephemeral, swap, config drive) they had."""

    def test_guest_resumed_on_host_boot(self):
        self.flags(resume_guests_state_on_host_boot=True)
        server = self.boot_with_every_disk()
        self.wait_for_console(server, guest_image.BOOT_MARKER_PREFIX)
        config_drive = os.path.join(self.instance_dir(server), 'disk.config')
        self.assertTrue(os.path.isfile(config_drive))
        self.assertEqual(
            [('vda', 'disk'), ('vdb', 'disk.eph0'), ('vdc', 'disk.swap'),
             ('sdz', 'disk.config')], self.disks(server))
        # The ephemeral disk is formatted (vfat: Nova's file system for an
        # image without os_type) and the swap disk is swap, as the guest
        # will find them.
        base_dir = os.path.join(self.instances_path, '_base')
        self.assertEqual('vfat', subprocess.run(
            ['blkid', '-o', 'value', '-s', 'TYPE',
             os.path.join(base_dir, 'vfat_1024')], stdout=subprocess.PIPE,
            text=True, check=True).stdout.strip())
        with open(os.path.join(base_dir, 'swap_64'), 'rb') as f:
            f.seek(4086)
            self.assertEqual(b'SWAPSPACE2', f.read(10))

        # The host goes down: nova-compute stops, the guest is gone.
        self.compute.stop()
        self.domain(server).destroy()
        self.compute = self.restart_compute_service(
            self.compute, keep_hypervisor_state=False)
        self.driver = self.compute.manager.driver

        server = self.wait_for_status(server, 'ACTIVE')
        self.assertTrue(self.domain(server).isActive())
        self.wait_for_console(server, guest_image.BOOT_MARKER_PREFIX,
                              count=2)
        self.assertEqual(
            [('vda', 'disk'), ('vdb', 'disk.eph0'), ('vdc', 'disk.swap'),
             ('sdz', 'disk.config')], self.disks(server))

    def disks(self, server):
        """(target, file name) of every disk in the domain libvirt holds,
        each file in the instance's directory."""
        xml = etree.fromstring(self.domain(server).XMLDesc(0))
        result = []
        for disk in xml.findall('./devices/disk'):
            path = disk.find('source').get('file')
            self.assertEqual(self.instance_dir(server), os.path.dirname(path))
            result.append((disk.find('target').get('dev'),
                           os.path.basename(path)))
        return result
