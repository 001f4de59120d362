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

"""Host checks and inventory: what nova-compute learns from libvirt.

Capabilities are those captured on the Debian 12 test machine
(``data/``); the start-up checks run against libvirt's in-process
``test:///default`` driver (a connection only: no event loop is started);
inventory goes into Nova's real ProviderTree with Nova's own options.
"""

import os
import threading
from unittest import mock

import ddt
import futurist
import fixtures
import libvirt
from lxml import etree
from nova.compute import provider_tree
import nova.conf
import nova.conf.neutron
from nova import objects
from nova import thread_pool_factory
from nova.virt import driver
from nova.virt import event as virtevent
from nova.virt.libvirt import config as vconfig
import os_resource_classes as orc
from oslo_config import fixture as config_fixture
from oslo_serialization import jsonutils
import testtools

from nova_kvmx import exception
from nova_kvmx.host import connection
from nova_kvmx.host import resources

CAPS_FILE = os.path.join(os.path.dirname(__file__), 'data',
                         'capabilities-debian12-x86_64.xml')


def captured_caps(edit=None):
    """The captured capabilities as Nova parses them, after ``edit`` (a
    function changing the lxml tree) when given."""
    tree = etree.parse(CAPS_FILE)
    if edit is not None:
        edit(tree)
    caps = vconfig.LibvirtConfigCaps()
    caps.parse_dom(tree.getroot())
    return caps


def without_kvm(tree):
    for domain in tree.xpath('//guest/arch/domain[@type="kvm"]'):
        domain.getparent().remove(domain)


def xen_only(tree):
    for os_type in tree.xpath('//guest/os_type'):
        os_type.text = 'xen'


@ddt.ddt
class SupportedDomainTypesTest(testtools.TestCase):
    """Only hvm guests of the requested arch count."""

    @ddt.data(
        (None, 'x86_64', {'kvm', 'qemu'}),
        (None, 'i686', {'kvm', 'qemu'}),
        (None, 'aarch64', set()),
        (without_kvm, 'x86_64', {'qemu'}),
        (xen_only, 'x86_64', set()),
    )
    @ddt.unpack
    def test_domain_types(self, edit, arch, expected):
        self.assertEqual(expected, connection.supported_domain_types(
            captured_caps(edit), arch))


@ddt.ddt
class CheckHostTest(testtools.TestCase):
    """libvirt's test driver offers only i686 guests of domain type 'test'
    and reports hypervisor version 2: enough to see each refusal and
    its message."""

    def setUp(self):
        super().setUp()
        # Keep libvirt's and Nova's complaints that the test driver has no
        # event loop out of the output (Host.initialize would silence
        # libvirt the same way).
        self.useFixture(fixtures.FakeLogger())
        libvirt.registerErrorHandler(lambda ctxt, err: None, None)
        self.addCleanup(libvirt.registerErrorHandler, None, None)
        self.host = connection.new_host('test:///default')
        self.host.get_connection()
        self.addCleanup(self.host.close)

    def versions_ok(self):
        """For rows about the virt type, not about versions."""
        return mock.patch.object(self.host, 'has_min_version',
                                 return_value=True)

    @ddt.data(
        ('kvm', 'x86_64', 'it offers: none'),
        ('qemu', 'i686', 'it offers: test'),
        ('kvm', 'i686', 'it offers: test'),
    )
    @ddt.unpack
    def test_virt_type_not_offered(self, virt_type, arch, offered):
        with self.versions_ok():
            ex = self.assertRaises(exception.HostNotSupported,
                                   connection.check_host, self.host,
                                   virt_type, arch)
        msg = str(ex)
        self.assertIn('virt_type=%s is not offered by libvirt for %s' % (
            virt_type, arch), msg)
        self.assertIn(offered, msg)
        self.assertNotIn('/dev/kvm', msg)  # this machine has it

    def test_missing_dev_kvm_is_named(self):
        real_exists = os.path.exists

        def exists(path):
            return False if path == '/dev/kvm' else real_exists(path)

        with self.versions_ok(), mock.patch('os.path.exists', exists):
            ex = self.assertRaises(exception.HostNotSupported,
                                   connection.check_host, self.host, 'kvm',
                                   'i686')
        self.assertIn('/dev/kvm is missing', str(ex))

    def test_offered_virt_type_on_too_old_hypervisor(self):
        ex = self.assertRaises(exception.HostNotSupported,
                               connection.check_host, self.host, 'test',
                               'i686')
        self.assertIn('QEMU 6.2.0 or newer is required, this host has 2',
                      str(ex))


