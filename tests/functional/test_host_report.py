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

"""What the compute node reports to Placement, read back from Placement."""

import os
import time

import libvirt
from lxml import etree
import os_traits as ot
from nova import exception as nova_exception
import nova.conf.neutron
from nova import objects
from oslo_concurrency import processutils
from oslo_utils import uuidutils

from nova_kvmx.host import connection
from tests.functional import base
from tests.functional import unprivileged

# Seconds to wait for libvirt to deliver a node-device event.
EVENT_TIMEOUT = 30


class HostReportTest(base.RealLibvirtTestCase):

    START_COMPUTE = False

    def inventory(self):
        return self.placement.get('/resource_providers/%s/inventories' %
                                  self.provider()['uuid']).body['inventories']

    def test_inventory_honours_nova_options(self):
        self.flags(reserved_host_memory_mb=333, reserved_host_cpus=1,
                   cpu_allocation_ratio=2.0)
        self.start_compute()
        inventory = self.inventory()
        _count, online, _ = self.libvirt().getCPUMap()
        self.assertEqual(sum(online), inventory['VCPU']['total'])
        self.assertEqual((1, 2.0), (inventory['VCPU']['reserved'],
                                    inventory['VCPU']['allocation_ratio']))
        self.assertEqual(333, inventory['MEMORY_MB']['reserved'])
        self.assertEqual(
            self.libvirt().getInfo()[1], inventory['MEMORY_MB']['total'])
        st = os.statvfs(self.instances_path)
        self.assertEqual(st.f_frsize * st.f_blocks // 1024 ** 3,
                         inventory['DISK_GB']['total'])

    def test_capability_and_cpu_traits(self):
        # Under TCG with no CPU mode, guests do not see the host's features.
        self.start_compute()
        traits = self.traits()
        self.assertIn('COMPUTE_IMAGE_TYPE_QCOW2', traits)
        self.assertIn('COMPUTE_IMAGE_TYPE_AKI', traits)
        self.assertNotIn('COMPUTE_IMAGE_TYPE_ISO', traits)
        self.assertNotIn(ot.HW_CPU_X86_SSE2, traits)

    def test_host_passthrough_reports_host_cpu_features(self):
        self.flags(cpu_mode='host-passthrough', group='kvmx')
        self.start_compute()
        with open('/proc/cpuinfo') as f:
            host_has_sse2 = ' sse2' in f.read()
        self.assertEqual(host_has_sse2, ot.HW_CPU_X86_SSE2 in self.traits())


