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

"""A pinned, hugepage-backed guest across libvirtd restarts: suspended
(managed save) while libvirtd restarts, then resumed; and a host reboot
that nova-compute brings the guest back from.

libvirtd really stops and starts again, so the guest is restored by a
libvirtd that read its domain and its managed-save image back from disk.
The machine's own libvirtd serves every other test worker, which would
lose its connection, its events and its calls in flight, so the compute
service here runs on a private libvirtd instead: the same binaries and
QEMU, in namespaces of its own (second_libvirtd.SecondLibvirtd, as the live
migration tests use), restarted in those namespaces.

Each time, the running domain must still be the claim Nova stored
(instance.numa_topology): the vCPU pins in the XML and on the vCPU
threads, the guest cell's host node and its 2 MiB pages, which the host's
free pages show.
"""

import glob
import os
import signal
import subprocess

import libvirt
from lxml import etree
from nova.virt import hardware

from tests.functional import base
from tests.functional import guest_image
from tests.functional import second_libvirtd
from tests.functional import test_faults
from tests.functional import unprivileged

# The guest's memory (256 MiB) in 2 MiB pages.
GUEST_PAGES = 128


def _read(path):
    with open(path) as f:
        return f.read()


class RestartableLibvirtd(second_libvirtd.SecondLibvirtd):
    """A private libvirtd that can be stopped and started again."""

    def stop_daemon(self):
        """libvirtd exits (SIGTERM, as an upgrade or a crash would stop
        it); QEMU guests run on without it."""
        unprivileged.as_root(os.kill, self.process.pid, signal.SIGTERM)
        self.process.wait(second_libvirtd.STOP_TIMEOUT)

    def start_daemon(self):
        """libvirtd starts again in the namespaces it had, entered through
        its virtlogd (which stays), and finds its guests from its state
        and configuration directories."""
        virtlogd = unprivileged.as_root(_read, os.path.join(
            self.root, 'run-libvirt', 'virtlogd.pid')).strip()
        # Root's, as it was: the test may run as nova (AS_NOVA).
        self.process = subprocess.Popen(
            ['nsenter', '--target', virtlogd, '--mount', '--uts', '--',
             'libvirtd', '--listen', '-p', '/run/libvirt/libvirtd.pid'],
            stdout=self.log, stderr=subprocess.STDOUT,
            preexec_fn=unprivileged.regain_root)
        self._wait_until_up()

    def managed_save_images(self, server):
        """The managed-save image files of a server's domain (libvirt
        keeps them under /var/lib/libvirt/qemu/save, a private mount)."""
        return unprivileged.as_root(glob.glob, os.path.join(
            self.root, '**', server['OS-EXT-SRV-ATTR:instance_name'] +
            '.save'), recursive=True)


class HostRestartTestCase(test_faults.FaultTestCase):

    PINNED_HOST = base.ONE_PINNED_CPU
    START_COMPUTE = False
    libvirtd = None         # the private libvirtd, while it runs
    _private_conn = None

    def setUp(self):
        super().setUp()
        # Cleanups run last first: the huge pages are held, and libvirt()
        # is the private libvirtd, until it has stopped with its guests.
        self.hold_hugepages()
        self.addCleanup(setattr, self, 'libvirtd', None)
        self.libvirtd = self.useFixture(RestartableLibvirtd(
            os.path.dirname(self.instances_path),
            hostname='kvmx-' + self.domain_prefix.strip('-'),
            group='libvirt' if self.AS_NOVA else None))
        self.flags(connection_uri=self.libvirtd.uri, group='kvmx')
        self.start_compute()
        self.flavor_id = self.create_pinned_flavor(
            name='kvmx.pinned.2m', ram=256, page_size='2MB')
        self.free_pages = base.available_2m_pages()

    def libvirt(self):
        """The test's own connection to the libvirtd under test: the
        private one while it runs."""
        if self.libvirtd is None:
            return super().libvirt()
        if self._private_conn is None:
            self._private_conn = libvirt.open(self.libvirtd.uri)
            self.addCleanup(self._private_conn.close)
        return self._private_conn

    def restart_libvirtd(self):
        self.libvirtd.stop_daemon()
        self.libvirtd.start_daemon()
        self._private_conn = None

    def boot_pinned(self):
        server = self.boot(self.flavor_id)
        self.wait_for_console(server, guest_image.BOOT_MARKER_PREFIX)
        return server

    def assert_runs_as_claimed(self, server):
        """The running domain realises the claim Nova stored, and its
        memory is the host's huge pages."""
        claim = self.claim(server)
        dom = self.domain(server)
        self.assertTrue(dom.isActive())
        xml = etree.fromstring(dom.XMLDesc(0))
        pins = {vcpu: pcpu for cell in claim.cells
                for vcpu, pcpu in cell.cpu_pinning.items()}
        self.assertEqual({0: 1}, pins)
        self.assertEqual(
            {str(vcpu): str(pcpu) for vcpu, pcpu in pins.items()},
            {pin.get('vcpu'): pin.get('cpuset')
             for pin in xml.findall('cputune/vcpupin')})
        self.assertEqual(hardware.format_cpu_spec(set(pins.values())),
                         xml.find('cputune/emulatorpin').get('cpuset'))
        # The vCPU threads themselves run on the claimed CPUs only.
        cpumaps = dom.vcpus()[1]
        self.assertEqual(
            {vcpu: {pcpu} for vcpu, pcpu in pins.items()},
            {vcpu: {cpu for cpu, on in enumerate(cpumap) if on}
             for vcpu, cpumap in enumerate(cpumaps)})
        self.assertEqual(
            {str(i): str(cell.id) for i, cell in enumerate(claim.cells)},
            {node.get('cellid'): node.get('nodeset')
             for node in xml.findall('numatune/memnode')})
        self.assertEqual(
            [str(cell.pagesize) for cell in claim.cells],
            [page.get('size')
             for page in xml.findall('memoryBacking/hugepages/page')])
        self.assertEqual(self.free_pages - GUEST_PAGES,
                         base.available_2m_pages())

    def nfv_settings(self, server):
        """The domain's CPU, NUMA and memory settings, as XML text."""
        xml = etree.fromstring(self.domain(server).XMLDesc(0))
        return [etree.tostring(xml.find(tag)) for tag in (
            'cputune', 'numatune', 'memoryBacking', 'cpu')]

    def delete_and_check(self, server):
        """Delete: nothing is left, the huge pages are free again."""
        self._delete_server(server)
        self.assert_nothing_left(server)
        self.assertEqual(self.free_pages,
                         base.available_2m_pages())


