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

"""Evacuation of a pinned, hugepage-backed guest off a failed host.

The hosts are those of test_live_migration: compute1 is the machine's
libvirtd, compute2 a second libvirtd in its own namespaces with its own
instances directory at the same path (no shared storage, so the guest is
rebuilt on compute2 from its image). compute1 "fails": its guest dies,
its nova-compute stops and the operator forces its service down, as an
operator (or Masakari) does before evacuating. When compute1's
nova-compute starts again it must remove what the evacuated guest left
there.

Evacuations here use API microversion 2.94: from 2.95 on an evacuated
server is stopped on its new host, and these tests watch it boot there.
"""

import os

from lxml import etree

from tests.functional import guest_image
from tests.functional import test_live_migration

DEST = test_live_migration.DEST


class EvacuateTest(test_live_migration.TwoHostsTestCase):

    def setUp(self):
        super().setUp()
        self.server = self.boot(self.compute_host)
        self.assertEqual({0: 0},
                         self.claim(self.server).cells[0].cpu_pinning)
        self.source_node = self.compute_nodename(self.compute_host)

    def host_fails(self):
        """compute1 goes down with its guest (nova-compute first, so that
        it does not see the guest stop and stop the server); the operator
        disables its service and forces it down."""
        self.compute.stop()
        self.domain(self.server).destroy()
        service = self.api.get_services(host=self.compute_host,
                                        binary='nova-compute')[0]
        self.api.put_service(service['id'], {
            'status': 'disabled', 'disabled_reason': 'host failure'})
        self.api.put_service(service['id'], {'forced_down': True})
        return service

    def evacuate(self, host=DEST):
        self.api.microversion = '2.94'
        try:
            self.api.post_server_action(self.server['id'],
                                        {'evacuate': {'host': host}})
        finally:
            self.api.microversion = 'latest'

    def dest_domain_xml(self, server):
        return etree.fromstring(self.dest_conn.lookupByUUIDString(
            server['id']).XMLDesc(0))

    def test_evacuate_pinned_hugepage_guest_and_clean_the_failed_host(self):
        self.take_dest_cpu()
        service = self.host_fails()
        self.evacuate()
        self.wait_for_migration(self.server, ('done',))
        server = self.wait_for_status(self.server, 'ACTIVE')
        self.assertEqual(DEST, server['OS-EXT-SRV-ATTR:host'])
        # Rebuilt from its image on compute2, where it boots.
        self.wait_for_console(server, guest_image.BOOT_MARKER_PREFIX)

        # compute2's claim (its CPU 0 is the blocker's) is the domain's.
        self.assertEqual({0: 1}, self.claim(server).cells[0].cpu_pinning)
        root = self.dest_domain_xml(server)
        self.assertEqual([('0', '1')], [
            (pin.get('vcpu'), pin.get('cpuset'))
            for pin in root.findall('cputune/vcpupin')])
        self.assertEqual('1', root.find('cputune/emulatorpin').get('cpuset'))
        self.assertEqual('2048', root.find(
            'memoryBacking/hugepages/page').get('size'))
        self.assertTrue(self.dest_conn.lookupByUUIDString(
            server['id']).isActive())
        self.assertTrue(os.path.isfile(os.path.join(
            self.dest_instances, server['id'], 'disk')))
        self.assertEqual({0, 1}, self.pinned_cpus(DEST))
        # Placement holds it on both hosts until compute1 is back.
        self.assertEqual({self.source_node, self.compute_nodename(DEST)},
                         self.allocation_hosts(server))
        # The failed host is as it was left: its domain (shut off) and
        # files, until its nova-compute is back.
        self.assertTrue(self.domain_exists(server))
        self.assertTrue(os.path.isdir(self.instance_dir(server)))

        self.compute = self.restart_compute_service(
            self.compute, keep_hypervisor_state=False)
        self.driver = self.compute.manager.driver
        self.api.put_service(service['id'], {'forced_down': False})
        self.api.put_service(service['id'], {'status': 'enabled'})

        self.wait_for_migration(server, ('completed',))
        self.assertFalse(self.domain_exists(server))
        self.assertFalse(os.path.exists(self.instance_dir(server)))
        self.assertEqual({self.compute_nodename(DEST)},
                         self.allocation_hosts(server))
        self.assertEqual(set(), self.pinned_cpus(self.compute_host))
        # The guest runs on compute2 unharmed.
        server = self.wait_for_status(server, 'ACTIVE')
        self.assertEqual(DEST, server['OS-EXT-SRV-ATTR:host'])
        self.assertTrue(self.dest_conn.lookupByUUIDString(
            server['id']).isActive())

    def test_destination_without_room_leaves_nothing_there(self):
        """Both of compute2's dedicated CPUs are taken: the user sees
        why, and compute2 has nothing of the guest."""
        blocker_flavor = self.create_pinned_flavor(name='kvmx.pinned.2cpu',
                                                   vcpus=2)
        blocker = self._create_server(
            name='blocker', image_uuid=self.image_id,
            flavor_id=blocker_flavor, networks='none', host=DEST,
            expected_state='BUILD')
        self.wait_for_status(blocker, 'ACTIVE')
        self.host_fails()

        self.evacuate()
        server = self.wait_for_status(self.server, 'ERROR')
        self.assertIn('No valid host was found', server['fault']['message'])
        self.wait_for_migration(server, ('error',))
        self.assertEqual(self.compute_host, server['OS-EXT-SRV-ATTR:host'])
        self.assertFalse(self.dest_domain_exists(server))
        self.assertFalse(os.path.exists(
            os.path.join(self.dest_instances, server['id'])))
        self.assertEqual({self.source_node}, self.allocation_hosts(server))
        self.assertEqual({0, 1}, self.pinned_cpus(DEST))
        # Its disks wait on compute1 for another try.
        self.assertTrue(os.path.isfile(os.path.join(
            self.instance_dir(server), 'disk')))
