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

"""Pinned, hugepage-backed NUMA guests really booting on this host.

This machine has one NUMA node, two CPUs and real 2 MiB pages (``.ci/setup``
reserves them before libvirtd starts). Through Nova's API a pinned,
hugepage-backed guest boots: its vCPU runs on the CPU Nova claimed, its
memory comes out of the host's huge pages, and the guest sees its NUMA node.

Nova cannot place a two-cell guest on a one-node host, so the two-cell
guest is claimed by Nova's fitting for this machine's two CPUs on a
two-node host shape, and booted with both cells' memory bound to the one
node that exists: the guest's two NUMA nodes and the pinning are then seen
from inside the real guest.
"""

import dataclasses
import os
import re
import shutil
import time

from lxml import etree
from nova.tests.functional.api import client
from nova.virt import hardware
from oslo_utils import uuidutils

from nova_kvmx.guest import planner
from nova_kvmx.guest import render
from nova_kvmx.guest import spec
from tests.functional import base
from tests.functional import guest_image
from tests.unit import builders as b
from tests.unit import nfv
from tests.unit import test_topology


def guest_numa_nodes(console):
    """{guest node: its CPUs} from the guest's console lines."""
    return {int(node): hardware.parse_cpu_spec(cpus) for node, cpus in
            re.findall(guest_image.NUMA_MARKER_PREFIX +
                       r' node(\d+) cpus=([0-9,-]+)', console)}


class PinnedHugepageGuestTest(base.RealLibvirtTestCase):

    PINNED_HOST = base.ONE_PINNED_CPU

    def test_pinned_hugepage_guest(self):
        flavor_id = self.create_pinned_flavor(
            name='kvmx.pinned.2m', vcpus=1, ram=256, page_size='2MB',
            extra_specs={'quota:cpu_shares': '2048',
                         'quota:cpu_period': '200000'})
        before = base.available_2m_pages()
        server = self._create_server(
            image_uuid=self.create_bootable_image(), flavor_id=flavor_id,
            networks='none', expected_state='BUILD')
        server = self.wait_for_status(server, 'ACTIVE')
        console = self.wait_for_console(server,
                                        guest_image.BOOT_MARKER_PREFIX)

        # Placement: one dedicated CPU, no shared one.
        allocation = self.placement.get(
            '/allocations/%s' % server['id']).body['allocations']
        resources = list(allocation.values())[0]['resources']
        self.assertEqual(1, resources['PCPU'])
        self.assertNotIn('VCPU', resources)

        # libvirt holds the claim Nova stored.
        claim = self.claim(server)
        self.assertEqual({0: 1}, claim.cells[0].cpu_pinning)
        self.assertEqual(2048, claim.cells[0].pagesize)
        xml = etree.fromstring(self.domain(server).XMLDesc(0))
        self.assertEqual([('0', '1')], [
            (pin.get('vcpu'), pin.get('cpuset'))
            for pin in xml.findall('cputune/vcpupin')])
        self.assertEqual('1', xml.find('cputune/emulatorpin').get('cpuset'))
        self.assertEqual('0', xml.find(
            "numatune/memnode[@cellid='0']").get('nodeset'))
        self.assertEqual('2048', xml.find(
            'memoryBacking/hugepages/page').get('size'))

        # The guest's memory is the host's huge pages: 256 MiB = 128 pages.
        self.assertEqual(before - 128, base.available_2m_pages())
        # The guest sees its one NUMA node, with its one vCPU.
        self.assertEqual({0: {0}}, guest_numa_nodes(console))
        # The vCPU thread really runs on CPU 1 only.
        cpumap = self.domain(server).vcpus()[1][0]
        self.assertEqual((False, True), cpumap[:2])
        # Its one IOThread runs with the emulator threads (unpinned, libvirt
        # would let it run on both CPUs).
        self.assertEqual([(1, (False, True))], [
            (iothread, tuple(cpus[:2]))
            for iothread, cpus in self.domain(server).ioThreadInfo()])
        # The flavor's CPU share and period are in the guest's cgroup.
        params = self.domain(server).schedulerParameters()
        self.assertEqual((2048, 200000),
                         (params['cpu_shares'], params['vcpu_period']))

        self._delete_server(server)
        self.assertFalse(self.domain_exists(server))
        self.assertEqual(before, base.available_2m_pages())

    def test_floating_guest_iothread_and_cpu_quota(self):
        """A guest without a NUMA claim has no <iothreadpin>: libvirt runs
        its IOThread on the CPUs its vCPUs float over (cpu_shared_set).
        Its flavor's CPU quota is in force all the same."""
        flavor_id = self.create_flavor(
            name='kvmx.quota', vcpus=1, ram=256, extra_specs={
                'quota:cpu_period': '100000', 'quota:cpu_quota': '50000'})
        server = self._create_server(
            image_uuid=self.create_bootable_image(), flavor_id=flavor_id,
            networks='none', expected_state='BUILD')
        server = self.wait_for_status(server, 'ACTIVE')
        dom = self.domain(server)

        xml = etree.fromstring(dom.XMLDesc(0))
        self.assertEqual('0', xml.find('vcpu').get('cpuset'))
        self.assertEqual([], xml.findall('cputune/iothreadpin'))
        self.assertEqual([(1, (True, False))], [
            (iothread, tuple(cpus[:2]))
            for iothread, cpus in dom.ioThreadInfo()])
        params = dom.schedulerParameters()
        self.assertEqual((100000, 50000),
                         (params['vcpu_period'], params['vcpu_quota']))

        self._delete_server(server)
        self.assertFalse(self.domain_exists(server))


