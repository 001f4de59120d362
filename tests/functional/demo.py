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

"""All-in-one demo: Nova on nova-kvmx on this machine's libvirtd.

Nova's API, conductor, scheduler, Placement and a nova-compute service
whose ``compute_driver`` is ``kvmx.KVMXDriver`` run in this process (Nova's
own in-process services, the same harness as the functional tests); the
guest is real: a QEMU process booting Debian's kernel and a busybox
initramfs. Run from the repository root, as root::

    .venv/bin/python -m tests.functional.demo
"""

import os
import sys
import time
import unittest

from lxml import etree
import nova.conf
import nova.version

from nova_kvmx.host import options
from tests.functional import base
from tests.functional import guest_image

CONF = nova.conf.CONF


def say(text=''):
    print(text, file=sys.__stdout__, flush=True)


class Demo(base.RealLibvirtTestCase):

    def test_demo(self):
        say('== Nova %s services in-process; nova-compute runs '
            'compute_driver=%s on %s (virt_type=%s)' % (
                nova.version.version_string(), CONF.compute_driver,
                options.connection_uri(CONF), options.virt_type(CONF)))
        self.show_host()

        image_id = self.create_bootable_image()
        flavor_id = self.create_flavor(name='demo.small', vcpus=2, ram=256,
                                       disk=1)
        say('== Booting a server (flavor demo.small: 2 vCPUs, 256 MiB, '
            '1 GiB disk; image: Debian kernel + busybox initramfs)')
        started = time.monotonic()
        server = self._create_server(
            name='nova-kvmx demo', image_uuid=image_id, flavor_id=flavor_id,
            networks='none', expected_state='BUILD')
        server = self.wait_for_status(server, 'ACTIVE')
        say('   ACTIVE after %.1f s on host %s as domain %s' % (
            time.monotonic() - started, server['OS-EXT-SRV-ATTR:host'],
            server['OS-EXT-SRV-ATTR:instance_name']))
        output = self.wait_for_console(server, guest_image.BOOT_MARKER_PREFIX)
        marker = [line for line in output.splitlines()
                  if guest_image.BOOT_MARKER_PREFIX in line][-1]
        say('   the guest booted %.1f s after the request; console: %r' % (
            time.monotonic() - started, marker.strip()))
        self.show_domain(server)
        self.show_allocation(server)

        say('== Lifecycle through the API (times include the guest booting '
            'again where it does)')
        boots = 1
        for action, body, status, new_boots in (
                ('stop (ACPI power button)', {'os-stop': None}, 'SHUTOFF', 0),
                ('start', {'os-start': None}, 'ACTIVE', 1),
                ('soft reboot', {'reboot': {'type': 'SOFT'}}, 'ACTIVE', 1),
                ('pause', {'pause': None}, 'PAUSED', 0),
                ('unpause', {'unpause': None}, 'ACTIVE', 0),
                ('suspend (managed save)', {'suspend': None}, 'SUSPENDED', 0),
                ('resume', {'resume': None}, 'ACTIVE', 0)):
            started = time.monotonic()
            self.api.post_server_action(server['id'], body)
            server = self.wait_for_status(server, status)
            if new_boots:
                boots += new_boots
                self.wait_for_console(server, guest_image.BOOT_MARKER_PREFIX,
                                      count=boots)
            say('   %-24s -> %-9s %.1f s' % (
                action, status, time.monotonic() - started))

        self.api.delete_server(server['id'])
        self.wait_until_deleted(server)
        say('== Deleted: domain left in libvirt: %s; instance directory '
            'left: %s' % (self.domain_exists(server),
                          os.path.exists(self.instance_dir(server))))
        say('== OK')

    def show_host(self):
        hypervisor = self.api.api_get(
            '/os-hypervisors/detail').body['hypervisors'][0]
        say('== Compute node %s (%s %s), state %s' % (
            hypervisor['hypervisor_hostname'],
            hypervisor.get('hypervisor_type', 'QEMU'),
            hypervisor.get('hypervisor_version', ''), hypervisor['state']))
        rp = self.placement.get(
            '/resource_providers?name=%s' %
            hypervisor['hypervisor_hostname']).body['resource_providers'][0]
        inventories = self.placement.get(
            '/resource_providers/%s/inventories' % rp['uuid']
        ).body['inventories']
        for rc, inv in sorted(inventories.items()):
            say('   Placement %-9s total %-7d reserved %-5d ratio %s' % (
                rc, inv['total'], inv['reserved'], inv['allocation_ratio']))

    def show_domain(self, server):
        xml = etree.fromstring(self.domain(server).XMLDesc(0))
        say('   libvirt domain: type=%s vcpus=%s memory=%s KiB machine=%s' % (
            xml.get('type'), xml.findtext('vcpu'), xml.findtext('memory'),
            xml.find('os/type').get('machine')))
        say('   kernel %s' % xml.findtext('os/kernel'))
        for disk in xml.findall('devices/disk'):
            say('   disk %s %s' % (
                disk.find('target').get('dev'),
                disk.find('source').get('file')))

    def show_allocation(self, server):
        allocations = self.placement.get(
            '/allocations/%s' % server['id']).body['allocations']
        for rp_uuid, alloc in allocations.items():
            say('   Placement allocation on %s: %s' % (
                rp_uuid, alloc['resources']))


def main():
    suite = unittest.TestLoader().loadTestsFromTestCase(Demo)
    result = unittest.TextTestRunner(stream=sys.stderr,
                                     verbosity=1).run(suite)
    return 0 if result.wasSuccessful() else 1


if __name__ == '__main__':
    sys.exit(main())
