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

"""Neutron's network-vif-plugged events around real guests.

A server gets a port that Nova's NeutronFixture shows DOWN (so Nova's
network info has ``active`` False), bound as an OVS hybrid-plug port. The
test plays Neutron's part: it sends ``network-vif-plugged`` through Nova's
API (``POST /os-server-external-events``), as Neutron's server does once
its agent has wired the port, or withholds it, or reports a failure.

This machine has no Open vSwitch, so os-vif's OVS plugin is stood in for
(OVSHybridPlugStandIn) by the part of its hybrid plug the guest sees: the
per-port Linux bridge that libvirt adds the guest's tap to. Everything
else is real: Nova's API, conductor, scheduler, compute manager and its
event waiting, the driver, libvirtd and a booting guest.
"""

import copy
import os
import subprocess
import time

import fixtures
import libvirt
from nova.tests import fixtures as nova_fixtures
import os_vif
from os_vif import objects as osv_objects
from oslo_utils import uuidutils

from tests.functional import base
from tests.functional import guest_image
from tests.functional import leftovers
from tests.functional import unprivileged

# Long enough never to expire while the test sends the event; the tests
# that let it expire set a short one.
LONG_TIMEOUT = 120
SHORT_TIMEOUT = 3


def ip(*args):
    """``ip`` as root: the stand-in's work is os-vif's, which its
    privsep daemon does as root."""
    unprivileged.as_root(subprocess.run, ('ip',) + args, check=True,
                         capture_output=True, timeout=30)


def netdev_exists(name):
    return os.path.exists('/sys/class/net/' + name)


class OVSHybridPlugStandIn(fixtures.Fixture):
    """os-vif's OVS plugin for hybrid-plug ports, without OVS: plug makes
    the port's Linux bridge (qbr...), unplug removes it; the veth pair into
    OVS is left out. Other ports go to os-vif itself."""

    def _setUp(self):
        real_plug, real_unplug = os_vif.plug, os_vif.unplug
        made = set()

        def is_hybrid(vif):
            return (isinstance(vif, osv_objects.vif.VIFBridge) and
                    vif.plugin == 'ovs')

        def plug(vif, instance_info):
            if not is_hybrid(vif):
                return real_plug(vif, instance_info)
            if not netdev_exists(vif.bridge_name):
                ip('link', 'add', vif.bridge_name, 'type', 'bridge')
                made.add(vif.bridge_name)
            ip('link', 'set', vif.bridge_name, 'up')

        def unplug(vif, instance_info):
            if not is_hybrid(vif):
                return real_unplug(vif, instance_info)
            if netdev_exists(vif.bridge_name):
                ip('link', 'del', vif.bridge_name)

        self.useFixture(fixtures.MonkeyPatch('os_vif.plug', plug))
        self.useFixture(fixtures.MonkeyPatch('os_vif.unplug', unplug))
        # A failed test must not leave bridges on the host.
        self.addCleanup(lambda: [ip('link', 'del', name) for name in made
                                 if netdev_exists(name)])