class SuspendAcrossLibvirtdRestartTest(HostRestartTestCase):

    def test_suspend_and_resume_across_libvirtd_restarts(self):
        self.scenario('libvirtd restarted under a running, then a '
                      'suspended pinned hugepage guest')
        server = self.boot_pinned()
        self.assert_runs_as_claimed(server)
        claim = self.claim(server).obj_to_primitive()
        settings = self.nfv_settings(server)

        # libvirtd restarts under the running guest and finds it again;
        # the suspend then goes through the driver's new connection.
        self.restart_libvirtd()
        self.assert_runs_as_claimed(server)
        self.api.post_server_action(server['id'], {'suspend': None})
        server = self.wait_for_status(server, 'SUSPENDED')
        self.assertFalse(self.domain(server).isActive())
        self.assertEqual(1, len(self.libvirtd.managed_save_images(server)))
        # No QEMU process: its huge pages are free.
        self.assertEqual(self.free_pages,
                         base.available_2m_pages())

        self.restart_libvirtd()
        # The new libvirtd found the domain and its saved memory.
        self.assertTrue(self.domain(server).hasManagedSaveImage(0))

        self.api.post_server_action(server['id'], {'resume': None})
        server = self.wait_for_status(server, 'ACTIVE')
        self.assert_runs_as_claimed(server)
        self.assertEqual(claim, self.claim(server).obj_to_primitive())
        self.assertEqual(settings, self.nfv_settings(server))
        self.assertFalse(self.domain(server).hasManagedSaveImage(0))
        self.assertEqual([], self.libvirtd.managed_save_images(server))
        # The driver reconnected: the host is in service again, and the
        # guest's events reach Nova over the new connection.
        self.wait_until('the service is enabled', lambda: self.service()[
            'status'] == 'enabled')
        self.assert_events_reach_nova(server)

        # The same guest, restored, not booted again: its init, started at
        # the only boot, still answers the power button.
        self.api.post_server_action(server['id'], {'os-stop': None})
        server = self.wait_for_status(server, 'SHUTOFF')
        console = self.wait_for_console(
            server, guest_image.POWEROFF_MARKER_PREFIX)
        self.assertEqual(1, console.count(guest_image.BOOT_MARKER_PREFIX))
        self.delete_and_check(server)


class HostRebootTest(HostRestartTestCase):

    def test_guest_back_as_claimed_after_host_reboot(self):
        self.scenario('host reboot under a running pinned hugepage guest')
        self.flags(resume_guests_state_on_host_boot=True)
        server = self.boot_pinned()
        self.assert_runs_as_claimed(server)
        claim = self.claim(server).obj_to_primitive()
        allocations = self.placement.get(
            '/allocations/%s' % server['id']).body['allocations']

        # The host goes down: nova-compute stops, the guest dies, libvirtd
        # starts again with no guest running.
        self.compute.stop()
        self.domain(server).destroy()
        self.assertEqual(self.free_pages,
                         base.available_2m_pages())
        self.restart_libvirtd()
        self.assertFalse(self.domain(server).isActive())
        self.compute = self.restart_compute_service(
            self.compute, keep_hypervisor_state=False)
        self.driver = self.compute.manager.driver

        server = self.wait_for_status(server, 'ACTIVE')
        self.wait_for_console(server, guest_image.BOOT_MARKER_PREFIX,
                              count=2)
        self.assert_runs_as_claimed(server)
        self.assertEqual(claim, self.claim(server).obj_to_primitive())
        self.assertEqual(allocations, self.placement.get(
            '/allocations/%s' % server['id']).body['allocations'])
        self.assertEqual([{1}], self.pinned_cpus())
        self.assert_events_reach_nova(server)
        self.delete_and_check(server)
