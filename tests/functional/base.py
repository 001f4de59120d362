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

"""Nova's in-process services driving nova-kvmx on the real libvirtd.

Nova's own test base keeps tests off the machine they run on: it poisons
the ``libvirt`` import, sysfs reads, ``os.uname``, the privsep helper and
the libvirt event loop. These tests are about the machine, so the base lifts
exactly those poisons and nothing else, runs privsep in-process (the tests
run as root) and keeps Nova's real asynchronous RPC semantics (no
cast-as-call). Everything else -- API, conductor, scheduler, Placement,
Glance and Neutron fakes, databases -- is Nova's test harness unchanged.
"""

import fcntl
import os
import shutil
import sys
import tempfile
import time
from unittest import mock

import fixtures
import libvirt
from oslo_utils import uuidutils
from nova import context as nova_context
import nova.conf
from nova import test
from nova.tests import fixtures as nova_fixtures
from nova.tests.functional import fixtures as func_fixtures
from nova.tests.functional import integrated_helpers

from nova_kvmx import conf as kvmx_conf  # noqa: F401 (registers [kvmx])
from nova_kvmx.host import connection
from tests.functional import guest_image

CONF = nova.conf.CONF

# Poisons of nova.test.TestCase that stand between a test and the host.
LIFTED_POISONS = (
    'ImportModulePoisonFixture',   # the libvirt import
    'SysFsPoisonFixture',          # /sys reads (host CPUs, devices)
    'GenericPoisonFixture',        # os.uname, psutil.net_if_addrs
    'PrivsepNoHelperFixture',      # privsep (we run it in-process)
    'PoisonFunctions',             # the libvirt event loop thread
)

# Seconds a test waits for a real guest to reach a state (TCG is slow and
# CI machines are shared); every wait has a deadline.
STATE_TIMEOUT = 120


class _Unpoisoned(fixtures.Fixture):
    def __init__(self, *args, **kwargs):
        super().__init__()


class HostHugepages(fixtures.Fixture):
    """Exclusive use of the host's huge pages for one test at a time.

    Test workers run in parallel against one host; a test that measures
    the free 2 MiB pages must not see another test's guest take some.
    A lock file held (flock) for the test's duration, waited for with a
    deadline."""

    def __init__(self, timeout=STATE_TIMEOUT * 3):
        super().__init__()
        self.timeout = timeout

    def _setUp(self):
        path = os.path.join(os.environ.get('KVMX_TEST_DIR', '/var/tmp'),
                            'kvmx-hugepages.lock')
        lock = open(path, 'a')
        self.addCleanup(lock.close)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise AssertionError(
                        'huge pages still in use by another test after '
                        '%ds' % self.timeout)
                time.sleep(0.5)
        self.addCleanup(fcntl.flock, lock, fcntl.LOCK_UN)


class GlanceFixture(nova_fixtures.GlanceFixture):
    """Nova's fake Glance, keeping the data of an update as Glance does
    (Nova's fake drops it), so a server can boot from a snapshot."""

    def update(self, context, image_id, metadata, data=None,
               purge_props=False):
        image = super().update(context, image_id, metadata,
                               purge_props=purge_props)
        if data is not None:
            self._imagedata[image_id] = data.read()
            image['size'] = len(self._imagedata[image_id])
        return image


class ClosedLibvirtHosts(fixtures.Fixture):
    """Nova's test services stop in a background thread that may not reach
    the driver's cleanup_host (or never start, when start-up fails) before
    the test's thread pools are torn down, which would wait forever for the
    libvirt Host's event thread. Close every Host the test created (close()
    is idempotent)."""

    def _setUp(self):
        hosts = []
        real_new_host = connection.new_host

        def new_host(*args, **kwargs):
            hosts.append(real_new_host(*args, **kwargs))
            return hosts[-1]

        self.useFixture(fixtures.MonkeyPatch(
            'nova_kvmx.host.connection.new_host', new_host))
        self.addCleanup(lambda: [host.close() for host in hosts])