class TwoCellGuestTest(base.RealLibvirtTestCase):
    """A two-cell claim of Nova's, rendered and booted under QEMU here."""

    START_COMPUTE = False

    def two_node_host(self):
        """This machine's CPUs 0 and 1 as a two-node host: CPU 0 on node 0,
        CPU 1 on node 1, both dedicated."""
        return self.useFixture(nfv.NFVHost(
            caps=test_topology.fake_host(cpu_nodes=2, cpu_cores=1),
            online=range(2), shared=None, dedicated='0-1'))

    def test_guest_sees_two_nodes_pinned_as_claimed(self):
        self.hold_hugepages()
        host = self.two_node_host()
        inst = host.instance(vcpus=2, memory_mb=256, hw_numa_nodes=2,
                             uuid=uuidutils.generate_uuid(),
                             hw_cpu_policy='dedicated',
                             hw_mem_page_size='2MB')
        claim = inst.numa_topology
        self.assertEqual([0, 1], [cell.id for cell in claim.cells])

        artifacts = guest_image.get_guest_artifacts()
        guest = planner.plan_guest(
            b.context(), inst, b.image(os_command_line=artifacts.cmdline),
            self.guest_files(artifacts), host.settings)
        # The one change from Nova's claim: this host has only node 0.
        cells = tuple(dataclasses.replace(cell, host_cell=0)
                      for cell in guest.numa_cells)
        # Under TCG: no host CPU model to pass through.
        guest = dataclasses.replace(
            guest, virt_type='qemu', numa_cells=cells,
            cpu=dataclasses.replace(guest.cpu, mode=None))
        before = base.available_2m_pages()
        dom = self.libvirt().defineXML(render.render_domain(guest))
        self.addCleanup(dom.undefine)
        dom.create()
        self.addCleanup(lambda: dom.isActive() and dom.destroy())
        console = self.wait_for_log(guest.console_log,
                                    guest_image.BOOT_MARKER_PREFIX)

        self.assertEqual({0: {0}, 1: {1}}, guest_numa_nodes(console))
        pins = {vcpu: cpu for cell in claim.cells
                for vcpu, cpu in cell.cpu_pinning.items()}
        cpumaps = dom.vcpus()[1]
        for vcpu, cpu in pins.items():
            self.assertEqual(tuple(c == cpu for c in range(2)),
                             cpumaps[vcpu][:2])
        self.assertEqual(before - 128, base.available_2m_pages())

    def guest_files(self, artifacts):
        """Copies of the test guest's files in the test's work directory
        (libvirt relabels what a guest uses)."""
        workdir = os.path.dirname(self.instances_path)
        files = {}
        for name, path in (('root_disk', artifacts.root_disk),
                           ('kernel', artifacts.kernel),
                           ('ramdisk', artifacts.initramfs)):
            files[name] = os.path.join(workdir, name)
            shutil.copy(path, files[name])
            os.chmod(files[name], 0o644)
        return spec.GuestFiles(
            console_log=os.path.join(workdir, 'console.log'), **files)

    def wait_for_log(self, path, text, timeout=base.STATE_TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.path.exists(path):
                with open(path, errors='replace') as f:
                    log = f.read()
                if text in log:
                    return log
            time.sleep(0.5)
        self.fail('%r not in %s after %ds' % (text, path, timeout))


class RealtimeDomainTest(base.RealLibvirtTestCase):
    """Realtime guests lock their memory, which this sandbox forbids
    (RLIMIT_MEMLOCK 8 MiB without CAP_SYS_RESOURCE): QEMU cannot start
    one here. So the domain a realtime claim renders is checked as libvirt
    holds it once defined: libvirt parsed every realtime setting and kept
    it."""

    START_COMPUTE = False

    def test_libvirt_keeps_the_realtime_settings(self):
        host = self.useFixture(nfv.NFVHost(
            caps=test_topology.fake_host(cpu_nodes=1, cpu_cores=2),
            online=range(2), shared=None, dedicated='0-1'))
        inst = host.instance(vcpus=2, memory_mb=256,
                             uuid=uuidutils.generate_uuid(),
                             hw_cpu_policy='dedicated',
                             hw_cpu_realtime='yes',
                             hw_cpu_realtime_mask='^0',
                             hw_mem_page_size='2MB')
        guest = nfv.plan(host, inst)
        dom = self.libvirt().defineXML(render.render_domain(
            dataclasses.replace(guest, virt_type='qemu')))
        self.addCleanup(dom.undefine)

        xml = etree.fromstring(dom.XMLDesc(0))
        pins = inst.numa_topology.cells[0].cpu_pinning
        sched = xml.find('cputune/vcpusched')
        self.assertEqual(('1', 'fifo', '1'), (
            sched.get('vcpus'), sched.get('scheduler'),
            sched.get('priority')))
        self.assertEqual(str(pins[0]), xml.find(
            'cputune/emulatorpin').get('cpuset'))
        self.assertIsNotNone(xml.find('memoryBacking/locked'))
        self.assertIsNotNone(xml.find('memoryBacking/nosharepages'))
        self.assertEqual('off', xml.find('features/pmu').get('state'))
        self.assertEqual('none', xml.find('devices/memballoon').get('model'))


class BadNFVSpecTest(base.RealLibvirtTestCase):
    """Contradictory NFV specs get Nova's own error, and nothing reaches
    the host."""

    def assert_refused(self, extra_specs, message, vcpus=2):
        """The API refuses the flavor or the server with ``message``."""
        try:
            flavor_id = self.create_flavor(
                name='kvmx.bad', vcpus=vcpus, extra_specs=extra_specs)
            self._create_server(image_uuid=self.create_bootable_image(),
                                flavor_id=flavor_id, networks='none')
        except client.OpenStackApiException as ex:
            self.assertEqual(400, ex.response.status_code)
            self.assertIn(message, ex.response.text)
        else:
            self.fail('%r was accepted' % extra_specs)
        self.assertEqual([], self.api.get_servers())
        self.assertEqual([], self.driver.list_instances())

    def test_realtime_mask_covering_every_vcpu(self):
        self.assert_refused(
            {'hw:cpu_policy': 'dedicated', 'hw:cpu_realtime': 'yes',
             'hw:cpu_realtime_mask': '0-1'},
            'requires either one or more non-realtime CPU(s)')

    def test_more_guest_cells_than_vcpus(self):
        self.assert_refused({'hw:numa_nodes': '4'}, 'evenly distributed',
                            vcpus=2)

    def test_unknown_thread_policy(self):
        self.assert_refused(
            {'hw:cpu_policy': 'dedicated',
             'hw:cpu_thread_policy': 'sometimes'}, 'sometimes')

    def test_page_size_the_host_lacks(self):
        flavor_id = self.create_flavor(
            name='kvmx.1g', extra_specs={'hw:mem_page_size': '1GB'})
        fault = self.boot_and_expect_error(self.create_bootable_image(),
                                           flavor_id)
        self.assertIn('No valid host', fault)
        self.assertEqual([], self.driver.list_instances())
