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

"""CPU traits the compute node reports to Placement."""

import os

import os_traits as ot
import testtools
from nova.compute import provider_tree
from nova.virt.libvirt import config as vconfig

from nova_kvmx.host import resources
from tests.unit import builders as b

CAPS_XML = os.path.join(os.path.dirname(__file__), 'data',
                        'capabilities-debian12-x86_64.xml')


def _captured(config_class, path):
    config = config_class()
    with open(path) as f:
        config.parse_str(f.read())
    return config


def captured_caps():
    return _captured(vconfig.LibvirtConfigCaps, CAPS_XML)


class CPUTraitsTest(testtools.TestCase):
    """Feature traits follow what guests see of the host CPU."""

    def test_host_cpu_modes_report_host_features(self):
        for mode in ('host-passthrough', 'host-model'):
            traits = resources.cpu_traits(captured_caps(), b.settings(
                cpu_mode=mode), False)
            # This host (captured) has ssse3 and fma, and no avx512f.
            self.assertTrue(traits[ot.HW_CPU_X86_SSSE3], mode)
            self.assertTrue(traits[ot.HW_CPU_X86_FMA3], mode)
            self.assertFalse(traits[ot.HW_CPU_X86_AVX512F], mode)

    def test_other_modes_report_no_feature(self):
        for mode in (None, 'none'):
            traits = resources.cpu_traits(captured_caps(), b.settings(
                virt_type='qemu', cpu_mode=mode), True)
            present = {t for t, on in traits.items() if on}
            self.assertEqual({ot.HW_CPU_HYPERTHREADING}, present)
            # Absent traits are listed, so a stale one gets removed.
            self.assertIn(ot.HW_CPU_X86_SSSE3, traits)

    def test_update_traits_keeps_foreign_traits(self):
        tree = provider_tree.ProviderTree()
        tree.new_root('node', 'uuid-node')
        tree.add_traits('node', 'COMPUTE_IMAGE_TYPE_QCOW2', ot.HW_CPU_X86_AVX,
                        'CUSTOM_OPERATOR')
        resources.update_traits(tree, 'node', resources.cpu_traits(
            captured_caps(), b.settings(cpu_mode='host-passthrough'), True))
        traits = tree.data('node').traits
        self.assertIn('COMPUTE_IMAGE_TYPE_QCOW2', traits)
        self.assertIn('CUSTOM_OPERATOR', traits)
        self.assertIn(ot.HW_CPU_HYPERTHREADING, traits)
        self.assertIn(ot.HW_CPU_X86_SSSE3, traits)
        # AVX is in the captured host's features, so it stays.
        self.assertIn(ot.HW_CPU_X86_AVX, traits)
        resources.update_traits(tree, 'node', resources.cpu_traits(
            captured_caps(), b.settings(virt_type='qemu'), False))
        traits = tree.data('node').traits
        self.assertNotIn(ot.HW_CPU_X86_AVX, traits)
        self.assertNotIn(ot.HW_CPU_HYPERTHREADING, traits)
        self.assertIn('CUSTOM_OPERATOR', traits)
