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

"""Host readiness for PCI passthrough, from facts to an operator's words."""

import os

import fixtures
import testtools

from nova_kvmx.host import iommu


class ProblemsTest(testtools.TestCase):
    def facts(self, groups=12, vfio=iommu.VFIO_LOADED, cmdline=''):
        return iommu.PassthroughFacts(iommu_groups=groups, vfio_pci=vfio,
                                      kernel_release='6.1.0-18-amd64',
                                      kernel_cmdline=cmdline)

    def test_ready(self):
        self.assertEqual([], iommu.problems(self.facts()))
        # vfio-pci as a module libvirt loads when it needs it is enough.
        self.assertEqual([], iommu.problems(self.facts(
            vfio=iommu.VFIO_MODULE)))

    def test_iommu_off(self):
        problems = iommu.problems(self.facts(groups=0))
        self.assertEqual(1, len(problems))
        self.assertIn('IOMMU is off', problems[0])
        self.assertIn('intel_iommu=on', problems[0])

    def test_iommu_asked_for_but_off(self):
        # The kernel was told, so the firmware is what is left to check.
        problems = iommu.problems(self.facts(
            groups=0, cmdline='root=/dev/sda1 intel_iommu=on'))
        self.assertNotIn('intel_iommu=on', problems[0])
        self.assertIn('firmware', problems[0])

    def test_no_vfio(self):
        problems = iommu.problems(self.facts(vfio=iommu.VFIO_MISSING))
        self.assertEqual(1, len(problems))
        self.assertIn('vfio-pci', problems[0])
        self.assertIn('6.1.0-18-amd64', problems[0])


class ReadFactsTest(testtools.TestCase):
    """read_facts on a tree laid out as sysfs, /proc and /lib/modules."""

    def setUp(self):
        super().setUp()
        self.root = self.useFixture(fixtures.TempDir()).path
        self.release = os.uname().release
        self.mkdir('sys/kernel/iommu_groups')
        self.mkdir('proc')
        self.write('proc/cmdline', 'root=/dev/vda1 intel_iommu=on\n')

    def mkdir(self, path):
        os.makedirs(os.path.join(self.root, path), exist_ok=True)

    def write(self, path, text):
        self.mkdir(os.path.dirname(path))
        with open(os.path.join(self.root, path), 'w') as f:
            f.write(text)

    def read(self):
        return iommu.read_facts(*(os.path.join(self.root, d)
                                  for d in ('sys', 'proc', 'lib/modules')))

    def test_groups_and_loaded_driver(self):
        for group in ('0', '1', '17'):
            self.mkdir('sys/kernel/iommu_groups/%s/devices' % group)
        self.mkdir('sys/bus/pci/drivers/vfio-pci')
        facts = self.read()
        self.assertEqual((3, iommu.VFIO_LOADED), (facts.iommu_groups,
                                                  facts.vfio_pci))
        self.assertIn('intel_iommu=on', facts.kernel_cmdline)

    def test_module_installed(self):
        self.write('lib/modules/%s/modules.dep' % self.release,
                   'kernel/drivers/vfio/pci/vfio-pci.ko.xz: kernel/drivers/'
                   'vfio/pci/vfio-pci-core.ko.xz\n')
        self.assertEqual(iommu.VFIO_MODULE, self.read().vfio_pci)

    def test_nothing(self):
        os.rmdir(os.path.join(self.root, 'sys/kernel/iommu_groups'))
        facts = self.read()
        self.assertEqual((0, iommu.VFIO_MISSING), (facts.iommu_groups,
                                                   facts.vfio_pci))
