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

"""Faults under a running nova-compute, on the real libvirtd.

libvirtd goes away and comes back (a relay to its socket is cut and
restored, see libvirt_proxy); nova-compute restarts with guests running;
a spawn fails at each of its steps, with only that step made to fail; a
delete is interrupted and retried. Guests, the compute service, Placement
and the host are checked the way an operator would. (A QEMU process
killed under a running guest: test_lifecycle.LifecycleEventTest.)
"""

import errno
import os
import subprocess
import time
from unittest import mock

import fixtures
import libvirt
from nova.compute import power_state
from nova import exception as nova_exception
from nova import objects
from nova.tests import fixtures as nova_fixtures
from nova.tests.fixtures import libvirt as fakelibvirt
from nova.virt.libvirt import guest as libvirt_guest
from oslo_concurrency import processutils

from nova_kvmx import storage

from tests.functional import base
from tests.functional import leftovers
from tests.functional import libvirt_proxy
from tests.functional import unprivileged

# Seconds to wait for an asynchronous reaction (a libvirt event, the
# service status); every wait has this deadline.
EVENT_TIMEOUT = 60


def libvirt_error(message, code=libvirt.VIR_ERR_INTERNAL_ERROR):
    """A libvirtError as libvirt raises it (with its error tuple)."""
    return fakelibvirt.make_libvirtError(
        libvirt.libvirtError, message, error_code=code,
        error_domain=libvirt.VIR_FROM_QEMU, error_message=message)


def disk_full(cmd, output_arg):
    """A step that writes part of its output file (its ``output_arg``th
    argument), then fails as ``cmd`` does on a full disk."""
    def step(*args, **kwargs):
        with open(args[output_arg], 'wb') as f:
            f.write(b'\0' * 65536)
        raise processutils.ProcessExecutionError(
            cmd=cmd, exit_code=1, stderr='No space left on device')
    return step


class FaultTestCase(leftovers.LeftoversMixin, base.RealLibvirtTestCase):

    def boot(self, flavor_id=None, expected='ACTIVE', **request):
        if flavor_id is None:
            if not hasattr(self, 'tiny_flavor'):
                self.tiny_flavor = self.create_flavor()
            flavor_id = self.tiny_flavor
        server = self._build_server(
            image_uuid=self.create_bootable_image(), flavor_id=flavor_id,
            networks='none')
        server.update(request)
        return self.wait_for_status(
            self.api.post_server({'server': server}), expected)

    def wait_until(self, what, check, timeout=EVENT_TIMEOUT):
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                self.fail('%s: not after %ds' % (what, timeout))
            time.sleep(0.5)

    def qemu_pid(self, server):
        with open('/run/libvirt/qemu/%s.pid' %
                  server['OS-EXT-SRV-ATTR:instance_name']) as f:
            return int(f.read())

    def power_state(self, server):
        return self.api.get_server(server['id'])['OS-EXT-STS:power_state']

    def assert_events_reach_nova(self, server):
        """Pause and resume the guest behind Nova's back (the test's own
        connection): Nova's power state follows only through the driver's
        lifecycle events (the power-state sync period is off)."""
        dom = self.domain(server)
        dom.suspend()
        self.wait_until('PAUSED reaches Nova', lambda: self.power_state(
            server) == power_state.PAUSED)
        dom.resume()
        self.wait_until('RUNNING reaches Nova', lambda: self.power_state(
            server) == power_state.RUNNING)

    def service(self):
        return self.api.get_services(host=self.compute_host,
                                     binary='nova-compute')[0]

    def provider_traits(self):
        rp_uuid = objects.ComputeNodeList.get_all_by_host(
            self.ctxt, self.compute_host)[0].uuid
        return self.placement.get('/resource_providers/%s/traits' % rp_uuid,
                                  version='1.6').body['traits']

    def log_count(self, text):
        return self.stdlog.logger.output.count(text)

    def run_update_available_resource(self):
        """The periodic task as Nova runs it: it must not raise."""
        self.compute.manager.update_available_resource(self.ctxt)