class CPUSetsReportTest(base.RealLibvirtTestCase):
    """[compute] cpu_shared_set / cpu_dedicated_set become VCPU and PCPU
    inventory and the NUMA cell's cpuset / pcpuset Nova schedules with."""

    START_COMPUTE = False

    def test_shared_and_dedicated_cpus(self):
        self.flags(cpu_shared_set='0', cpu_dedicated_set='1',
                   group='compute')
        self.start_compute()
        name = self.driver.get_available_nodes()[0]
        rp = self.placement.get('/resource_providers?name=%s' % name).body[
            'resource_providers'][0]
        inventory = self.placement.get(
            '/resource_providers/%s/inventories' % rp['uuid']).body[
                'inventories']
        self.assertEqual((1, 1), (inventory['VCPU']['total'],
                                  inventory['PCPU']['total']))
        node = objects.ComputeNode.get_by_nodename(self.ctxt, name)
        numa = objects.NUMATopology.obj_from_db_obj(node.numa_topology)
        self.assertEqual([({0}, {1})],
                         [(cell.cpuset, cell.pcpuset) for cell in numa.cells])

    def test_physnet_and_tunnel_affinity(self):
        self.flags(physnets=['provider0'], group='neutron')
        nova.conf.neutron.register_dynamic_opts(nova.conf.CONF)
        self.flags(numa_nodes=[0], group='neutron_physnet_provider0')
        self.flags(numa_nodes=[0], group='neutron_tunnel')
        self.start_compute()
        node = objects.ComputeNode.get_by_nodename(
            self.ctxt, self.driver.get_available_nodes()[0])
        numa = objects.NUMATopology.obj_from_db_obj(node.numa_topology)
        cell = numa.cells[0]
        self.assertEqual(({'provider0'}, True),
                         (cell.network_metadata.physnets,
                          cell.network_metadata.tunneled))

    def test_overlapping_sets_refused_at_start(self):
        self.flags(cpu_shared_set='0-1', cpu_dedicated_set='1',
                   group='compute')
        ex = self.assertRaises(nova_exception.InvalidConfiguration,
                               self.start_compute)
        self.assertIn('1', str(ex))
        self.assertIn('cpu_dedicated_set', str(ex))

    def test_malformed_set_refused_at_start(self):
        self.flags(cpu_shared_set='0-x', group='compute')
        ex = self.assertRaises(nova_exception.InvalidConfiguration,
                               self.start_compute)
        self.assertIn("Invalid '[compute] cpu_shared_set'", str(ex))

    def test_reserving_more_pages_than_exist_refused_at_start(self):
        cell = etree.fromstring(self.libvirt().getCapabilities()).find(
            'host/topology/cells/cell')
        pages = int(cell.find("pages[@size='2048']").text)
        self.flags(reserved_huge_pages=[
            'node:%s,size:2048,count:%d' % (cell.get('id'), pages + 1)])
        ex = self.assertRaises(nova_exception.InvalidConfiguration,
                               self.start_compute)
        self.assertIn("reserves %d pages of 2048 KiB on NUMA node %s, which "
                      "has %d" % (pages + 1, cell.get('id'), pages), str(ex))

    def test_1g_pages_flavor_finds_no_host(self):
        self.start_compute()
        flavor_id = self.create_flavor(
            name='kvmx.1g', extra_specs={'hw:mem_page_size': '1GB'})
        fault = self.boot_and_expect_error(self.create_bootable_image(),
                                           flavor_id)
        self.assertIn('No valid host', fault)


class PCIReportTest(base.RealLibvirtTestCase):
    """This host's PCI devices reach Nova's PCI tracker, which keeps those
    ``[pci] device_spec`` matches."""

    START_COMPUTE = False

    def test_device_spec_matches_host_devices(self):
        self.flags(device_spec=['{"vendor_id": "1af4"}'], group='pci')
        self.start_compute()
        expected = set()
        for dev in self.libvirt().listAllDevices(
                libvirt.VIR_CONNECT_LIST_NODE_DEVICES_CAP_PCI_DEV):
            xml = dev.XMLDesc(0)
            if "<vendor id='0x1af4'" in xml:
                expected.add(dev.name())
        self.assertNotEqual(set(), expected)  # virtio devices of this VM
        node = objects.ComputeNode.get_by_nodename(
            self.ctxt, self.driver.get_available_nodes()[0])
        tracked = objects.PciDeviceList.get_by_compute_node(
            self.ctxt, node.id)
        self.assertEqual(expected, {'pci_' + d.address.replace(
            ':', '_').replace('.', '_') for d in tracked})
        self.assertEqual({'available'}, {d.status for d in tracked})
        self.assertEqual({'type-PCI'}, {d.dev_type for d in tracked})

    def test_report_in_placement(self):
        """Nova's resource tracker, not the driver, models PCI devices in
        Placement (nova.compute.pci_placement_translator), from the PCI
        tracker this driver feeds: one child provider per device, named
        after it, with one unit of its vendor/product resource class."""
        self.flags(device_spec=['{"vendor_id": "1af4"}'],
                   report_in_placement=True, group='pci')
        self.start_compute()
        name = self.driver.get_available_nodes()[0]
        expected = {}
        for dev in self.libvirt().listAllDevices(
                libvirt.VIR_CONNECT_LIST_NODE_DEVICES_CAP_PCI_DEV):
            cap = etree.fromstring(dev.XMLDesc(0)).find('capability')
            if cap.find('vendor').get('id') == '0x1af4':
                address = '0000:%02x:%02x.%x' % tuple(
                    int(cap.findtext(f), 0)
                    for f in ('bus', 'slot', 'function'))
                expected['%s_%s' % (name, address.upper())] = (
                    'CUSTOM_PCI_1AF4_%s' % cap.find('product').get(
                        'id')[2:].upper())
        self.assertNotEqual({}, expected)  # virtio devices of this VM
        root = self.placement.get('/resource_providers?name=%s' % name).body[
            'resource_providers'][0]['uuid']
        children = [rp for rp in self.placement.get(
            '/resource_providers?in_tree=%s' % root, version='1.14').body[
                'resource_providers'] if rp['uuid'] != root]
        actual = {}
        for rp in children:
            self.assertEqual(root, rp['parent_provider_uuid'])
            inventory = self.placement.get(
                '/resource_providers/%s/inventories' % rp['uuid']).body[
                    'inventories']
            self.assertEqual([1], [i['total'] for i in inventory.values()])
            actual[rp['name']] = list(inventory)[0]
        self.assertEqual(expected, actual)