class RealLibvirtTestCase(integrated_helpers.InstanceHelperMixin,
                          test.TestCase):
    """Boots real guests through Nova's API on the local libvirtd."""

    compute_host = 'compute1'
    # Tests of a failing start-up start the compute service themselves.
    START_COMPUTE = True

    def setUp(self):
        for name in LIFTED_POISONS:
            patcher = mock.patch.object(nova_fixtures, name, _Unpoisoned)
            patcher.start()
            self.addCleanup(patcher.stop)
        super().setUp()
        self.useFixture(nova_fixtures.PrivsepFixture())
        self._close_libvirt_hosts_at_cleanup()

        # Not under the per-test TMPDIR: its parents are private (0700) and
        # QEMU runs as another user that must reach the disks.
        workdir = tempfile.mkdtemp(prefix='kvmx-functional-',
                                   dir=os.environ.get('KVMX_TEST_DIR',
                                                      '/var/tmp'))
        os.chmod(workdir, 0o711)
        self.addCleanup(shutil.rmtree, workdir, True)
        self.instances_path = os.path.join(workdir, 'instances')
        self.flags(compute_driver='kvmx.KVMXDriver',
                   instances_path=self.instances_path)
        self.flags(virt_type='qemu', group='kvmx')
        self.flags(enabled=True, server_listen='127.0.0.1', group='vnc')
        self.flags(api_paste_config=os.path.join(
            sys.prefix, 'etc', 'nova', 'api-paste.ini'), group='wsgi')
        # Tests run in parallel processes, each with its own Nova database,
        # against one libvirtd: domain names must not collide.
        self.domain_prefix = 'kvmxtest-%s-' % uuidutils.generate_uuid()[:8]
        self.flags(instance_name_template=self.domain_prefix + '%08x')
        self.libvirt()
        self.addCleanup(self._remove_leftover_domains)
        # One host: a failed build must show its own fault, not a retry.
        self.flags(max_attempts=1, group='scheduler')
        # An RPC call still waiting when a failed test stops the services
        # would keep its worker thread, and so the test process, alive for
        # long_rpc_timeout (30 minutes by default).
        self.flags(long_rpc_timeout=120, rpc_response_timeout=60)
        self.flags(shutdown_timeout=30)
        self.flags(soft_reboot_timeout=30, group='kvmx')

        self.glance = self.useFixture(GlanceFixture(self))
        self.neutron = self.useFixture(nova_fixtures.NeutronFixture(self))
        self.placement = self.useFixture(func_fixtures.PlacementFixture()).api
        self.api_fixture = self.useFixture(
            nova_fixtures.OSAPIFixture(api_version='v2.1'))
        self.api = self.admin_api = self.api_fixture.admin_api
        self.api.microversion = 'latest'

        # The scheduler filters an NFV deployment enables.
        self.flags(enabled_filters=CONF.filter_scheduler.enabled_filters +
                   ['NUMATopologyFilter'], group='filter_scheduler')
        self.start_service('conductor')
        self.start_service('scheduler')
        self.ctxt = nova_context.get_admin_context()
        if self.START_COMPUTE:
            self.start_compute()

    def start_compute(self):
        self.compute = self.start_service('compute', host=self.compute_host)
        self.driver = self.compute.manager.driver
        return self.compute

    def _close_libvirt_hosts_at_cleanup(self):
        self.useFixture(ClosedLibvirtHosts())

    # -- images -------------------------------------------------------------

    def create_bootable_image(self):
        """Upload Debian's kernel, a busybox initramfs and a small root disk
        into Glance; return the id of the image servers boot from."""
        guest = guest_image.get_guest_artifacts()
        kernel_id = self._upload(guest.kernel, 'aki', 'kvmx-kernel')
        ramdisk_id = self._upload(guest.initramfs, 'ari', 'kvmx-initrd')
        return self._upload(guest.root_disk, 'qcow2', 'kvmx-guest',
                            kernel_id=kernel_id, ramdisk_id=ramdisk_id,
                            os_command_line=guest.cmdline)

    def _upload(self, path, disk_format, name, **properties):
        meta = {
            'name': name, 'status': 'active', 'visibility': 'public',
            'disk_format': disk_format,
            'container_format': disk_format if disk_format in (
                'aki', 'ari', 'ami') else 'bare',
            'min_ram': 0, 'min_disk': 0, 'size': os.path.getsize(path),
            'properties': properties,
        }
        with open(path, 'rb') as data:
            return self.glance.create(self.ctxt, meta, data=data)['id']

    def create_flavor(self, name='kvmx.tiny', vcpus=1, ram=256, disk=1,
                      extra_specs=None):
        return self._create_flavor(name=name, vcpu=vcpus, memory_mb=ram,
                                   disk=disk, ephemeral=0,
                                   extra_spec=extra_specs)

    # -- waits --------------------------------------------------------------

    def wait_for_status(self, server, status, timeout=STATE_TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            server = self.api.get_server(server['id'])
            if server['status'] == status and (
                    status != 'ERROR' or 'fault' in server):
                return server
            if server['status'] == 'ERROR' and 'fault' in server:
                self.fail('Server %s is ERROR, expected %s: %s' % (
                    server['id'], status, server['fault']))
            if time.monotonic() > deadline:
                self.fail('Server %s is %s (task %s) after %ds, expected %s'
                          % (server['id'], server['status'],
                             server.get('OS-EXT-STS:task_state'), timeout,
                             status))
            time.sleep(0.5)

    def _wait_for_state_change(self, server, expected_status,
                               max_retries=None, wait_for_fault_key=True):
        """Nova's helper (used by _create_server and others) gives a server
        about 5 s to change state; a real guest under TCG on a loaded host
        can take longer, so it gets this base's deadline instead."""
        return self.wait_for_status(server, expected_status)

    def wait_for_console(self, server, text, count=1,
                         timeout=STATE_TIMEOUT):
        """Wait until ``text`` appears ``count`` times in the console output
        the API returns; return that output."""
        deadline = time.monotonic() + timeout
        while True:
            output = self.console_output(server)
            if output.count(text) >= count:
                return output
            if time.monotonic() > deadline:
                self.fail('%r seen %d times (wanted %d) in the console of '
                          '%s after %ds:\n%s' % (
                              text, output.count(text), count, server['id'],
                              timeout, output[-2000:]))
            time.sleep(0.5)

    def boot_and_expect_error(self, image_id, flavor_id, networks='none'):
        """Boot a server that must fail; check it left nothing behind (no
        domain, no instance directory, no partial image in the cache) and
        return the fault message the user sees."""
        server = self._create_server(
            image_uuid=image_id, flavor_id=flavor_id, networks=networks,
            expected_state='BUILD')
        server = self.wait_for_status(server, 'ERROR')
        self.assertFalse(self.domain_exists(server))
        self.assertFalse(os.path.exists(self.instance_dir(server)))
        cache = os.path.join(self.instances_path, '_base')
        leftovers = [f for f in os.listdir(cache)
                     if f.endswith(('.part', '.converted'))] \
            if os.path.isdir(cache) else []
        self.assertEqual([], leftovers)
        return server['fault']['message']

    def console_output(self, server):
        """The serial console output, as a user reads it from the API."""
        return self.api.post_server_action(
            server['id'], {'os-getConsoleOutput': {}})['output']

    def remote_console(self, server, protocol, console_type):
        return self.api.api_post(
            '/servers/%s/remote-consoles' % server['id'],
            {'remote_console': {'protocol': protocol, 'type': console_type}}
        ).body['remote_console']

    def wait_until_deleted(self, server, timeout=STATE_TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.api.get_server(server['id'])
            except Exception as ex:
                if getattr(ex, 'response', None) is not None and \
                        ex.response.status_code == 404:
                    return
                raise
            time.sleep(0.5)
        self.fail('Server %s not deleted after %ds' % (server['id'],
                                                       timeout))

    # -- libvirt's view -----------------------------------------------------

    def libvirt(self):
        """A connection of the test's own to libvirtd, to check what the
        driver did independently of the driver's connection."""
        if getattr(self, '_libvirt_conn', None) is None:
            self._libvirt_conn = libvirt.open('qemu:///system')
            self.addCleanup(self._libvirt_conn.close)
        return self._libvirt_conn

    def _remove_leftover_domains(self):
        """A failed test must not leave its guests running: they would eat
        the CPU the next tests need. Only this test's domains are touched."""
        for dom in self.libvirt().listAllDomains():
            if dom.name().startswith(self.domain_prefix):
                if dom.isActive():
                    dom.destroy()
                dom.undefineFlags(
                    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE)

    def domain(self, server):
        """The libvirt domain of a server, straight from libvirtd."""
        return self.libvirt().lookupByUUIDString(server['id'])

    def domain_exists(self, server):
        return server['id'] in [
            d.UUIDString() for d in self.libvirt().listAllDomains()]

    def instance_dir(self, server):
        return os.path.join(self.instances_path, server['id'])
