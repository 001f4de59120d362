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

"""Live migration of real guests between two libvirt hosts on this machine.

compute1 is the machine's libvirtd; compute2 is a second libvirtd in its
own mount and UTS namespaces (tests/functional/second_libvirtd.py). The
two hosts share no instances directory: compute2's own directory is
mounted, in its namespace, at compute1's instances path, as every host of
a cloud has its own disk at the same path. So these are block migrations:
libvirt copies the disks (NBD) and the memory of a real tiny guest under
TCG from one QEMU to the other over 127.0.0.0/8.

Shared instance storage cannot be shown for real here: libvirt 9.0 only
migrates without copying disks from a shared file system (NFS, GFS2, ...),
which this machine lacks; tests/functional/test_live_migration_fake.py
covers it on Nova's fake libvirt.

Both hosts read the one process's configuration: the same CPU sets, so
that a guest lands on another CPU at the destination its CPU there is
taken by a (stopped) guest first.
"""

import os
import socket
import time
from unittest import mock

import fixtures
import libvirt
from lxml import etree
from nova.console import serial
from nova import objects
from oslo_utils import uuidutils

from tests.functional import base
from tests.functional import guest_image
from tests.functional import second_libvirtd
from tests.functional import test_consoles
from tests.functional import unprivileged

DEST = 'compute2'


class UnprivilegedUserfaultfd(fixtures.Fixture):
    """Post-copy needs userfaultfd in the destination's unprivileged QEMU:
    vm.unprivileged_userfaultfd = 1 for the test, as libvirt 9.0 cannot
    hand QEMU /dev/userfaultfd (nova-kvmx host-check offers operators both
    ways, with the sysctl's risk)."""

    PATH = '/proc/sys/vm/unprivileged_userfaultfd'

    def _setUp(self):
        with open(self.PATH) as f:
            before = f.read().strip()
        if before != '1':
            self._write('1')
            self.addCleanup(self._write, before)

    def _write(self, value):
        # A sysctl: root's, also when the test runs as nova.
        unprivileged.as_root(_write_file, self.PATH, value)


def _write_file(path, text):
    with open(path, 'w') as f:
        f.write(text)


def _read_bytes(path, offset, size):
    with open(path, 'rb') as f:
        f.seek(offset)
        return f.read(size)