class NeutronEventsTest(leftovers.LeftoversMixin, base.RealLibvirtTestCase):

    def setUp(self):
        super().setUp()
        self.useFixture(OVSHybridPlugStandIn())
        # Nova's NeutronFixture turns the events off (it sends none).
        self.flags(vif_plugging_timeout=LONG_TIMEOUT)
        self.image_id = self.create_bootable_image()
        self.flavor_id = self.create_flavor()

    def down_port(self):
        """A new OVS hybrid-plug port, DOWN until Neutron's agent has
        wired it."""
        port = copy.deepcopy(nova_fixtures.NeutronFixture.port_1)
        port.update({
            'id': uuidutils.generate_uuid(), 'status': 'DOWN',
            'binding:vif_details': {'ovs_hybrid_plug': True,
                                    'port_filter': True}})
        self.neutron._ports[port['id']] = port
        return port['id']

    def boot(self, port_id):
        return self._create_server(
            image_uuid=self.image_id, flavor_id=self.flavor_id,
            networks=[{'port': port_id}], expected_state='BUILD')

    def neutron_reports(self, server, port_id, status='completed'):
        """Neutron's server telling Nova the port is plugged (or failed)."""
        [event] = self.api.create_server_external_events([{
            'name': 'network-vif-plugged', 'server_uuid': server['id'],
            'tag': port_id, 'status': status}])
        # Accepted: Nova knows the server's host and passed the event on.
        self.assertEqual(200, event['code'])

    def domain_state(self, server):
        try:
            return self.domain(server).state()[0]
        except libvirt.libvirtError:
            return None

    def wait_for_domain_state(self, server, state,
                              timeout=base.STATE_TIMEOUT):
        deadline = time.monotonic() + timeout
        while self.domain_state(server) != state:
            if time.monotonic() > deadline:
                self.fail('domain of %s is in state %s after %ds, expected '
                          '%s' % (server['id'], self.domain_state(server),
                                  timeout, state))
            time.sleep(0.2)

    def assert_held_paused(self, server, task_state):
        """Paused with the port plugged (the guest's tap on the port's
        bridge), and it stays so while no event comes."""
        self.wait_for_domain_state(server, libvirt.VIR_DOMAIN_PAUSED)
        time.sleep(2)
        self.assertEqual(libvirt.VIR_DOMAIN_PAUSED, self.domain_state(server))
        server = self.api.get_server(server['id'])
        self.assertEqual(task_state, server['OS-EXT-STS:task_state'])
        return server

    def bridge_of(self, port_id):
        return 'qbr' + port_id[:11]

    def tap_on_bridge(self, port_id):
        master = '/sys/class/net/tap%s/master' % port_id[:11]
        return (os.path.basename(os.readlink(master))
                if os.path.exists(master) else None)

    def test_paused_until_neutron_reports_the_port(self):
        port_id = self.down_port()
        server = self.boot(port_id)
        self.assert_held_paused(server, 'spawning')
        self.assertEqual(self.bridge_of(port_id), self.tap_on_bridge(port_id))

        self.neutron_reports(server, port_id)
        server = self.wait_for_status(server, 'ACTIVE')
        self.wait_for_console(server, guest_image.BOOT_MARKER_PREFIX)
        self.assertEqual(libvirt.VIR_DOMAIN_RUNNING,
                         self.domain_state(server))

        # A hard reboot waits only for the vnic types of [workarounds]
        # wait_for_vif_plugged_event_during_hard_reboot (none by default),
        # not for ports Nova's (stale) cache shows down as a spawn does.
        self.api.post_server_action(server['id'],
                                    {'reboot': {'type': 'HARD'}})
        self.wait_for_console(server, guest_image.BOOT_MARKER_PREFIX,
                              count=2)
        server = self.wait_for_status(server, 'ACTIVE')

        self.flags(wait_for_vif_plugged_event_during_hard_reboot=['normal'],
                   group='workarounds')
        self.api.post_server_action(server['id'],
                                    {'reboot': {'type': 'HARD'}})
        self.assert_held_paused(server, 'reboot_started_hard')
        # The port was torn down and plugged again.
        self.assertEqual(self.bridge_of(port_id), self.tap_on_bridge(port_id))
        self.neutron_reports(server, port_id)
        self.wait_for_console(server, guest_image.BOOT_MARKER_PREFIX,
                              count=3)
        server = self.wait_for_status(server, 'ACTIVE')

        self._delete_server(server)
        self.assert_nothing_left(server, [port_id])

    def test_resize_does_not_wait_its_revert_does(self):
        """As Nova's libvirt driver: finish_migration starts the resized
        guest without waiting (Neutron may not have seen the port go
        down), a revert waits for the ports Nova sees down, as a spawn."""
        self.flags(allow_resize_to_same_host=True)
        bigger = self.create_flavor(name='kvmx.tiny.bigger', ram=320,
                                    disk=2)
        port_id = self.down_port()
        server = self.boot(port_id)
        self.wait_for_domain_state(server, libvirt.VIR_DOMAIN_PAUSED)
        self.neutron_reports(server, port_id)
        server = self.wait_for_status(server, 'ACTIVE')
        # Booted: it powers off at the ACPI button for the move.
        self.wait_for_console(server, guest_image.BOOT_MARKER_PREFIX)

        self.api.post_server_action(server['id'],
                                    {'resize': {'flavorRef': bigger}})
        server = self.wait_for_status(server, 'VERIFY_RESIZE')
        # (The moved guest writes a new console log; a revert brings back
        # the one of its first boot.)
        self.wait_for_console(server, guest_image.BOOT_MARKER_PREFIX)

        self.api.post_server_action(server['id'], {'revertResize': None})
        self.assert_held_paused(server, 'resize_reverting')
        self.neutron_reports(server, port_id)
        server = self.wait_for_status(server, 'ACTIVE')
        self.wait_for_console(server, guest_image.BOOT_MARKER_PREFIX,
                              count=2)
        self.assertEqual(libvirt.VIR_DOMAIN_RUNNING,
                         self.domain_state(server))
        self._delete_server(server)
        self.assert_nothing_left(server, [port_id])

    def assert_build_failed(self, server, port_id, reason):
        """ERROR as Nova's libvirt driver fails it, with ``reason`` in
        the fault's details, and nothing left: domain, files, the port's
        bridge and tap, the claim in Placement."""
        server = self.wait_for_status(server, 'ERROR')
        self.assertIn('Failed to allocate the network(s), not rescheduling',
                      server['fault']['message'])
        self.assertIn(reason, server['fault']['details'])
        self.assert_nothing_left(server, [port_id])

    def test_timeout_fails_the_build(self):
        self.flags(vif_plugging_timeout=SHORT_TIMEOUT)
        port_id = self.down_port()
        server = self.boot(port_id)
        self.assert_build_failed(
            server, port_id, 'Neutron did not report port(s) %s plugged '
            '(network-vif-plugged) within %d seconds' % (
                port_id, SHORT_TIMEOUT))

    def test_timeout_not_fatal(self):
        self.flags(vif_plugging_timeout=SHORT_TIMEOUT,
                   vif_plugging_is_fatal=False)
        port_id = self.down_port()
        server = self.boot(port_id)
        server = self.wait_for_status(server, 'ACTIVE')
        self.wait_for_console(server, guest_image.BOOT_MARKER_PREFIX)
        self.assertIn('Neutron did not report port(s) %s plugged within %d '
                      'seconds; the guest runs anyway' % (
                          port_id, SHORT_TIMEOUT),
                      self.stdlog.logger.output)
        self._delete_server(server)
        self.assert_nothing_left(server, [port_id])

    def test_failed_event_fails_the_build(self):
        port_id = self.down_port()
        server = self.boot(port_id)
        self.assert_held_paused(server, 'spawning')
        self.neutron_reports(server, port_id, status='failed')
        self.assert_build_failed(
            server, port_id,
            'Neutron reported that plugging port %s failed' % port_id)