class UpdateInventoryTest(testtools.TestCase):
    """Reserved amounts and allocation ratios are Nova's own options,
    resolved by ComputeDriver._get_allocation_ratios as the driver does."""

    NODE = 'compute1'
    FOUND = {'vcpus': 6, 'pcpus': 0, 'memory_mb': 15872, 'local_gb': 240}

    def setUp(self):
        super().setUp()
        self.conf = self.useFixture(config_fixture.Config(nova.conf.CONF))
        self.tree = provider_tree.ProviderTree()
        self.tree.new_root(self.NODE, '5a1f6d3e-2c4b-4f8a-9e7d-1b2c3d4e5f60')

    def update(self, found=None):
        ratios = driver.ComputeDriver._get_allocation_ratios(
            self.tree.data(self.NODE).inventory)
        resources.update_inventory(self.tree, self.NODE, found or self.FOUND,
                                   ratios)
        return self.tree.data(self.NODE).inventory

    def test_reserved_and_ratios_from_nova_options(self):
        self.conf.config(reserved_host_memory_mb=1024,
                         reserved_host_disk_mb=1500,  # 2 GiB, rounded up
                         reserved_host_cpus=1,
                         cpu_allocation_ratio=4.0,
                         initial_ram_allocation_ratio=1.25,
                         initial_disk_allocation_ratio=1.5)
        inventory = self.update()
        self.assertEqual({
            orc.VCPU: {'total': 6, 'reserved': 1, 'min_unit': 1,
                       'max_unit': 6, 'step_size': 1,
                       'allocation_ratio': 4.0},
            orc.MEMORY_MB: {'total': 15872, 'reserved': 1024, 'min_unit': 1,
                            'max_unit': 15872, 'step_size': 1,
                            'allocation_ratio': 1.25},
            orc.DISK_GB: {'total': 240, 'reserved': 2, 'min_unit': 1,
                          'max_unit': 240, 'step_size': 1,
                          'allocation_ratio': 1.5},
        }, inventory)

    def test_ratio_set_in_placement_is_kept_unless_configured(self):
        """Nova's rule: [DEFAULT] *_allocation_ratio overrides everything;
        unset, a ratio an operator set through Placement stays."""
        self.update()
        inventory = self.tree.data(self.NODE).inventory
        inventory[orc.VCPU]['allocation_ratio'] = 8.0
        self.tree.update_inventory(self.NODE, inventory)
        self.assertEqual(8.0, self.update()[orc.VCPU]['allocation_ratio'])
        self.conf.config(cpu_allocation_ratio=2.0)
        self.assertEqual(2.0, self.update()[orc.VCPU]['allocation_ratio'])

    def test_no_shared_cpus_no_vcpu_inventory(self):
        inventory = self.update(dict(self.FOUND, vcpus=0))
        self.assertEqual({orc.MEMORY_MB, orc.DISK_GB}, set(inventory))

    def test_dedicated_cpus_are_pcpu_never_overcommitted(self):
        self.conf.config(cpu_allocation_ratio=4.0, reserved_host_cpus=1)
        inventory = self.update(dict(self.FOUND, vcpus=2, pcpus=4))
        self.assertEqual({'total': 4, 'reserved': 0, 'min_unit': 1,
                          'max_unit': 4, 'step_size': 1,
                          'allocation_ratio': 1.0}, inventory[orc.PCPU])
        self.assertEqual(2, inventory[orc.VCPU]['total'])


