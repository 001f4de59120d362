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

"""Crash dump, password change, the rescue image, a spawn that does not
start the guest and the ports plugged again at nova-compute's start, on
Nova's fake libvirt."""

import fixtures
from nova.compute import power_state
from nova import exception
from nova import objects
from nova import test
from nova.tests.fixtures import libvirt as fakelibvirt
from nova.tests.unit import fake_crypto
from nova.tests.unit import utils as test_utils
from nova.tests.unit.virt import test_virt_drivers
from os_vif import exception as osv_exception

from nova_kvmx import rescue
from tests.unit import test_virt_driver_suite as suite


def libvirt_error(code):
    return fakelibvirt.make_libvirtError(
        fakelibvirt.libvirtError, 'refused', error_code=code)


@suite.only_own_tests
class GuestActionsTest(suite.FakeLibvirtDriverMixin,
                       test_virt_drivers._VirtDriverTestCase, test.TestCase):

    def running(self, **image_properties):
        self.useFixture(fixtures.MockPatch(
            'nova.utils.get_image_from_system_metadata',
            return_value={'properties': image_properties}))
        instance, network_info = self._get_running_instance(obj=True)
        return instance, self.connection._host.get_guest(instance)._domain

    def fail_with(self, method, code):
        return self.useFixture(fixtures.MockPatch(
            'nova.tests.fixtures.libvirt.Domain.' + method,
            side_effect=libvirt_error(code))).mock

    # -- crash dump -------------------------------------------------------

    def test_crash_dump_injects_an_nmi(self):
        instance, _ = self.running()
        nmi = self.useFixture(fixtures.MockPatch(
            'nova.tests.fixtures.libvirt.Domain.injectNMI')).mock
        self.connection.trigger_crash_dump(instance)
        nmi.assert_called_once()

    def test_crash_dump_where_libvirt_cannot_inject(self):
        instance, _ = self.running()
        self.fail_with('injectNMI', fakelibvirt.VIR_ERR_NO_SUPPORT)
        self.assertRaises(exception.TriggerCrashDumpNotSupported,
                          self.connection.trigger_crash_dump, instance)

    def test_crash_dump_of_a_guest_not_running(self):
        instance, _ = self.running()
        self.fail_with('injectNMI', fakelibvirt.VIR_ERR_OPERATION_INVALID)
        self.assertRaises(exception.InstanceNotRunning,
                          self.connection.trigger_crash_dump, instance)

    # -- password ---------------------------------------------------------

    def test_password_of_the_images_admin_user(self):
        instance, _ = self.running(hw_qemu_guest_agent='yes',
                                   os_admin_user='debian')
        agent = self.useFixture(fixtures.MockPatch(
            'nova.tests.fixtures.libvirt.Domain.setUserPassword')).mock
        self.connection.set_admin_password(instance, 's3cret')
        agent.assert_called_once_with('debian', 's3cret', 0)

    def test_password_of_root_by_default(self):
        instance, _ = self.running(hw_qemu_guest_agent='yes')
        agent = self.useFixture(fixtures.MockPatch(
            'nova.tests.fixtures.libvirt.Domain.setUserPassword')).mock
        self.connection.set_admin_password(instance, 's3cret')
        agent.assert_called_once_with('root', 's3cret', 0)

    def test_password_needs_the_agent_in_the_image(self):
        instance, _ = self.running()
        self.assertRaises(exception.QemuGuestAgentNotEnabled,
                          self.connection.set_admin_password, instance, 'x')

    def test_password_with_an_agent_that_does_not_answer(self):
        # Nova's API answers 501, as for Nova's libvirt driver.
        instance, _ = self.running(hw_qemu_guest_agent='yes')
        self.fail_with('setUserPassword',
                       fakelibvirt.VIR_ERR_AGENT_UNRESPONSIVE)
        self.assertRaises(NotImplementedError,
                          self.connection.set_admin_password, instance, 'x')

    def test_password_encrypted_for_the_metadata_service(self):
        instance, _ = self.running(hw_qemu_guest_agent='yes')
        instance.key_data = fake_crypto.get_ssh_public_key()
        self.useFixture(fixtures.MockPatch(
            'nova.objects.Instance.save'))
        self.connection.set_admin_password(instance, 's3cret')
        self.assertIn('password_0', instance.system_metadata)

    # -- spawn without starting, ports at start -----------------------------

    def test_spawn_without_power_on_defines_a_stopped_guest(self):
        instance = test_utils.get_test_instance(obj=True)
        image_meta = test_utils.get_test_image_object(None, instance)
        plugged = self.useFixture(fixtures.MockPatch('os_vif.plug')).mock
        network_info = test_utils.get_test_network_info()
        self.connection.spawn(self.ctxt, instance, image_meta, [], None, {},
                              network_info=network_info, power_on=False)
        self.assertEqual(power_state.SHUTDOWN,
                         self.connection.get_info(instance).state)
        self.assertIn(instance.uuid, self.connection.list_instance_uuids())
        self.assertEqual(1, plugged.call_count)

    def test_ports_plugged_again_at_start(self):
        instance = test_utils.get_test_instance(obj=True)
        plugged = self.useFixture(fixtures.MockPatch('os_vif.plug')).mock
        network_info = test_utils.get_test_network_info(count=2)
        self.connection.plug_vifs(instance, network_info)
        self.assertEqual(
            [vif['id'] for vif in network_info],
            [call.args[0].id for call in plugged.call_args_list])
        self.assertEqual({instance.uuid}, {
            call.args[1].uuid for call in plugged.call_args_list})

    def test_a_port_failing_at_start_leaves_the_others_plugged(self):
        # The guest runs: a port failing must not unplug the ones before.
        instance = test_utils.get_test_instance(obj=True)
        network_info = test_utils.get_test_network_info(count=2)
        self.useFixture(fixtures.MockPatch(
            'os_vif.plug',
            side_effect=[None, osv_exception.ExceptionBase('OVS down')]))
        unplugged = self.useFixture(fixtures.MockPatch('os_vif.unplug')).mock
        self.assertRaises(exception.VirtualInterfacePlugException,
                          self.connection.plug_vifs, instance, network_info)
        unplugged.assert_not_called()


class RescueImageTest(test.NoDBTestCase):
    """Which image a rescue guest boots, in Nova's libvirt driver's
    order."""

    def setUp(self):
        super().setUp()
        self.instance = objects.Instance(image_ref='own-image')

    def test_the_image_asked_for(self):
        self.flags(rescue_image_id='conf-image', group='libvirt')
        asked = '6a3f2c1e-8b4d-4e7a-9c0f-1d2e3f4a5b6c'
        meta = objects.ImageMeta.from_dict({'id': asked})
        self.assertEqual(asked,
                         rescue.rescue_image_id(meta, self.instance))

    def test_else_the_configured_rescue_image(self):
        self.flags(rescue_image_id='conf-image', group='libvirt')
        self.assertEqual('conf-image', rescue.rescue_image_id(
            objects.ImageMeta.from_dict({}), self.instance))

    def test_else_the_instances_own_image(self):
        self.assertEqual('own-image', rescue.rescue_image_id(
            objects.ImageMeta.from_dict({}), self.instance))
