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

"""Nova's generic virt driver suite against our driver.

``_VirtDriverTestCase`` (nova/tests/unit/virt/test_virt_drivers.py) is
the suite every in-tree driver runs, on Nova's fake libvirt here as for
Nova's LibvirtConnTestCase. Its ``catch_notimplementederror`` decorator
counts a ``NotImplementedError`` as a pass; this case runs each test
unwrapped, so a method left to the base class fails. Tests that cannot
apply are skipped with the reason Nova's stock libvirt case gives, or say
what private detail of Nova's libvirt driver they assert.
"""

import unittest

import fixtures
from nova import test
from nova.tests import fixtures as nova_fixtures
from nova.tests.fixtures import libvirt as fakelibvirt
from nova.tests.unit.virt import test_virt_drivers

from nova_kvmx.host import iommu

# Our modules that catch libvirt's errors, as LibvirtFixture points
# Nova's libvirt modules at the fake.
LIBVIRT_USERS = ('nova_kvmx.lifecycle', 'nova_kvmx.diagnostics',
                 'nova_kvmx.guest_actions',
                 'nova_kvmx.vif',
                 'nova_kvmx.host.devices')


# Methods Nova's libvirt driver leaves to the base class too: its
# LibvirtConnTestCase passes these tests only through
# catch_notimplementederror.
NOT_IN_NOVAS_LIBVIRT_DRIVER = {
    'test_get_mks_console': 'get_mks_console',
    'test_host_power_action_reboot': 'host_power_action',
    'test_host_power_action_shutdown': 'host_power_action',
    'test_host_power_action_startup': 'host_power_action',
    'test_set_host_enabled': 'set_host_enabled',
    'test_soft_delete': 'soft_delete',
    'test_restore_running': 'restore',
    'test_restore_soft_deleted': 'restore',
}

# What issue 17 still has to implement: each runs, and must fail until it
# is done (an unexpected success fails the run, so the entry goes when
# the method arrives).
NOT_YET = {
    # Our volume checks refuse a volume id that is not a UUID
    # ('fake_serial' here).
    'test_attach_detach_volume', 'test_attach_detach_different_power_states',
    'test_swap_volume',
}


def only_own_tests(cls):
    """A case on the suite's fixtures that runs only its own tests, not
    the suite's again."""
    for name in vars(test_virt_drivers._VirtDriverTestCase):
        if name.startswith('test_') and name not in vars(cls):
            setattr(cls, name, None)
    return cls


def _skip(reason):
    def test(self):
        self.skipTest(reason)
    return test


def _without_catching_notimplemented(cls):
    """Each test of Nova's suite as written, without the decorator that
    turns a NotImplementedError into a pass."""
    base = test_virt_drivers._VirtDriverTestCase
    for name, member in vars(base).items():
        if name.startswith('test_') and hasattr(member, '__wrapped__'):
            if name in vars(cls):
                continue
            if name in NOT_IN_NOVAS_LIBVIRT_DRIVER:
                setattr(cls, name, _skip(
                    "Nova's libvirt driver does not implement %s either"
                    % NOT_IN_NOVAS_LIBVIRT_DRIVER[name]))
            elif name in NOT_YET:
                setattr(cls, name, unittest.expectedFailure(
                    member.__wrapped__))
            else:
                setattr(cls, name, member.__wrapped__)
    return cls


class FakeLibvirtDriverMixin(object):
    """Our driver on Nova's fake libvirt, set up as Nova's
    LibvirtConnTestCase sets up its own (with _VirtDriverTestCase).
    """

    REQUIRES_LOCKING = True

    def setUp(self):
        self.driver_module = 'nova_kvmx.driver.KVMXDriver'
        # As Nova's LibvirtConnTestCase.
        super().setUp()
        for module in LIBVIRT_USERS:
            self.useFixture(fixtures.MonkeyPatch(module + '.libvirt',
                                                 fakelibvirt))
        self.stub_out('nova.context.get_admin_context', lambda: self.ctxt)
        self.useFixture(nova_fixtures.SpawnIsSynchronousFixture())
        self.useFixture(nova_fixtures.CGroupsFixture())
        self.stub_out('os_vif.unplug', lambda a, kw: None)
        self.stub_out('os_vif.plug', lambda a, kw: None)
        self.stub_out('nova.compute.utils.get_machine_ips', lambda: [])
        self.stub_out('nova.privsep.path.chown', lambda *a, **k: None)
        self.useFixture(fixtures.MockPatch(
            'nova_kvmx.host.iommu.read_facts',
            return_value=iommu.PassthroughFacts(
                iommu_groups=64, vfio_pci=iommu.VFIO_LOADED)))
        # Nova's fake libvirt ignores VIR_DOMAIN_START_PAUSED; our spawn
        # starts paused until Neutron reports the ports plugged.
        real_create = fakelibvirt.Domain.createWithFlags

        def create_with_flags(domain, flags):
            real_create(domain, flags)
            if flags & fakelibvirt.VIR_DOMAIN_START_PAUSED:
                domain.suspend()

        self.stub_out('nova.tests.fixtures.libvirt.Domain.createWithFlags',
                      create_with_flags)
        self.flags(virt_type='kvm', group='kvmx')
        # The suite names rescue image '2', which only Nova's faked image
        # backend has; our image cache really fetches from the Glance
        # fixture, so the rescue uses the instance's own image (Nova's
        # fallback after [libvirt] rescue_image_id).
        self.flags(rescue_image_id=None, group='libvirt')
        self.connection.init_host('myhostname')


@_without_catching_notimplemented
class KVMXDriverSuiteTest(FakeLibvirtDriverMixin,
                          test_virt_drivers._VirtDriverTestCase,
                          test.TestCase):

    def test_set_admin_password(self):
        # As Nova's LibvirtConnTestCase: an image with the guest agent.
        self.useFixture(fixtures.MockPatch(
            'nova.utils.get_image_from_system_metadata',
            return_value={'properties': {'hw_qemu_guest_agent': 'yes'}}))
        instance, _ = self._get_running_instance(obj=True)
        self.connection.set_admin_password(instance, 'p4ssw0rd')

    def test_live_migration_force_complete(self):
        self.skipTest("Asserts Nova's libvirt driver's private "
                      "active_migrations attribute")

    def test_live_migration_abort(self):
        self.skipTest("Asserts that aborting with no migration running "
                      "succeeds, as Nova's libvirt driver calls abortJob "
                      "regardless; ours answers NoActiveMigrationForInstance")

    def test_get_vnc_console(self):
        self.skipTest("Nova's fake libvirt keeps no <graphics> of the "
                      "domain XML, so no VNC port is there to find")

    def test_snapshot_running(self):
        self.skipTest("Nova's fake libvirt keeps no <backingStore> of a "
                      "running disk, where a live snapshot finds its base "
                      "(QEMU's user holds the disk file); "
                      "tests/functional/test_snapshot.py snapshots live")

    def test_get_spice_console(self):
        self.skipTest("Nova's fake libvirt gives its domains SPICE port -1 "
                      "(none allocated), for which ours answers "
                      "ConsoleTypeUnavailable, as for VNC")

    def test_migrate_disk_and_power_off(self):
        self.skipTest("Test nothing, but this method"
                      " needed to override superclass.")
