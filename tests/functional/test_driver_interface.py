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

"""Diagnostics, crash dump, hypervisor uptime and the image cache of a
real guest, through Nova's API and periodic tasks, on the local
libvirtd."""

import hashlib
import os
import time

from nova import context as nova_context

from tests.functional import base
from tests.functional import guest_image

DAY = 24 * 3600


class DriverInterfaceTest(base.RealLibvirtTestCase):

    def boot(self):
        image_id = self.create_bootable_image()
        flavor_id = self.create_flavor(vcpus=1, ram=256, disk=1)
        server = self._create_server(
            image_uuid=image_id, flavor_id=flavor_id, networks='none',
            expected_state='BUILD')
        server = self.wait_for_status(server, 'ACTIVE')
        self.wait_for_console(server, guest_image.BOOT_MARKER_PREFIX)
        return server, image_id

    def test_diagnostics_uptime_and_crash_dump(self):
        server, _ = self.boot()

        self.api.microversion = '2.1'
        legacy = self.api.get_server_diagnostics(server['id'])
        self.assertGreater(legacy['cpu0_time'], 0)
        self.assertEqual(256 * 1024, legacy['memory'])
        self.assertGreater(legacy['vda_read_req'], 0)

        self.api.microversion = '2.48'
        diags = self.api.get_server_diagnostics(server['id'])
        self.assertEqual('running', diags['state'])
        self.assertEqual('qemu', diags['hypervisor'])
        self.assertEqual(256, diags['memory_details']['maximum'])
        self.assertEqual(1, diags['num_cpus'])
        self.assertGreater(diags['cpu_details'][0]['time'], 0)
        self.assertGreater(diags['disk_details'][0]['read_requests'], 0)

        self.api.microversion = '2.87'
        [hypervisor] = self.api.api_get('/os-hypervisors').body[
            'hypervisors']
        uptime = self.api.api_get('/os-hypervisors/%s/uptime' % (
            hypervisor['id'])).body['hypervisor']['uptime']
        self.assertIn('load average', uptime)

        # The guest's kernel reports the NMI on its serial console.
        self.api.microversion = '2.17'
        self.api.post_server_action(server['id'],
                                    {'trigger_crash_dump': None})
        self.wait_for_console(server, 'NMI received')

    def test_unused_base_aged_out_of_the_cache(self):
        self.flags(remove_unused_original_minimum_age_seconds=DAY,
                   group='image_cache')
        server, image_id = self.boot()
        base_dir = os.path.join(self.instances_path, '_base')
        used = os.path.join(base_dir, hashlib.sha1(
            image_id.encode()).hexdigest())
        self.assertTrue(os.path.isfile(used))
        # A base no instance uses, older than the minimum age, and one
        # younger.
        old = os.path.join(base_dir, hashlib.sha1(b'gone').hexdigest())
        young = os.path.join(base_dir, hashlib.sha1(b'recent').hexdigest())
        for path, age in ((old, DAY + 60), (young, DAY - 60), (used, 2 * DAY)):
            if path != used:
                with open(path, 'wb') as f:
                    f.write(b'\0' * 4096)
            os.utime(path, (time.time() - age,) * 2)

        ctxt = nova_context.get_admin_context()
        self.compute.manager._run_image_cache_manager_pass(ctxt)
        self.assertFalse(os.path.exists(old))
        self.assertTrue(os.path.exists(young))
        self.assertTrue(os.path.exists(used))

        # Once its server is gone, the image's base ages out too.
        self._delete_server(server)
        os.utime(used, (time.time() - 2 * DAY,) * 2)
        self.compute.manager._run_image_cache_manager_pass(ctxt)
        self.assertFalse(os.path.exists(used))
