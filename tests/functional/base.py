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
exactly those poisons and nothing else and keeps Nova's real asynchronous
RPC semantics (no cast-as-call). The test starts as root, sets up what a
deployment sets up as root, then runs nova-compute as the ``nova`` user
(AS_NOVA) with Nova's privsep daemon, as a deployment does. Everything
else -- API, conductor, scheduler, Placement, Glance and Neutron fakes,
databases -- is Nova's test harness unchanged (services.py, shared with
the base on Nova's fake libvirt).
"""

import fcntl
import json
import os
import shutil
import signal
import tempfile
import time
from unittest import mock

import fixtures
import libvirt
import libvirt_qemu
from oslo_utils import importutils
from oslo_utils import uuidutils
from nova import test
from nova.tests import fixtures as nova_fixtures
from nova.tests.functional.api import client

from tests.functional import guest_image
from tests.functional import services
from tests.functional import unprivileged

# Poisons of nova.test.TestCase that stand between a test and the host.
LIFTED_POISONS = (
    'ImportModulePoisonFixture',   # the libvirt import
    'SysFsPoisonFixture',          # /sys reads (host CPUs, devices)
    'GenericPoisonFixture',        # os.uname, psutil.net_if_addrs
    'PrivsepNoHelperFixture',      # privsep (we run it in-process)
    'PoisonFunctions',             # the libvirt event loop thread
)

STATE_TIMEOUT = services.STATE_TIMEOUT

# Layouts of this machine's two CPUs for pinned guests, as
# RealLibvirtTestCase.PINNED_HOST: ([compute] cpu_shared_set,
# cpu_dedicated_set).
# CPU 1 for pinned guests, CPU 0 shared: a leaked claim shows as a pinned
# CPU, and the host still runs unpinned guests.
ONE_PINNED_CPU = ('0', '1')
# Both CPUs for pinned guests (a resize or migration needs a second one).
ALL_CPUS_PINNED = (None, '0-1')


def _kill_qemu(domain_name):
    with open('/run/libvirt/qemu/%s.pid' % domain_name) as f:
        os.kill(int(f.read()), signal.SIGKILL)


class _Unpoisoned(fixtures.Fixture):
    def __init__(self, *args, **kwargs):
        super().__init__()


HUGEPAGES_2M = '/sys/kernel/mm/hugepages/hugepages-2048kB'
# The most 2 MiB pages a test's guests hold at once: two 256 MiB guests
# (a server and a blocker on the destination of a move).
PAGES_2M_NEEDED = 256


def _read_2m(name):
    with open(os.path.join(HUGEPAGES_2M, name)) as f:
        return int(f.read())


def available_2m_pages():
    """Free 2 MiB pages not yet promised to a mapping."""
    return _read_2m('free_hugepages') - _read_2m('resv_hugepages')


class HostHugepages(fixtures.Fixture):
    """Exclusive use of the host's huge pages for one test at a time.

    Test workers run in parallel against one host; a test that measures
    the free 2 MiB pages must not see another test's guest take some.
    A lock file held (flock) for the test's duration, waited for with a
    deadline. Once held, the pages the test needs must be free: a guest
    of the previous holder may still be exiting, and a host with too few
    pages fails here, by name, rather than as QEMU's ENOMEM mid-test."""

    def __init__(self, timeout=STATE_TIMEOUT * 3):
        super().__init__()
        self.timeout = timeout

    def _setUp(self):
        path = os.path.join(os.environ.get('KVMX_TEST_DIR', '/var/tmp'),
                            'kvmx-hugepages.lock')
        # Read-only: a test running as nova (AS_NOVA) locks the file too.
        lock = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)
        self.addCleanup(os.close, lock)
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
        while available_2m_pages() < PAGES_2M_NEEDED:
            if time.monotonic() > deadline:
                raise AssertionError(
                    'only %d of the host\'s %d 2 MiB pages are free; the '
                    'test needs %d' % (
                        available_2m_pages(), _read_2m('nr_hugepages'),
                        PAGES_2M_NEEDED))
            time.sleep(0.5)