class LibvirtLossTest(FaultTestCase):
    """libvirtd lost and back under a running nova-compute."""

    START_COMPUTE = False

    def setUp(self):
        super().setUp()
        self.proxy = self.useFixture(libvirt_proxy.LibvirtSocketProxy())
        self.flags(connection_uri=self.proxy.uri, group='kvmx')
        self.start_compute()

    def assert_service_disabled_while_libvirt_is_away(self):
        self.wait_until('the service is disabled', lambda: self.service()[
            'status'] == 'disabled')
        self.assertTrue(self.service()['disabled_reason'].startswith(
            'AUTO: Connection to libvirt lost'))
        # The trait follows the service record, from libvirt's thread.
        self.wait_until('the trait is set', lambda: (
            'COMPUTE_STATUS_DISABLED' in self.provider_traits()))

    def assert_service_enabled_again(self):
        self.wait_until('the service is enabled', lambda: self.service()[
            'status'] == 'enabled')
        self.assertIsNone(self.service()['disabled_reason'])
        self.wait_until('the trait is gone', lambda: (
            'COMPUTE_STATUS_DISABLED' not in self.provider_traits()))

    def test_running_guest_untouched_while_libvirtd_is_away(self):
        self.scenario('libvirtd lost and back with a guest running')
        server = self.boot()
        xml, pid = self.domain(server).XMLDesc(0), self.qemu_pid(server)

        self.proxy.cut()
        self.assert_service_disabled_while_libvirt_is_away()
        # No build comes here meanwhile.
        refused = self.boot(expected='ERROR')
        self.assertIn('No valid host', refused['fault']['message'])
        self._delete_server(refused)
        # Nova's periodic tasks skip their run, saying why.
        self.run_update_available_resource()
        self.assertIn('Virt driver is not ready', self.stdlog.logger.output)
        self.compute.manager._sync_power_states(self.ctxt)
        self.assertIn('Skipping _sync_power_states periodic task due to: '
                      'Cannot connect to libvirt', self.stdlog.logger.output)
        self.compute.manager._cleanup_running_deleted_instances(self.ctxt)
        server = self.api.get_server(server['id'])
        self.assertEqual(('ACTIVE', power_state.RUNNING), (
            server['status'], server['OS-EXT-STS:power_state']))

        self.proxy.restore()
        self.run_update_available_resource()   # reconnects
        self.assert_service_enabled_again()
        # The guest ran on, unchanged, and the driver has its events again.
        self.assertEqual((xml, pid), (self.domain(server).XMLDesc(0),
                                      self.qemu_pid(server)))
        self.assert_events_reach_nova(server)
        self._delete_server(server)
        self.assert_nothing_left(server)

    def test_libvirtd_lost_during_the_periodic_task(self):
        self.scenario('libvirtd lost during update_available_resource')
        real = self.driver.get_available_resource

        def lost_midway(nodename):
            # The task has the node's resources; libvirtd goes away before
            # it reports the provider tree.
            resources = real(nodename)
            self.proxy.cut()
            return resources

        error = 'Error updating resources for node'
        errors = self.log_count(error)
        with mock.patch.object(self.driver, 'get_available_resource',
                               side_effect=lost_midway):
            self.run_update_available_resource()
        self.assertEqual(errors + 1, self.log_count(error))
        self.assert_service_disabled_while_libvirt_is_away()

        self.proxy.restore()
        self.run_update_available_resource()
        self.assertEqual(errors + 1, self.log_count(error))
        self.assert_service_enabled_again()

    def test_operator_disable_outlives_libvirtd_loss(self):
        self.scenario('libvirtd lost and back on an operator-disabled host')
        self.api.put_service(self.service()['id'], {
            'status': 'disabled', 'disabled_reason': 'maintenance'})
        lost, restored = (self.log_count('libvirt connection lost'),
                          self.log_count('libvirt connection restored'))
        self.proxy.cut()
        self.wait_until('the loss is seen', lambda: self.log_count(
            'libvirt connection lost') > lost)
        self.proxy.restore()
        self.run_update_available_resource()
        self.wait_until('the return is seen', lambda: self.log_count(
            'libvirt connection restored') > restored)
        self.assertEqual(('disabled', 'maintenance'), (
            self.service()['status'], self.service()['disabled_reason']))


class PinnedHostTestCase(FaultTestCase):
    """This machine's CPU 1 for pinned guests, so that a leaked claim
    shows as a pinned CPU."""

    PINNED_HOST = base.ONE_PINNED_CPU

    def setUp(self):
        super().setUp()
        self.pinned_flavor = self.create_pinned_flavor()


class ComputeRestartTest(PinnedHostTestCase):

    def test_restart_adopts_running_guests_unchanged(self):
        self.scenario('nova-compute restarted with a pinned guest running')
        server = self.boot(self.pinned_flavor)
        dom = self.domain(server)
        before = (dom.XMLDesc(0), self.qemu_pid(server), dom.ID(),
                  dom.vcpuPinInfo(0), self.pinned_cpus(),
                  self.placement.get('/allocations/%s' % server['id']).body)

        self.compute = self.restart_compute_service(
            self.compute, keep_hypervisor_state=False)
        self.driver = self.compute.manager.driver
        self.run_update_available_resource()

        dom = self.domain(server)
        self.assertEqual(before, (
            dom.XMLDesc(0), self.qemu_pid(server), dom.ID(),
            dom.vcpuPinInfo(0), self.pinned_cpus(),
            self.placement.get('/allocations/%s' % server['id']).body))
        self.assertEqual([{1}], self.pinned_cpus())
        server = self.api.get_server(server['id'])
        self.assertEqual(('ACTIVE', power_state.RUNNING), (
            server['status'], server['OS-EXT-STS:power_state']))
        # The new driver has the guest's events and deletes it.
        self.assert_events_reach_nova(server)
        self._delete_server(server)
        self.assert_nothing_left(server)