class TwoHostsMixin(object):
    """What a test of two hosts reads and does: the test's connection to
    compute2 (``dest_conn``) and the instances directory it sees as its
    own (``dest_instances``) are the test case's."""

    def start_dest_compute(self, uri):
        """compute2 on the test's second libvirtd (``self.dest``) and its
        instances directory, with a node UUID and an address of its own;
        then the options are the first host's again (``uri``)."""
        self.flags(connection_uri=self.dest.uri, group='kvmx')
        self.flags(instances_path=self.dest_instances)
        # One process, two nodes: each needs its own node UUID.
        with mock.patch('nova.virt.node.get_local_node_uuid',
                        return_value=uuidutils.generate_uuid()):
            self.compute2 = self.start_service('compute', host=DEST)
        # ... and its own address (my_ip is the process's).
        self.useFixture(fixtures.MockPatchObject(
            self.compute2.manager.driver, 'get_host_ip_addr',
            return_value=self.dest.address))
        self.flags(connection_uri=uri, group='kvmx')
        self.flags(instances_path=self.instances_path)

    def boot(self, host, name='guest'):
        server = self._create_server(
            name=name, image_uuid=self.image_id, flavor_id=self.flavor_id,
            networks='none', host=host, expected_state='BUILD')
        server = self.wait_for_status(server, 'ACTIVE')
        self.wait_for_console(server, guest_image.BOOT_MARKER_PREFIX)
        return server

    def take_dest_cpu(self):
        """A stopped guest on the destination keeps its claimed CPU."""
        blocker = self.boot(DEST, name='blocker')
        self.api.post_server_action(blocker['id'], {'os-stop': {}})
        self.wait_for_status(blocker, 'SHUTOFF')
        return blocker

    def live_migrate(self, server):
        self.api.post_server_action(server['id'], {'os-migrateLive': {
            'host': DEST, 'block_migration': 'auto'}})

    def live_migrate_to_dest(self, server):
        """Live-migrate the server and see it completed and ACTIVE on the
        destination; the server as the API shows it then."""
        self.live_migrate(server)
        self.assertEqual('completed', self.wait_for_migration(
            server, ('completed', 'error', 'failed'))['status'])
        server = self.wait_for_status(server, 'ACTIVE')
        self.assertEqual(DEST, server['OS-EXT-SRV-ATTR:host'])
        return server

    def migration(self, server):
        """The server's live migration as the API lists it, or None before
        the conductor made it."""
        migrations = self.api.api_get(
            '/os-migrations?instance_uuid=%s' % server['id']
        ).body['migrations']
        self.assertLessEqual(len(migrations), 1)
        return migrations[0] if migrations else None

    def wait_for_migration(self, server, statuses,
                           timeout=base.STATE_TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            migration = self.migration(server)
            if migration and migration['status'] in statuses:
                return migration
            if time.monotonic() > deadline:
                self.fail('migration of %s is %s after %ds, expected %s' % (
                    server['id'], migration and migration['status'],
                    timeout, statuses))
            time.sleep(0.5)

    def pinned_cpus(self, host):
        node = objects.ComputeNode.get_by_nodename(
            self.ctxt, self.compute_nodename(host))
        return set().union(*(cell.pinned_cpus for cell in
                             objects.NUMATopology.obj_from_db_obj(
                                 node.numa_topology).cells))

    def compute_nodename(self, host):
        service = self.compute2 if host == DEST else self.compute
        return service.manager.driver.get_available_nodes()[0]

    def dest_domain_exists(self, server):
        return server['id'] in [d.UUIDString()
                                for d in self.dest_conn.listAllDomains()]

    def allocation_hosts(self, server):
        allocations = self.placement.get(
            '/allocations/%s' % server['id']).body['allocations']
        return {self._get_provider_name(rp) for rp in allocations}

    def _get_provider_name(self, rp_uuid):
        return self.placement.get(
            '/resource_providers/%s' % rp_uuid).body['name']

    def assert_every_disk(self, root):
        """The domain ``root`` has the root, ephemeral and swap disks and
        the config drive, from its instance directory."""
        self.assertEqual(
            [('vda', 'disk'), ('vdb', 'disk.eph0'), ('vdc', 'disk.swap'),
             ('sdz', 'disk.config')],
            [(d.find('target').get('dev'),
              os.path.basename(d.find('source').get('file')))
             for d in root.findall('devices/disk')])

    def assert_still_on_source(self, server):
        """The guest runs where it was and the destination has nothing of
        it: no domain, no instance directory, no CPU, no allocation."""
        server = self.wait_for_status(server, 'ACTIVE')
        self.assertEqual(self.compute_host,
                         server['OS-EXT-SRV-ATTR:host'])
        self.assertTrue(self.domain(server).isActive())
        self.assertFalse(self.dest_domain_exists(server))
        self.assertFalse(os.path.exists(
            os.path.join(self.dest_instances, server['id'])))
        self.assertTrue(os.path.exists(self.instance_dir(server)))
        self.assertEqual({self.compute_nodename(self.compute_host)},
                         self.allocation_hosts(server))
        self.assertEqual({0: 0}, self.claim(server).cells[0].cpu_pinning)


class TwoHostsTestCase(TwoHostsMixin, base.RealLibvirtTestCase):

    START_COMPUTE = False
    # Two dedicated CPUs, no shared one: every guest here is pinned.
    PINNED_HOST = base.ALL_CPUS_PINNED
    # An sshd on compute2, for disk copies (cold migration).
    DEST_SSH = False

    def setUp(self):
        super().setUp()
        self.flags(live_migration_monitor_interval=1, group='libvirt')
        # compute2's host is made as root, before nova-compute starts.
        workdir = os.path.dirname(self.instances_path)
        self.dest_instances = os.path.join(workdir, 'instances-' + DEST)
        if self.AS_NOVA:
            unprivileged.private_dir(workdir, 'instances-' + DEST,
                                     self.nova)
        else:
            os.makedirs(self.dest_instances)
        os.chmod(self.dest_instances, 0o711)
        nova_logs_in = self.AS_NOVA and self.DEST_SSH
        self.dest = self.useFixture(second_libvirtd.SecondLibvirtd(
            workdir, hostname='kvmx-' + self.domain_prefix.strip('-'),
            binds=((self.dest_instances, self.instances_path),),
            ssh=self.DEST_SSH,
            group='libvirt' if self.AS_NOVA else None,
            ssh_users=(unprivileged.NOVA_USER,) if nova_logs_in else ()))
        if nova_logs_in:
            self.useFixture(unprivileged.SshLogin(self.nova, self.dest))
        self.start_compute()
        self.compute.manager.driver._host.get_node_uuid()
        self.start_dest_compute('qemu:///system')
        self.flags(live_migration_inbound_addr=self.dest.address,
                   group='libvirt')
        self.dest_conn = self.dest.connection()
        self.image_id = self.create_bootable_image()
        self.flavor_id = self.create_pinned_flavor(name='kvmx.pinned.2m',
                                                   page_size='2MB')


class LiveMigrationTest(TwoHostsTestCase):

    def test_pinned_hugepage_guest_moves_to_destination_claim(self):
        server = self.boot(self.compute_host)
        self.assertEqual({0: 0}, self.claim(server).cells[0].cpu_pinning)
        self.take_dest_cpu()
        self.assertEqual({0}, self.pinned_cpus(DEST))

        server = self.live_migrate_to_dest(server)

        # Nova's claim on the destination: the free CPU 1.
        self.assertEqual({0: 1}, self.claim(server).cells[0].cpu_pinning)
        self.assertEqual({0, 1}, self.pinned_cpus(DEST))
        self.assertEqual(set(), self.pinned_cpus(self.compute_host))
        # The domain on the destination realises that claim, not the
        # source's CPU 0.
        dom = self.dest_conn.lookupByUUIDString(server['id'])
        self.assertTrue(dom.isActive())
        for xml in (dom.XMLDesc(0), dom.XMLDesc(
                libvirt.VIR_DOMAIN_XML_INACTIVE)):
            root = etree.fromstring(xml)
            self.assertEqual([('0', '1')], [
                (pin.get('vcpu'), pin.get('cpuset'))
                for pin in root.findall('cputune/vcpupin')])
            self.assertEqual('1', root.find('cputune/emulatorpin').get(
                'cpuset'))
            self.assertEqual([('1', '1')], [
                (pin.get('iothread'), pin.get('cpuset'))
                for pin in root.findall('cputune/iothreadpin')])
            self.assertEqual('0', root.find(
                "numatune/memnode[@cellid='0']").get('nodeset'))
            self.assertEqual('2048', root.find(
                'memoryBacking/hugepages/page').get('size'))
        # The vCPU thread runs on CPU 1 now, and so does the IOThread.
        self.assertEqual((False, True), dom.vcpus()[1][0][:2])
        self.assertEqual([(1, (False, True))], [
            (iothread, tuple(cpus[:2]))
            for iothread, cpus in dom.ioThreadInfo()])

        # Nothing of it is left on the source.
        self.assertFalse(self.domain_exists(server))
        self.assertFalse(os.path.exists(self.instance_dir(server)))
        self.assertEqual({self.compute_nodename(DEST)},
                         self.allocation_hosts(server))

        # It is the same guest, still running: it reacts to the power
        # button on the destination (whose console log is its own).
        self.api.post_server_action(server['id'], {'os-stop': {}})
        self.wait_for_status(server, 'SHUTOFF')
        self.wait_for_console(server, guest_image.POWEROFF_MARKER_PREFIX)

    def test_block_migration_of_every_disk(self):
        """Ephemeral and swap disks are copied with the root disk; the
        read-only config drive is built again on the destination."""
        flavor_id = self._create_flavor(
            name='kvmx.pinned.disks', vcpu=1, memory_mb=256, disk=1,
            ephemeral=1, swap=64, extra_spec={'hw:cpu_policy': 'dedicated'})
        server = self._build_server(image_uuid=self.image_id,
                                    flavor_id=flavor_id, networks='none',
                                    host=self.compute_host)
        server['config_drive'] = True
        server = self.wait_for_status(self.api.post_server(
            {'server': server}), 'ACTIVE')
        self.wait_for_console(server, guest_image.BOOT_MARKER_PREFIX)

        server = self.live_migrate_to_dest(server)
        root = etree.fromstring(self.dest_conn.lookupByUUIDString(
            server['id']).XMLDesc(0))
        self.assert_every_disk(root)
        dest_dir = os.path.join(self.dest_instances, server['id'])
        for name in ('disk', 'disk.eph0', 'disk.swap', 'disk.config'):
            self.assertTrue(os.path.isfile(os.path.join(dest_dir, name)),
                            name)
        # The ISO 9660 volume identifier (QEMU's file now: read as root).
        self.assertEqual(b'config-2', unprivileged.as_root(
            _read_bytes, os.path.join(dest_dir, 'disk.config'), 32808, 8))
        self.assertFalse(os.path.exists(self.instance_dir(server)))


class SlowLiveMigrationTest(TwoHostsTestCase):
    """Migrations held back by a 1 MiB/s bandwidth limit: the guest's
    256 MiB would take minutes to copy, so each test decides how the
    migration ends, with the guest running on the source throughout."""

    def setUp(self):
        super().setUp()
        self.flags(live_migration_bandwidth=1, group='libvirt')
        # Nova's response schema of a server migration wants its byte
        # counters >= 1, while libvirt reports 0 for what it has not
        # copied yet: production's default ('warn') logs it, Nova's test
        # default ('error') would turn the progress into an HTTP 500.
        self.flags(response_validation='warn', group='api')

    def start_slow_migration(self):
        server = self.boot(self.compute_host)
        self.live_migrate(server)
        return server, self.wait_for_progress(server)

    def wait_for_progress(self, server, timeout=base.STATE_TIMEOUT):
        """The running migration once it reports memory or disk
        statistics (the API's in-progress view, as a user follows it)."""
        deadline = time.monotonic() + timeout
        while True:
            migration = self.migration(server)
            if migration and migration['status'] == 'running':
                progress = self.api.api_get(
                    '/servers/%s/migrations/%s' % (server['id'],
                                                   migration['id'])
                ).body['migration']
                # A block migration copies the disks before the memory:
                # either counter shows the job under way.
                if (progress['memory_total_bytes'] or
                        progress['disk_total_bytes']):
                    return progress
            if time.monotonic() > deadline:
                self.fail('migration of %s reports no progress after %ds'
                          % (server['id'], timeout))
            time.sleep(0.2)

    def wait_for_domain_state(self, server, state,
                              timeout=base.STATE_TIMEOUT):
        deadline = time.monotonic() + timeout
        while self.domain(server).state()[0] != state:
            if time.monotonic() > deadline:
                self.fail('domain of %s not in state %d after %ds' % (
                    server['id'], state, timeout))
            time.sleep(0.2)

    def failure_event(self, server):
        actions = [a for a in self.api.get_instance_actions(server['id'])
                   if a['action'] == 'live-migration']
        self.assertEqual(1, len(actions))
        self.assertEqual('Error', actions[0]['message'])
        events = self.api.get_instance_action_details(
            server['id'], actions[0]['request_id'])['events']
        return {e['event']: e for e in events}[
            'compute_live_migration_failure']

    def assert_running_on_source(self, server):
        self.assert_still_on_source(server)
        self.assertEqual(libvirt.VIR_DOMAIN_RUNNING,
                         self.domain(server).state()[0])
        self.assertEqual(set(), self.pinned_cpus(DEST))
        self.assertEqual({0}, self.pinned_cpus(self.compute_host))

    def abort(self, server, migration):
        """Abort from the API: cancelled, the guest running at the
        source."""
        self.api.delete_migration(server['id'], migration['id'])
        migration = self.wait_for_migration(
            server, ('failed', 'error', 'completed', 'cancelled'))
        self.assertEqual('cancelled', migration['status'])
        self.assert_running_on_source(server)

    def test_completion_timeout_aborts_with_guest_on_source(self):
        # 1 s per GiB, counted as Nova counts: 2 GiB of memory and 2 of
        # disk at least, so 4 s.
        self.flags(live_migration_completion_timeout=1, group='libvirt')
        server, progress = self.start_slow_migration()
        for what in ('memory', 'disk'):
            self.assertLessEqual(progress['%s_processed_bytes' % what],
                                 progress['%s_total_bytes' % what])

        migration = self.wait_for_migration(
            server, ('failed', 'error', 'completed', 'cancelled'))
        self.assertEqual('failed', migration['status'])
        self.assert_running_on_source(server)
        event = self.failure_event(server)
        self.assertEqual('Error', event['result'])
        self.assertIn('did not complete within 4 seconds', event['details'])

    def test_abort_from_api(self):
        self.flags(live_migration_completion_timeout=0, group='libvirt')
        server, progress = self.start_slow_migration()
        self.abort(server, progress)

    def test_force_complete_switches_to_post_copy(self):
        """With post-copy permitted, force-complete switches the running
        migration to post-copy: the guest runs on the destination at
        once and the rest of its memory follows on demand."""
        self.useFixture(UnprivilegedUserfaultfd())
        self.flags(live_migration_completion_timeout=0,
                   live_migration_permit_post_copy=True, group='libvirt')
        server, progress = self.start_slow_migration()
        self.api.force_complete_migration(server['id'], progress['id'])
        migration = self.wait_for_migration(
            server, ('failed', 'error', 'completed', 'cancelled'))
        self.assertEqual('completed', migration['status'])
        # libvirt's lifecycle event: QEMU really entered post-copy.
        self.assertIn('VM Postcopy started (Lifecycle Event)',
                      self.stdlog.logger.output)
        server = self.wait_for_status(server, 'ACTIVE')
        self.assertEqual(DEST, server['OS-EXT-SRV-ATTR:host'])
        self.assertTrue(self.dest_conn.lookupByUUIDString(
            server['id']).isActive())
        self.assertFalse(self.domain_exists(server))

    def test_force_complete_pauses_the_guest(self):
        """Without post-copy, force-complete pauses the guest so that no
        more memory is dirtied; when the migration then ends another way
        (an abort here), the guest runs again on the source."""
        self.flags(live_migration_completion_timeout=0, group='libvirt')
        server, progress = self.start_slow_migration()
        self.api.force_complete_migration(server['id'], progress['id'])
        self.wait_for_domain_state(server, libvirt.VIR_DOMAIN_PAUSED)
        self.assertEqual('running', self.migration(server)['status'])
        self.abort(server, progress)


class SerialConsoleLiveMigrationTest(TwoHostsTestCase):
    """The serial console follows the guest to the ports the destination
    took; the source's port is free again."""

    def start_compute(self):
        # Both hosts read [serial_console] when they start; they share this
        # process's ports (and loopback): one port for each.
        self.port = test_consoles.free_port(2)
        self.flags(enabled=True, proxyclient_address=test_consoles.HOST,
                   port_range='%d:%d' % (self.port, self.port + 2),
                   group='serial_console')
        return super().start_compute()

    def test_serial_console_on_the_destination(self):
        server = self.boot(self.compute_host)
        self.assertEqual([self.port],
                         test_consoles.serial_ports(self.domain(server)))

        server = self.live_migrate_to_dest(server)
        moved = self.port + 1
        self.assertEqual([moved], test_consoles.serial_ports(
            self.dest_conn.lookupByUUIDString(server['id'])))
        self.assertEqual({(test_consoles.HOST, moved)},
                         serial.ALLOCATED_PORTS & {
                             (test_consoles.HOST, self.port),
                             (test_consoles.HOST, moved)})
        self.assertEqual((test_consoles.HOST, moved),
                         test_consoles.console_port(self, server))

        # The guest says on that port that it powers off.
        with socket.create_connection((test_consoles.HOST, moved),
                                      timeout=10) as sock:
            self.api.post_server_action(server['id'], {'os-stop': {}})
            self.assertIn(guest_image.POWEROFF_MARKER_PREFIX,
                          test_consoles.read_until(
                              sock, guest_image.POWEROFF_MARKER_PREFIX,
                              base.STATE_TIMEOUT))
        self.wait_for_status(server, 'SHUTOFF')