def wait_until(predicate, what, timeout=EVENT_TIMEOUT):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError('%s did not happen within %ds' % (
                what, timeout))
        time.sleep(0.1)


def udevd_running():
    for pid in filter(str.isdigit, os.listdir('/proc')):
        try:
            with open('/proc/%s/comm' % pid) as f:
                if f.read().strip() in ('systemd-udevd', 'udevd'):
                    return True
        except OSError:
            pass
    return False


class NodeDeviceEventsTest(base.RealLibvirtTestCase):
    """The PCI report follows node-device events delivered by libvirt's
    event loop, which the driver's Host runs."""

    START_COMPUTE = False

    # A vHBA on the test driver's FC HBA: the node device libvirt's test
    # driver can create and destroy, with lifecycle events.
    VHBA = """<device><parent>scsi_host1</parent>
      <capability type='scsi_host'><capability type='fc_host'>
        <wwnn>2001001b32a9da4e</wwnn><wwpn>2101001b32a9da4e</wwpn>
      </capability></capability></device>"""

    def test_test_driver_events_reach_the_report(self):
        """libvirt's test:///default driver sends lifecycle events for the
        vHBAs it creates; a vHBA is no PCI device, so the report keeps its
        (empty) JSON while it reads the device the events name."""
        host = connection.new_host('test:///default')
        host.initialize()
        report = host.pci_report
        before = host.pci_devices_json()
        dev = host.get_connection().nodeDeviceCreateXML(self.VHBA, 0)
        name = dev.name()
        self.addCleanup(self._destroy, dev)
        wait_until(lambda: name in report.pending(),
                   'the creation event of %s' % name)
        self.assertIs(before, host.pci_devices_json())
        self.assertEqual(set(), report.pending())
        dev.destroy()
        wait_until(lambda: name in report.pending(),
                   'the deletion event of %s' % name)
        self.assertIs(before, host.pci_devices_json())
        host.close()
        self.assertEqual(set(), report.pending())

    @staticmethod
    def _destroy(dev):
        try:
            dev.destroy()
        except libvirt.libvirtError:
            pass  # destroyed by the test

    def test_real_libvirtd_events_reach_the_report(self):
        """libvirtd learns of node devices from udev: without udevd (this
        machine runs none unless started) it sends no node-device
        events."""
        if not udevd_running():
            self.skipTest('no udevd runs: libvirtd sends no node-device '
                          'events (start systemd-udevd to run this test)')
        self.start_compute()
        report = self.driver._host.pci_report
        ifname = 'kvmx%s' % uuidutils.generate_uuid()[:8]
        # The harness adds and removes the device, as root.
        unprivileged.as_root(processutils.execute, 'ip', 'link', 'add',
                             ifname, 'type', 'ifb')
        self.addCleanup(unprivileged.as_root, processutils.execute, 'ip',
                        'link', 'del', ifname, check_exit_code=False)

        def named():
            return [n for n in report.pending()
                    if n.startswith('net_%s_' % ifname)]

        wait_until(named, 'the creation event of %s' % ifname)
        node = self.driver.get_available_nodes()[0]
        self.driver.get_available_resource(node)
        self.assertEqual([], named())
        unprivileged.as_root(processutils.execute, 'ip', 'link', 'del',
                             ifname)
        wait_until(named, 'the deletion event of %s' % ifname)
