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

"""Which Neutron events a guest start waits for (Nova's libvirt driver's
rules, by tables), and the wait itself through Nova's own ComputeVirtAPI
and InstanceEvents, with events delivered as the compute manager delivers
them."""

import types

import ddt
import nova.conf
from nova.compute import manager
from nova import exception as nova_exception
from nova.network import model
from nova import objects
from oslo_config import fixture as config_fixture
import testtools

from nova_kvmx import exception
from nova_kvmx import vif_events
from tests.unit import builders as b

CONF = nova.conf.CONF


def port(port_id, vnic_type='normal', active=None):
    """A port of Nova's network info; ``active`` None: a plain dict
    without it (Nova's VIF model always has one)."""
    if active is None:
        return dict(id=port_id, vnic_type=vnic_type, type='ovs')
    return model.VIF(id=port_id, vnic_type=vnic_type, type='ovs',
                     active=active)


def plugged(*port_ids):
    return [('network-vif-plugged', port_id) for port_id in port_ids]


@ddt.ddt
class PlugEventsTest(testtools.TestCase):
    """Spawn and revert: the ports Nova's cache shows down."""

    @ddt.data(
        # (vnic_type, active, waited for)
        ('normal', False, True),
        ('normal', True, False),
        # No 'active' in the cache: taken as up, never blocks a start.
        ('normal', None, False),
        ('direct', False, True),
        ('direct', True, False),
        ('macvtap', False, True),
        ('direct-physical', False, True),
        ('direct-physical', True, False),
        ('virtio-forwarder', False, True),
        ('vdpa', False, True),
        # A SmartNIC's backend wires it, not this host's agent.
        ('remote-managed', False, False),
        ('remote-managed', True, False),
    )
    @ddt.unpack
    def test_one_port(self, vnic_type, active, waited):
        self.assertEqual(
            plugged('p1') if waited else [],
            vif_events.plug_events([port('p1', vnic_type, active)]))

    def test_only_the_ports_down_in_order(self):
        self.assertEqual(plugged('p1', 'p3'), vif_events.plug_events([
            port('p1', active=False), port('p2', active=True),
            port('p3', 'direct', active=False),
            port('p4', 'remote-managed', active=False)]))

    @ddt.data(None, [], model.NetworkInfo())
    def test_no_ports(self, network_info):
        self.assertEqual([], vif_events.plug_events(network_info))


@ddt.ddt
class HardRebootEventsTest(testtools.TestCase):
    """Hard reboot and power on: the ports of the vnic types in
    [workarounds] wait_for_vif_plugged_event_during_hard_reboot, up or
    down (every port is plugged again)."""

    PORTS = [port('n-up', 'normal', True), port('n-down', 'normal', False),
             port('d-up', 'direct', True),
             port('pf-up', 'direct-physical', True),
             port('rm-down', 'remote-managed', False)]

    @ddt.data(
        ([], []),
        (['normal'], ['n-up', 'n-down']),
        (['direct'], ['d-up']),
        (['direct', 'direct-physical'], ['d-up', 'pf-up']),
        # Unlike a spawn, listed means waited for.
        (['remote-managed'], ['rm-down']),
        (['macvtap'], []),
    )
    @ddt.unpack
    def test_vnic_types(self, vnic_types, waited):
        self.assertEqual(plugged(*waited), vif_events.hard_reboot_events(
            self.PORTS, vnic_types))

    def test_no_ports(self):
        self.assertEqual([], vif_events.hard_reboot_events(None, ['normal']))


@ddt.ddt
class ExpectedTest(testtools.TestCase):
    """Whether a start waits at all."""

    @ddt.data(
        # (virt_type, vif_plugging_timeout, power_on, waits)
        ('kvm', 300, True, True),
        ('qemu', 300, True, True),
        ('kvm', 1, True, True),
        # 0: the operator says Neutron sends no events.
        ('kvm', 0, True, False),
        ('qemu', 0, True, False),
        # A guest only defined, not started.
        ('kvm', 300, False, False),
        # Nova's libvirt driver waits for KVM and QEMU guests only.
        ('lxc', 300, True, False),
        ('parallels', 300, True, False),
    )
    @ddt.unpack
    def test_expected(self, virt_type, timeout, power_on, waits):
        events = plugged('p1', 'p2')
        self.assertEqual(events if waits else [], vif_events.expected(
            events, virt_type, timeout, power_on))


