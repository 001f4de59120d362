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

"""A virtual port on a real guest, and passthrough readiness of this host,
on the real libvirtd."""

import os
import subprocess

from lxml import etree
from nova.network import model
from nova import objects
from oslo_utils import uuidutils

from nova_kvmx import exception
from nova_kvmx.host import iommu
from tests.functional import base
from tests.functional import guest_image
from tests.functional import unprivileged


def ip(*args):
    """``ip`` as root: the harness stands in for Neutron's agent."""
    unprivileged.as_root(subprocess.run, ('ip',) + args, check=True,
                         capture_output=True, timeout=30)


class LinuxBridgePortTest(base.RealLibvirtTestCase):
    """A Linux bridge port: the tap libvirt makes joins the bridge while
    the guest runs and is gone when the guest is.

    Nova 34 no longer hands a driver Linux bridge ports (its Neutron API
    refuses the VIF type, and os-vif dropped its plugin), so the port is
    given to the driver directly, on a server booted through the API.
    """

    def setUp(self):
        super().setUp()
        self.bridge = 'kvmxbr' + uuidutils.generate_uuid()[:8]
        ip('link', 'add', self.bridge, 'type', 'bridge')
        self.addCleanup(ip, 'link', 'del', self.bridge)
        ip('link', 'set', self.bridge, 'up')
        self.port_id = uuidutils.generate_uuid()

    def vif(self, bridge):
        network = model.Network(id=uuidutils.generate_uuid(), bridge=bridge,
                                label='lb', subnets=[], mtu=1400)
        return model.VIF(id=self.port_id, address='fa:16:3e:7b:00:01',
                         network=network, type='bridge', vnic_type='normal',
                         devname=('tap' + self.port_id)[:14])

    def boot(self):
        server = self._create_server(
            image_uuid=self.create_bootable_image(),
            flavor_id=self.create_flavor(), networks='none',
            expected_state='BUILD')
        server = self.wait_for_status(server, 'ACTIVE')
        self.wait_for_console(server, guest_image.BOOT_MARKER_PREFIX)
        return server, objects.Instance.get_by_uuid(self.ctxt, server['id'])

    def test_tap_joins_bridge_and_goes_with_the_guest(self):
        server, instance = self.boot()
        vif = self.vif(self.bridge)
        tap = '/sys/class/net/' + vif['devname']
        self.driver.reboot(self.ctxt, instance, [vif], 'HARD')
        self.wait_for_console(server, guest_image.BOOT_MARKER_PREFIX,
                              count=2)

        xml = etree.fromstring(self.domain(server).XMLDesc(0))
        nic = xml.find("./devices/interface[@type='bridge']")
        self.assertEqual(self.bridge, nic.find('source').get('bridge'))
        self.assertEqual(vif['devname'], nic.find('target').get('dev'))
        self.assertEqual('fa:16:3e:7b:00:01', nic.find('mac').get('address'))
        self.assertEqual(self.bridge, os.path.basename(
            os.readlink(tap + '/master')))
        with open(tap + '/mtu') as f:
            self.assertEqual('1400', f.read().strip())

        self.driver.destroy(self.ctxt, instance, [vif])
        self.assertFalse(self.domain_exists(server))
        self.assertFalse(os.path.exists(tap))
        self.assertTrue(os.path.exists('/sys/class/net/' + self.bridge))
        self.api.delete_server(server['id'])
        self.wait_until_deleted(server)

    def test_missing_bridge_names_port_and_bridge(self):
        server, instance = self.boot()
        ex = self.assertRaises(
            exception.VIFPlugFailed, self.driver.reboot, self.ctxt,
            instance, [self.vif('kvmxnobr0')], 'HARD')
        self.assertIn(self.port_id, str(ex))
        self.assertIn('bridge kvmxnobr0 does not exist', str(ex))
        self.api.delete_server(server['id'])
        self.wait_until_deleted(server)


class PassthroughReadinessTest(base.RealLibvirtTestCase):
    """nova-compute says at start-up when [pci] device_spec asks for
    passthrough on a host that cannot do it."""

    START_COMPUTE = False

    def test_warning_matches_this_host(self):
        problems = iommu.problems(iommu.read_facts())
        self.flags(device_spec=['{"vendor_id": "1af4"}'], group='pci')
        self.start_compute()
        log = self.stdlog.logger.output
        for problem in problems:
            self.assertIn('but this host is not ready for it: ' + problem,
                          log)
        if not problems:
            self.assertNotIn('not ready for it', log)

    def test_no_warning_without_device_spec(self):
        self.start_compute()
        self.assertNotIn('not ready for it', self.stdlog.logger.output)
