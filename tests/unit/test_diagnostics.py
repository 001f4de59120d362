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

"""What ``nova diagnostics`` and the hypervisor stats show for a guest
spawned by our driver on Nova's fake libvirt."""

from nova import test
from nova.tests.unit.virt import test_virt_drivers
from oslo_utils import timeutils

from nova_kvmx import diagnostics
from tests.unit import test_virt_driver_suite as suite


@suite.only_own_tests
class DiagnosticsTest(suite.FakeLibvirtDriverMixin,
                      test_virt_drivers._VirtDriverTestCase, test.TestCase):

    def test_instance_diagnostics_show_disks_ports_and_memory(self):
        instance, network_info = self._get_running_instance()
        # Nova's compute manager sets it once the spawn returns.
        instance.launched_at = timeutils.utcnow()
        diags = self.connection.get_instance_diagnostics(instance)
        self.assertEqual('running', diags.state)
        self.assertEqual('libvirt', diags.driver)
        self.assertEqual('kvm', diags.hypervisor)
        self.assertEqual([network_info[0]['address']],
                         [nic.mac_address for nic in diags.nic_details])
        self.assertTrue(diags.disk_details)
        # MiB (the fake's guests have 2 GiB).
        self.assertEqual(2048, diags.memory_details.maximum)
        self.assertEqual(
            [(2, 10000242400, 234, 2343424234, 34)] * 3,
            [(d.read_requests, d.read_bytes, d.write_requests,
              d.write_bytes, d.errors_count) for d in diags.disk_details])

    def test_legacy_diagnostics_name_each_disk_and_port(self):
        instance, _ = self._get_running_instance()
        output = self.connection.get_diagnostics(instance)
        # Nova's fake libvirt's counters for each disk and port.
        self.assertEqual(10000242400, output['vda_read'])
        self.assertEqual(34, output['vdc_errors'])
        [tap] = diagnostics.io_devices(self.connection._host.get_guest(
            instance).get_xml_desc())['ifaces']
        self.assertEqual(1234, output[tap + '_rx_packets'])
        self.assertEqual(2097152, output['memory'])
        self.assertIn('cpu0_time', output)

    def test_block_stats_of_a_gone_guest_are_none(self):
        instance, _ = self._get_running_instance()
        self.connection.destroy(self.ctxt, instance, [])
        self.assertIsNone(self.connection.block_stats(instance, 'vda'))

    def test_host_cpu_stats_for_the_compute_monitor(self):
        stats = self.connection.get_host_cpu_stats()
        for key in ('kernel', 'idle', 'user', 'iowait', 'frequency'):
            self.assertIn(key, stats)


class IODevicesTest(test.NoDBTestCase):
    def test_targets_of_disks_and_interfaces(self):
        xml = ('<domain><devices>'
               '<disk><target dev="vda" bus="virtio"/></disk>'
               '<disk><target dev="sda" bus="scsi"/></disk>'
               '<interface type="ethernet"><target dev="tap1"/></interface>'
               '<interface type="hostdev"><mac address="fa:16:3e:00:00:01"/>'
               '</interface>'
               '</devices></domain>')
        self.assertEqual({'volumes': ['vda', 'sda'], 'ifaces': ['tap1']},
                         diagnostics.io_devices(xml))