class FromConfigTest(testtools.TestCase):
    """The same rules under nova.conf, read at each start."""

    PORTS = [port('n-down', 'normal', False), port('d-up', 'direct', True)]

    def setUp(self):
        super().setUp()
        self.conf = self.useFixture(config_fixture.Config(CONF))

    def test_defaults(self):
        # vif_plugging_timeout 300, no vnic type in the workaround.
        self.assertEqual(plugged('n-down'),
                         vif_events.for_plug(self.PORTS, 'kvm'))
        self.assertEqual([], vif_events.for_hard_reboot(self.PORTS, 'kvm'))

    def test_workaround(self):
        self.conf.config(
            wait_for_vif_plugged_event_during_hard_reboot=['direct'],
            group='workarounds')
        self.assertEqual(plugged('d-up'),
                         vif_events.for_hard_reboot(self.PORTS, 'qemu'))
        self.assertEqual(plugged('n-down'),
                         vif_events.for_plug(self.PORTS, 'qemu'))

    def test_timeout_zero(self):
        self.conf.config(vif_plugging_timeout=0)
        self.conf.config(
            wait_for_vif_plugged_event_during_hard_reboot=['direct'],
            group='workarounds')
        self.assertEqual([], vif_events.for_plug(self.PORTS, 'kvm'))
        self.assertEqual([], vif_events.for_hard_reboot(self.PORTS, 'kvm'))

    def test_not_powered_on(self):
        self.assertEqual([], vif_events.for_plug(self.PORTS, 'kvm',
                                                 power_on=False))


class WaitingTest(testtools.TestCase):
    """vif_events.waiting around Nova's ComputeVirtAPI: events delivered
    the way the compute manager's external_instance_event does."""

    def setUp(self):
        super().setUp()
        self.conf = self.useFixture(config_fixture.Config(CONF))
        self.conf.config(vif_plugging_timeout=1)
        self.compute = types.SimpleNamespace(
            reportclient=None, instance_events=manager.InstanceEvents())
        self.virtapi = manager.ComputeVirtAPI(self.compute)
        self.instance = b.instance()
        # What a timeout's warning names.
        self.instance.vm_state, self.instance.task_state = (
            'building', 'spawning')
        self.body_ran = False

    def deliver(self, port_id, status='completed'):
        event = objects.InstanceExternalEvent(
            name='network-vif-plugged', tag=port_id, status=status)
        waiter = self.compute.instance_events.pop_instance_event(
            self.instance, event)
        self.assertIsNotNone(waiter, 'nobody waits for %s' % port_id)
        waiter.set(event)

    def wait(self, events, deliver=()):
        with vif_events.waiting(self.virtapi, self.instance, events):
            # The ports are plugged here; Neutron may answer at once.
            self.body_ran = True
            for args in deliver:
                self.deliver(*args)

    def test_all_reported(self):
        self.wait(plugged('p1', 'p2'), [('p1',), ('p2',)])
        self.assertTrue(self.body_ran)

    def test_no_events_no_wait(self):
        self.conf.config(vif_plugging_timeout=300)
        self.wait([])
        self.assertTrue(self.body_ran)

    def test_timeout_fatal(self):
        ex = self.assertRaises(exception.VIFPlugTimedOut, self.wait,
                               plugged('p1', 'p2'), [('p1',)])
        self.assertIsInstance(
            ex, nova_exception.VirtualInterfaceCreateException)
        self.assertEqual(
            'Neutron did not report port(s) p1, p2 plugged '
            '(network-vif-plugged) within 1 seconds ([DEFAULT] '
            'vif_plugging_timeout); check the Neutron agent wiring them on '
            'this host', str(ex))

    def test_timeout_not_fatal(self):
        self.conf.config(vif_plugging_is_fatal=False)
        self.wait(plugged('p1'))
        self.assertTrue(self.body_ran)

    def test_failed_fatal(self):
        self.conf.config(vif_plugging_timeout=300)
        ex = self.assertRaises(exception.VIFPlugReportedFailed, self.wait,
                               plugged('p1', 'p2'),
                               [('p1', 'failed'), ('p2',)])
        self.assertIsInstance(
            ex, nova_exception.VirtualInterfaceCreateException)
        self.assertIn('plugging port p1 failed', str(ex))

    def test_failed_not_fatal_waits_for_the_others(self):
        self.conf.config(vif_plugging_is_fatal=False)
        self.wait(plugged('p1', 'p2'), [('p1', 'failed'), ('p2',)])
        self.assertTrue(self.body_ran)

    def test_body_error_is_not_hidden(self):
        def fails():
            with vif_events.waiting(self.virtapi, self.instance,
                                    plugged('p1')):
                raise exception.VIFPlugFailed(port_id='p1', reason='no OVS')
        self.assertRaises(exception.VIFPlugFailed, fails)