class SpawnFailureTest(PinnedHostTestCase):
    """A spawn that fails at any step leaves nothing but the image cache,
    and Nova frees the claim: the server is ERROR with the step's error,
    no allocation in Placement, no CPU pinned."""

    def fail_spawn(self, fault, port_ids=(), **request):
        self.scenario('spawn fails: %s' % self.id().rsplit('_at_', 1)[1])
        server = self.boot(self.pinned_flavor, expected='ERROR', **request)
        self.assertIn(fault, server['fault']['message'])
        self.assert_nothing_left(server, port_ids)

    def test_fails_at_image_download(self):
        real = self.glance.download

        def half_then_reset(context, image_id, dst_path=None, **kwargs):
            real(context, image_id, dst_path=dst_path, **kwargs)
            os.truncate(dst_path, os.path.getsize(dst_path) // 2)
            raise ConnectionResetError(errno.ECONNRESET,
                                       'Connection reset by peer')

        self.useFixture(fixtures.MockPatchObject(
            self.glance, 'download', side_effect=half_then_reset))
        self.fail_spawn('Connection reset by peer')

    def test_fails_at_image_cache(self):
        self.useFixture(fixtures.MockPatch(
            'nova.virt.images.convert_image',
            side_effect=disk_full('qemu-img convert', 1)))
        self.fail_spawn('No space left on device')

    def test_fails_at_overlay_create(self):
        real = storage.create_overlay

        def created_then_full(base, path, root_gb, *args):
            real(base, path, root_gb, *args)
            raise processutils.ProcessExecutionError(
                cmd='qemu-img create', exit_code=1,
                stderr='No space left on device')

        self.useFixture(fixtures.MockPatch(
            'nova_kvmx.storage.create_overlay',
            side_effect=created_then_full))
        self.fail_spawn('No space left on device')

    def test_fails_at_config_drive(self):
        self.useFixture(fixtures.MockPatch(
            'nova_kvmx.storage.make_config_drive',
            side_effect=disk_full('genisoimage', 2)))
        self.fail_spawn('No space left on device', config_drive=True)

    def test_fails_at_port_plug(self):
        # Nothing patched: os-vif cannot plug an OVS port here (no OVS).
        port = nova_fixtures.NeutronFixture.port_1['id']
        self.fail_spawn('Could not plug port %s' % port, port_ids=[port],
                        networks=[{'port': port}])

    def test_fails_at_define(self):
        self.useFixture(fixtures.MockPatch(
            'nova.virt.libvirt.guest.Guest.create', side_effect=libvirt_error(
                'XML error: refused', libvirt.VIR_ERR_XML_ERROR)))
        self.fail_spawn('did not start: XML error: refused')

    def test_fails_at_start(self):
        self.useFixture(fixtures.MockPatch(
            'nova.virt.libvirt.guest.Guest.launch', side_effect=libvirt_error(
                'cannot allocate memory')))
        self.fail_spawn('did not start: cannot allocate memory')

    def test_fails_at_wait_for_boot(self):
        # QEMU really starts; the guest is not RUNNING in time.
        self.useFixture(fixtures.MockPatch(
            'nova_kvmx.lifecycle.GuestLifecycle.wait_for_power_state',
            side_effect=nova_exception.InternalError(
                'Guest is paused after 60 seconds, expected running')))
        self.fail_spawn('expected running')


class InterruptedDeleteTest(FaultTestCase):

    def test_undefine_fails_then_delete_retried(self):
        self.scenario('delete fails while undefining, then retried')
        server = self.boot()
        real = libvirt_guest.Guest.delete_configuration
        calls = []

        def fails_once(guest, *args, **kwargs):
            calls.append(guest)
            if len(calls) == 1:
                raise libvirt_error('cannot remove config: I/O error')
            return real(guest, *args, **kwargs)

        self.useFixture(fixtures.MonkeyPatch(
            'nova.virt.libvirt.guest.Guest.delete_configuration',
            fails_once))
        self.api.delete_server(server['id'])
        server = self.wait_for_status(server, 'ERROR')
        self.assertEqual('Failed to terminate instance: cannot remove '
                         'config: I/O error', server['fault']['message'])

        self._delete_server(server)
        self.assertEqual(2, len(calls))
        self.assert_nothing_left(server)

    def test_files_left_by_a_delete_are_removed_later(self):
        self.scenario('instance files undeletable during delete, '
                      'removed by the pending deletes task')
        server = self.boot()
        inst_dir = self.instance_dir(server)
        # The directory cannot lose its files (a busy or broken disk).
        # chattr is root's (CAP_LINUX_IMMUTABLE).
        unprivileged.as_root(subprocess.run, ['chattr', '+i', inst_dir],
                             check=True, timeout=30)
        self.addCleanup(unprivileged.as_root, subprocess.run,
                        ['chattr', '-i', inst_dir], timeout=30)
        self._delete_server(server)
        self.assertTrue(os.path.exists(inst_dir))
        self.assertIn('Could not remove the files of the instance',
                      self.stdlog.logger.output)

        unprivileged.as_root(subprocess.run, ['chattr', '-i', inst_dir],
                             check=True, timeout=30)
        # Nova's periodic task retries what a driver could not remove.
        self.compute.manager._run_pending_deletes(self.ctxt)
        self.assert_nothing_left(server)