class RealLibvirtTestCase(services.NovaServicesMixin, test.TestCase):
    """Boots real guests through Nova's API on the local libvirtd."""

    # Tests of a failing start-up start the compute service themselves.
    START_COMPUTE = True
    # A CPU layout (ONE_PINNED_CPU, ALL_CPUS_PINNED) for pinned guests; None
    # leaves Nova's default, every CPU shared.
    PINNED_HOST = None
    # nova-compute runs as the unprivileged nova user, as in a deployment:
    # when the first compute service starts, the test process becomes
    # the user (unprivileged.AsNovaUser), so the rest of the test runs as
    # nova too. A test that must stay root says why where it sets False.
    AS_NOVA = True
    # The privsep contexts nova-compute may use: daemons started as root
    # before the process becomes nova, as a deployment starts them.
    PRIVSEP_CONTEXTS = ('nova.privsep.sys_admin_pctxt',)

    def setUp(self):
        for name in LIFTED_POISONS:
            patcher = mock.patch.object(nova_fixtures, name, _Unpoisoned)
            patcher.start()
            self.addCleanup(patcher.stop)
        super().setUp()
        self.useFixture(nova_fixtures.PrivsepFixture())

        # Not under the per-test TMPDIR: its parents are private (0700) and
        # QEMU runs as another user that must reach the disks.
        workdir = tempfile.mkdtemp(prefix='kvmx-functional-',
                                   dir=os.environ.get('KVMX_TEST_DIR',
                                                      '/var/tmp'))
        os.chmod(workdir, 0o711)
        self.addCleanup(shutil.rmtree, workdir, True)
        if self.AS_NOVA:
            self.nova = unprivileged.ensure_nova_user()
            os.chmod(unprivileged.private_dir(workdir, 'instances',
                                              self.nova), 0o711)
        self.flags(enabled=True, server_listen='127.0.0.1', group='vnc')
        # Tests run in parallel processes, each with its own Nova database,
        # against one libvirtd: domain names must not collide.
        self.domain_prefix = 'kvmxtest-%s-' % uuidutils.generate_uuid()[:8]
        self.flags(instance_name_template=self.domain_prefix + '%08x')
        self.libvirt()
        self.addCleanup(self._remove_leftover_domains)
        self.flags(shutdown_timeout=30)
        self.flags(soft_reboot_timeout=30, group='kvmx')
        self.start_nova(os.path.join(workdir, 'instances'), 'qemu')
        if self.PINNED_HOST:
            shared, dedicated = self.PINNED_HOST
            self.flags(cpu_shared_set=shared, cpu_dedicated_set=dedicated,
                       group='compute')
        if self.START_COMPUTE:
            self.start_compute()

    def start_compute(self):
        self.compute = self.start_service('compute', host=self.compute_host)
        self.driver = self.compute.manager.driver
        return self.compute

    def start_service(self, name, *args, **kwargs):
        if name == 'compute' and self.AS_NOVA:
            self.become_nova()
        return super().start_service(name, *args, **kwargs)

    def become_nova(self):
        """The process becomes the nova user's, once, after starting the
        privsep daemons of PRIVSEP_CONTEXTS."""
        if getattr(self, '_as_nova', False):
            return
        self._as_nova = True
        self.useFixture(unprivileged.PrivsepDaemons(self, *(
            importutils.import_class(name)
            for name in self.PRIVSEP_CONTEXTS)))
        self.useFixture(unprivileged.AsNovaUser(self.nova))

    # -- images -------------------------------------------------------------

    def create_bootable_image(self, **properties):
        """Upload Debian's kernel, a busybox initramfs and a small root disk
        into Glance; return the id of the image servers boot from (with
        ``properties`` besides, e.g. ``hw_firmware_type='uefi'``)."""
        guest = guest_image.get_guest_artifacts()
        kernel_id = self._upload(guest.kernel, 'aki', 'kvmx-kernel')
        ramdisk_id = self._upload(guest.initramfs, 'ari', 'kvmx-initrd')
        return self._upload(guest.root_disk, 'qcow2', 'kvmx-guest',
                            kernel_id=kernel_id, ramdisk_id=ramdisk_id,
                            os_command_line=guest.cmdline, **properties)

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

    def boot_with_every_disk(self):
        """An ACTIVE server with root, ephemeral and swap disks and a
        config drive."""
        flavor_id = self._create_flavor(name='kvmx.disks', vcpu=1,
                                        memory_mb=256, disk=1, ephemeral=1,
                                        swap=64)
        server = self._build_server(
            image_uuid=self.create_bootable_image(), flavor_id=flavor_id,
            networks='none')
        server['config_drive'] = True
        return self.wait_for_status(self.api.post_server(
            {'server': server}), 'ACTIVE')

    def create_pinned_flavor(self, name='kvmx.pinned', page_size=None,
                             extra_specs=None, **kwargs):
        """A flavor of dedicated CPUs (for a PINNED_HOST), its memory in
        ``page_size`` pages ('2MB') if given, with more ``extra_specs``.
        A test booting hugepage guests holds the host's huge pages
        (HostHugepages): its guests would skew another test's count of
        free pages."""
        extra_specs = dict(extra_specs or {}, **{'hw:cpu_policy':
                                                 'dedicated'})
        if page_size:
            self.hold_hugepages()
            extra_specs['hw:mem_page_size'] = page_size
        return self.create_flavor(name=name, extra_specs=extra_specs,
                                  **kwargs)

    def hold_hugepages(self):
        """Hold the host's huge pages (HostHugepages) for the rest of the
        test. Once is enough: a second lock of the file would wait for the
        first."""
        if not getattr(self, '_hugepages_held', False):
            self.useFixture(HostHugepages())
            self._hugepages_held = True

    # -- waits --------------------------------------------------------------

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
            try:
                output = self.console_output(server)
            except client.OpenStackApiNotFoundException:
                # A hard reboot defines the domain again; meanwhile Nova
                # answers 404 for its console, as with its libvirt driver.
                output = ''
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

    def wait_for_task_done(self, server, timeout=STATE_TIMEOUT):
        """Until the server has no task (a snapshot uploaded, ...); the
        server."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            server = self.api.get_server(server['id'])
            if server['OS-EXT-STS:task_state'] is None:
                return server
            time.sleep(0.5)
        self.fail('server %s still busy after %ds' % (server['id'], timeout))

    def freeze_status(self, server):
        """What the guest agent says of its filesystems, through
        libvirt."""
        reply = libvirt_qemu.qemuAgentCommand(
            self.domain(server),
            json.dumps({'execute': 'guest-fsfreeze-status'}), 30, 0)
        return json.loads(reply)['return']

    def console_output(self, server):
        """The serial console output, as a user reads it from the API."""
        return self.api.post_server_action(
            server['id'], {'os-getConsoleOutput': {}})['output']

    def remote_console(self, server, protocol, console_type):
        return self.api.api_post(
            '/servers/%s/remote-consoles' % server['id'],
            {'remote_console': {'protocol': protocol, 'type': console_type}}
        ).body['remote_console']

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
                    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE |
                    libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)

    def kill_qemu(self, server):
        """The server's QEMU dies (SIGKILL), as in a crash; as root, for
        QEMU is another user's."""
        unprivileged.as_root(_kill_qemu,
                             server['OS-EXT-SRV-ATTR:instance_name'])

    def provider(self):
        """This compute node's resource provider in Placement."""
        name = self.driver.get_available_nodes()[0]
        return self.placement.get(
            '/resource_providers?name=%s' % name).body[
                'resource_providers'][0]

    def traits(self):
        """The traits Placement holds for this compute node."""
        return set(self.placement.get(
            '/resource_providers/%s/traits' % self.provider()['uuid'],
            version='1.6').body['traits'])

    def domain(self, server):
        """The libvirt domain of a server, straight from libvirtd."""
        return self.libvirt().lookupByUUIDString(server['id'])

    def domain_exists(self, server):
        return server['id'] in [
            d.UUIDString() for d in self.libvirt().listAllDomains()]

    def instance_dir(self, server):
        return os.path.join(self.instances_path, server['id'])
