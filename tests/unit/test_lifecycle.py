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

"""Which libvirt domains the driver counts as Nova instances; how a start
waits for Neutron's events and what a failed one leaves (nothing)."""

import types
from unittest import mock

import fixtures
import nova.conf
from nova.compute import manager
from nova.compute import power_state
from nova import objects
from oslo_config import fixture as config_fixture
import testtools

from nova_kvmx import exception
from nova_kvmx import lifecycle
from tests.unit import builders as b

CONF = nova.conf.CONF


class RecordMachineTypeTest(testtools.TestCase):
    """The machine type a guest got from the host's default is kept with
    the instance, and read back as its image's ``hw_machine_type``."""

    def instance(self, **sysmeta):
        inst = b.instance()
        inst.system_metadata = dict(sysmeta, image_disk_format='qcow2')
        inst.image_ref = b.IMAGE_ID
        return inst

    def test_default_is_recorded_and_read_back(self):
        inst = self.instance()
        lifecycle.record_machine_type(inst, inst.image_meta, 'pc-q35-7.2')
        self.assertEqual('pc-q35-7.2', inst.system_metadata[
            'image_hw_machine_type'])
        self.assertEqual('pc-q35-7.2',
                         inst.image_meta.properties.hw_machine_type)

    def test_image_property_is_not_copied(self):
        inst = self.instance(image_hw_machine_type='pc')
        lifecycle.record_machine_type(inst, inst.image_meta, 'pc')
        lifecycle.record_machine_type(inst, b.image(hw_machine_type='q35'),
                                      'q35')
        self.assertEqual('pc', inst.system_metadata['image_hw_machine_type'])

    def test_recorded_value_kept(self):
        # A rescue image without the property does not replace it.
        inst = self.instance(image_hw_machine_type='pc')
        lifecycle.record_machine_type(inst, b.image(), 'q35')
        self.assertEqual('pc', inst.system_metadata['image_hw_machine_type'])


class NamePatternTest(testtools.TestCase):
    """Only domains named by ``instance_name_template`` are instances:
    nova-compute refuses to start on a host whose "instances" it does not
    know, and an operator's own VMs must not count as such."""

    CASES = (
        ('instance-%08x', 'instance-0000002a', True),
        ('instance-%08x', 'instance-0000002a-clone', False),
        ('instance-%08x', 'my-router-vm', False),
        ('instance-%x', 'instance-2a', True),
        ('%(uuid)s', '7d4a2e4c-6a68-4b4e-8a0e-0a4d3e0d3b1a', True),
        ('vm.%(id)d', 'vm.42', True),
        ('vm.%(id)d', 'vmX42', False),  # the dot is literal
        ('test-ab12-%08x', 'test-ff00-00000001', False),
    )

    def test_name_pattern(self):
        for template, name, matches in self.CASES:
            self.assertEqual(
                matches,
                bool(lifecycle.name_pattern(template).fullmatch(name)),
                '%s vs %s' % (template, name))


class FakeGuest(object):
    """What start_with_network asks of Nova's Guest wrapper, logged."""

    name = 'instance-00000001'

    def __init__(self, log):
        self.log = log
        self.state = power_state.SHUTDOWN

    def launch(self, pause=False):
        self.log.append('launch paused' if pause else 'launch')
        self.state = power_state.PAUSED if pause else power_state.RUNNING

    def resume(self):
        self.log.append('resume')
        self.state = power_state.RUNNING

    def get_power_state(self, host):
        return self.state

    def is_active(self):
        return self.state != power_state.SHUTDOWN

    def poweroff(self):
        self.log.append('poweroff')
        self.state = power_state.SHUTDOWN

    def delete_configuration(self, keep_vtpm=False, keep_nvram=False):
        self.log.append('undefine' + (' keeping NVRAM' if keep_nvram else '')
                        + (' keeping TPM' if keep_vtpm else ''))

    def get_xml_desc(self):
        return '<domain/>'


class FakeNetwork(object):
    def __init__(self, log, on_plug=None, fail=False):
        self.log = log
        self.on_plug = on_plug
        self.fail = fail

    def plug_all(self, instance, network_info):
        self.log.append('plug')
        if self.fail:
            raise exception.VIFPlugFailed(port_id='p1', reason='no OVS')
        if self.on_plug:
            self.on_plug()

    def unplug_all(self, instance, network_info):
        self.log.append('unplug')


