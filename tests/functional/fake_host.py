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

"""Nova's in-process services driving nova-kvmx on Nova's fake libvirt.

For host shapes this machine lacks (SR-IOV PFs and VFs, several NUMA
nodes) the driver talks to Nova's own fake libvirt
(``nova.tests.fixtures.libvirt``: LibvirtFixture and a fake Connection
with HostPCIDevicesInfo), set up the way Nova's libvirt functional tests
set it up; Nova's test-base poisons stay on. Everything on our side is
real: the driver, the PCI tracker's claims, the image cache and overlays
(real files under a temporary instances_path).
"""

import os
import subprocess

import fixtures
from lxml import etree
from nova import test
from nova.tests import fixtures as nova_fixtures
from nova.tests.fixtures import libvirt as fakelibvirt
from nova.virt.libvirt import guest as libvirt_guest

from nova_kvmx.host import iommu
from tests.functional import services

# Our modules that catch libvirt's errors, as LibvirtFixture points
# Nova's libvirt modules at the fake.
LIBVIRT_USERS = ('nova_kvmx.lifecycle', 'nova_kvmx.vif',
                 'nova_kvmx.host.devices')


class FakeLibvirtTestCase(services.NovaServicesMixin, test.TestCase):

    def setUp(self):
        super().setUp()
        self.libvirt = self.useFixture(nova_fixtures.LibvirtFixture())
        for module in LIBVIRT_USERS:
            self.useFixture(fixtures.MonkeyPatch(module + '.libvirt',
                                                 fakelibvirt))
        # The fake host has its IOMMU on and vfio-pci loaded.
        self.useFixture(fixtures.MockPatch(
            'nova_kvmx.host.iommu.read_facts',
            return_value=iommu.PassthroughFacts(
                iommu_groups=64, vfio_pci=iommu.VFIO_LOADED)))
        # Nova's fake libvirt keeps only part of a domain's XML: record
        # the whole XML the driver gives it.
        self.created_xml = []
        real_create = libvirt_guest.Guest.create

        def create(xml, host):
            self.created_xml.append(xml)
            return real_create(xml, host)

        self.useFixture(fixtures.MockPatch(
            'nova.virt.libvirt.guest.Guest.create', side_effect=create))
        self.mock_conn = self.useFixture(fixtures.MockPatch(
            'nova.virt.libvirt.host.Host.get_connection')).mock
        self.start_nova(self.useFixture(fixtures.TempDir()).path, 'kvm')

    def start_compute(self, pci_info=None, host_info=None):
        """nova-compute on a fake host: ``host_info``
        (a fakelibvirt.HostInfo; default 2 NUMA nodes of 2 cores x 2
        threads) with ``pci_info`` (a fakelibvirt.HostPCIDevicesInfo)."""
        pci_info = pci_info or fakelibvirt.HostPCIDevicesInfo(
            num_pci=0, num_pfs=0, num_vfs=0)
        self.fake_conn = fakelibvirt.Connection(
            'qemu:///system', version=fakelibvirt.FAKE_LIBVIRT_VERSION,
            hv_version=fakelibvirt.FAKE_QEMU_VERSION,
            host_info=host_info or fakelibvirt.HostInfo(
                cpu_nodes=2, cpu_sockets=1, cpu_cores=2, cpu_threads=2),
            pci_info=pci_info, hostname=self.compute_host)
        self.mock_conn.return_value = self.fake_conn
        self.libvirt.update_sriov_mac_address_mapping(
            pci_info.get_pci_address_mac_mapping())
        self.compute = self.start_service('compute', host=self.compute_host)
        return self.compute

    def create_image(self):
        """A small real qcow2 image in Glance (the driver's image cache
        and overlays are real)."""
        path = os.path.join(self.useFixture(fixtures.TempDir()).path,
                            'disk.qcow2')
        subprocess.run(['qemu-img', 'create', '-f', 'qcow2', path, '16M'],
                       check=True, capture_output=True, timeout=60)
        meta = {'name': 'tiny', 'status': 'active', 'visibility': 'public',
                'disk_format': 'qcow2', 'container_format': 'bare',
                'min_ram': 0, 'min_disk': 0, 'size': os.path.getsize(path),
                'properties': {}}
        with open(path, 'rb') as data:
            return self.glance.create(self.ctxt, meta, data=data)['id']

    def given_xml(self, server):
        """The last domain XML the driver gave libvirt for ``server``."""
        for xml in reversed(self.created_xml):
            root = etree.fromstring(xml)
            if root.findtext('uuid') == server['id']:
                return root
        self.fail('no domain was created for server %s' % server['id'])

    def domain(self, server):
        """The domain the fake libvirt holds for a server."""
        return self.fake_conn.lookupByUUIDString(server['id'])

    def domain_exists(self, server):
        return server['id'] in [d.UUIDString() for d in
                                self.fake_conn._vms.values()]
