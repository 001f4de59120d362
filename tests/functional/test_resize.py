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

"""Resizing a pinned guest on this host, through Nova's API.

Both of this machine's CPUs are dedicated. During a resize Nova holds the
old claim and the new one, so the resized guest is pinned to the other
CPU: the domain must follow the new claim, and a revert must bring the
old pin, memory and disk back exactly.
"""

import os

from lxml import etree
from nova import objects
from nova.virt import images

from tests.functional import base
from tests.functional import guest_image
from tests.functional import unprivileged


class ResizePinnedGuestTest(base.RealLibvirtTestCase):

    PINNED_HOST = base.ALL_CPUS_PINNED

    def setUp(self):
        super().setUp()
        self.flags(allow_resize_to_same_host=True)
        self.small = self.create_pinned_flavor(name='kvmx.pinned.small',
                                               ram=256, disk=1)
        self.big = self.create_pinned_flavor(name='kvmx.pinned.big',
                                             ram=320, disk=2)
        server = self._create_server(
            image_uuid=self.create_bootable_image(), flavor_id=self.small,
            networks='none')
        self.server = self.wait_for_status(server, 'ACTIVE')
        self.wait_for_console(self.server, guest_image.BOOT_MARKER_PREFIX)
        self.old = self.realised(self.server)

    def realised(self, server):
        """(claimed pin, pin in the domain, memory KiB, root disk GiB)."""
        claim = objects.Instance.get_by_uuid(
            self.ctxt, server['id'],
            expected_attrs=['numa_topology']).numa_topology
        xml = etree.fromstring(self.domain(server).XMLDesc(0))
        disk = os.path.join(self.instance_dir(server), 'disk')
        return (claim.cells[0].cpu_pinning[0],
                int(xml.find("cputune/vcpupin[@vcpu='0']").get('cpuset')),
                int(xml.findtext('memory')),
                # The running guest's disk is QEMU's: read as root.
                unprivileged.as_root(lambda: images.qemu_img_info(
                    disk, format='qcow2').virtual_size) // 1024 ** 3)

    def resize(self):
        self.api.post_server_action(self.server['id'],
                                    {'resize': {'flavorRef': self.big}})
        server = self.wait_for_status(self.server, 'VERIFY_RESIZE')
        self.wait_for_console(server, guest_image.BOOT_MARKER_PREFIX)
        return server

    def test_resize_then_confirm(self):
        server = self.resize()
        new_pin, domain_pin, memory, disk_gb = self.realised(server)
        self.assertNotEqual(self.old[0], new_pin)
        self.assertEqual((new_pin, 320 * 1024, 2),
                         (domain_pin, memory, disk_gb))
        self.assertTrue(os.path.isdir(self.instance_dir(server) + '_resize'))

        self.api.post_server_action(server['id'], {'confirmResize': None})
        server = self.wait_for_status(server, 'ACTIVE')
        self.assertEqual((new_pin, new_pin, 320 * 1024, 2),
                         self.realised(server))
        self.assertFalse(os.path.exists(
            self.instance_dir(server) + '_resize'))
        allocation = self.placement.get(
            '/allocations/%s' % server['id']).body['allocations']
        self.assertEqual([{'PCPU': 1, 'MEMORY_MB': 320, 'DISK_GB': 2}],
                         [a['resources'] for a in allocation.values()])

    def test_resize_then_revert(self):
        server = self.resize()
        self.api.post_server_action(server['id'], {'revertResize': None})
        server = self.wait_for_status(server, 'ACTIVE')
        self.wait_for_console(server, guest_image.BOOT_MARKER_PREFIX)
        self.assertEqual(self.old, self.realised(server))
        self.assertEqual(self.old[0], self.old[1])
        self.assertFalse(os.path.exists(
            self.instance_dir(server) + '_resize'))

    def test_resize_nova_cannot_place_leaves_the_guest_running(self):
        huge = self.create_flavor(name='kvmx.1g', ram=1024, extra_specs={
            'hw:cpu_policy': 'dedicated', 'hw:mem_page_size': '1GB'})
        dom_id = self.domain(self.server).ID()
        self.api.post_server_action(self.server['id'],
                                    {'resize': {'flavorRef': huge}})
        # Nova finds no host and leaves the server as it was.
        self._wait_for_action_fail_completion(
            self.server, 'resize', 'conductor_migrate_server')
        server = self.wait_for_status(self.server, 'ACTIVE')
        self.assertEqual(dom_id, self.domain(server).ID())
        self.assertEqual(self.old, self.realised(server))
        self.assertFalse(os.path.exists(
            self.instance_dir(server) + '_resize'))