class StartWithNetworkTest(testtools.TestCase):
    """The domain starts paused while Neutron's events are awaited (they
    are registered for before the ports are plugged), runs once they came,
    and a start that fails leaves no domain and no port plugged."""

    EVENTS = [('network-vif-plugged', 'p1')]

    def setUp(self):
        super().setUp()
        self.conf = self.useFixture(config_fixture.Config(CONF))
        self.conf.config(vif_plugging_timeout=1)
        self.log = []
        self.guest = FakeGuest(self.log)
        self.useFixture(fixtures.MockPatch(
            'nova.virt.libvirt.guest.Guest.create',
            return_value=self.guest))
        self.compute = types.SimpleNamespace(
            reportclient=None, instance_events=manager.InstanceEvents())
        self.instance = b.instance()
        self.instance.vm_state, self.instance.task_state = (
            'building', 'spawning')

    def neutron_reports(self, status='completed'):
        """Neutron's answer once the port is plugged, as the compute
        manager hands it to the waiter."""
        def report():
            event = objects.InstanceExternalEvent(
                name='network-vif-plugged', tag='p1', status=status)
            self.compute.instance_events.pop_instance_event(
                self.instance, event).set(event)
        return report

    def start(self, events, **network):
        ops = lifecycle.GuestLifecycle(
            None, None, None, 5, FakeNetwork(self.log, **network),
            manager.ComputeVirtAPI(self.compute))
        return ops.start_with_network(self.instance, '<domain/>', [],
                                      events)

    def test_no_events_starts_running(self):
        self.assertIs(self.guest, self.start([]))
        self.assertEqual(['plug', 'launch'], self.log)
        self.assertEqual(power_state.RUNNING, self.guest.state)

    def test_paused_until_reported(self):
        self.start(self.EVENTS, on_plug=self.neutron_reports())
        self.assertEqual(['plug', 'launch paused', 'resume'], self.log)
        self.assertEqual(power_state.RUNNING, self.guest.state)

    def test_timeout_fatal_leaves_nothing(self):
        self.assertRaises(exception.VIFPlugTimedOut, self.start,
                          self.EVENTS)
        self.assertEqual(['plug', 'launch paused', 'poweroff', 'undefine',
                          'unplug'], self.log)

    def test_timeout_not_fatal_runs(self):
        self.conf.config(vif_plugging_is_fatal=False)
        self.start(self.EVENTS)
        self.assertEqual(['plug', 'launch paused', 'resume'], self.log)

    def test_reported_failure_leaves_nothing(self):
        self.assertRaises(exception.VIFPlugReportedFailed, self.start,
                          self.EVENTS,
                          on_plug=self.neutron_reports('failed'))
        self.assertEqual(['plug', 'launch paused', 'poweroff', 'undefine',
                          'unplug'], self.log)

    def test_plug_failure_starts_nothing(self):
        # plug_all unplugs what it did itself.
        self.assertRaises(exception.VIFPlugFailed, self.start, self.EVENTS,
                          fail=True)
        self.assertEqual(['plug'], self.log)


class FakeHost(object):
    def __init__(self, guest):
        self.guest = guest

    def get_guest(self, instance):
        return self.guest


class UndefineKeepsWhatStaysTest(testtools.TestCase):
    """As Nova's libvirt driver: the UEFI NVRAM and the emulated TPM's
    state go with the disks, and stay over a new definition."""

    def destroy(self, destroy_disks):
        log = []
        storage = mock.Mock(**{'destroy.return_value': True})
        ops = lifecycle.GuestLifecycle(
            FakeHost(FakeGuest(log)), storage, None, 5, FakeNetwork(log),
            None, mock.Mock())
        ops.destroy(b.instance(), [], destroy_disks=destroy_disks)
        return log

    def test_delete_removes_them(self):
        self.assertEqual(['undefine', 'unplug'], self.destroy(True))

    def test_kept_with_the_disks(self):
        self.assertEqual(['undefine keeping NVRAM keeping TPM', 'unplug'],
                         self.destroy(False))