class AvailableResourcesTest(testtools.TestCase):
    """The compute node record from libvirt's test:///default driver (8
    CPUs, 3 online, 2 NUMA cells), each host fact read once."""

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.FakeLogger())
        libvirt.registerErrorHandler(lambda ctxt, err: None, None)
        self.addCleanup(libvirt.registerErrorHandler, None, None)
        self.useFixture(config_fixture.Config(nova.conf.CONF))
        nova.conf.neutron.register_dynamic_opts(nova.conf.CONF)
        self.host = connection.new_host('test:///default')
        self.addCleanup(self.host.close)
        self.conn = self.host.get_connection()

    def test_record_reads_each_fact_once(self):
        cpu_map = self.useFixture(fixtures.MockPatchObject(
            self.conn, 'getCPUMap', wraps=self.conn.getCPUMap)).mock
        statvfs = self.useFixture(fixtures.MockPatch(
            'os.statvfs', wraps=os.statvfs)).mock
        record = resources.available_resources(
            self.host, '/', 'compute1', 'qemu')
        self.assertEqual((1, 1), (cpu_map.call_count, statvfs.call_count))
        _count, online, _ = self.conn.getCPUMap()
        st = os.statvfs('/')
        self.assertEqual(
            (sum(online), 0, self.conn.getInfo()[1],
             st.f_frsize * st.f_blocks // 1024 ** 3),
            (record['vcpus'], record['pcpus'], record['memory_mb'],
             record['local_gb']))
        numa = objects.NUMATopology.obj_from_db_obj(record['numa_topology'])
        self.assertEqual(sum(online),
                         sum(len(cell.cpuset) for cell in numa.cells))
        self.assertEqual([], jsonutils.loads(
            record['pci_passthrough_devices']))


class ConnectionClosedTest(testtools.TestCase):
    """libvirt's close callback runs on its event-loop thread, which a
    thread holding the connection lock may be waiting for."""

    def setUp(self):
        super().setUp()
        self.events = []
        self.host = connection.Host(
            'test:///default',
            conn_event_handler=lambda *a: self.events.append(a))
        self.conn = object()
        self.host._wrapped_conn = self.conn

    def close_from_event_thread(self):
        thread = threading.Thread(
            target=self.host._connection_closed,
            args=(self.conn, False, 'Connection to libvirt lost: EOF'),
            daemon=True)
        thread.start()
        thread.join(10)
        return thread.is_alive()

    def test_close_while_the_lock_is_held_does_not_wait(self):
        with self.host._wrapped_conn_lock:
            self.assertFalse(self.close_from_event_thread())
        # The holder drops the dead connection; the event is queued.
        self.assertIs(self.conn, self.host._wrapped_conn)
        self.assertEqual(1, self.host._conn_event_handler_queue.qsize())

    def test_close_drops_the_connection(self):
        self.assertFalse(self.close_from_event_thread())
        self.assertIsNone(self.host._wrapped_conn)
        self.assertEqual(1, self.host._conn_event_handler_queue.qsize())


class EventsAfterShutdownTest(testtools.TestCase):
    """libvirt keeps reporting events until the connection is closed; once
    nova-compute has shut its thread pools, they are dropped quietly."""

    def test_stop_event_after_shutdown_is_dropped(self):
        handled = []
        host = connection.Host('test:///default',
                               lifecycle_event_handler=handled.append)
        # What Host.initialize() sets up, shut as nova-compute stops.
        wrapper = thread_pool_factory.\
            StaticallyDelayingCancellableTaskExecutorWrapper
        host._delayed_executor = wrapper(
            delay=15, executor=futurist.ThreadPoolExecutor(1))
        host._delayed_executor.shutdown(wait=True)
        stopped = virtevent.LifecycleEvent(
            '8a6b7ab2-5a8f-4a84-9dbd-0f7f3f7ec1f3',
            virtevent.EVENT_LIFECYCLE_STOPPED)
        host._event_emit_delayed(stopped)   # no RuntimeError
        self.assertEqual([], handled)
        # Other events are handled at once, as in Nova.
        started = virtevent.LifecycleEvent(
            stopped.uuid, virtevent.EVENT_LIFECYCLE_STARTED)
        host._event_emit_delayed(started)
        self.assertEqual([started], handled)

    def test_stop_event_on_a_host_never_initialized_is_dropped(self):
        # Its connection gets events when another Host runs libvirt's
        # event loop in the same process.
        handled = []
        host = connection.Host('test:///default',
                               lifecycle_event_handler=handled.append)
        host._event_emit_delayed(virtevent.LifecycleEvent(
            '8a6b7ab2-5a8f-4a84-9dbd-0f7f3f7ec1f3',
            virtevent.EVENT_LIFECYCLE_STOPPED))   # no AttributeError
        self.assertEqual([], handled)
