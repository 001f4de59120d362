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

"""CPU and device traits the compute node reports to Placement."""

import os

import os_traits as ot
import testtools
from nova.compute import provider_tree
from nova.virt.libvirt import config as vconfig

from nova_kvmx import driver
from nova_kvmx.guest import hwdevices
from nova_kvmx.host import resources
from nova_kvmx.host import traits as traits_mod
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


DOMCAPS_XML = os.path.join(os.path.dirname(__file__), 'data',
                           'domcapabilities-debian12-x86_64-q35-kvm.xml')


def captured_domcaps():
    return _captured(vconfig.LibvirtConfigDomainCaps, DOMCAPS_XML)


class DeviceTraitsTest(testtools.TestCase):
    """The traits Nova's image_metadata_prefilter requires: present only
    for what a guest of nova-kvmx really gets (guest.keys, disk_names)."""

    def present(self, graphics=True, virt_type='kvm', igb=False):
        traits = traits_mod.device_traits(captured_domcaps(), 'x86_64',
                                          virt_type, graphics, igb)
        self.assertTrue(all(t in ot.get_traits() for t in traits))
        return {t for t, on in traits.items() if on}, set(traits)

    def test_storage_buses_libvirt_offers_and_the_driver_renders(self):
        present, listed = self.present()
        buses = {t for t in present if t.startswith('COMPUTE_STORAGE_BUS_')}
        # libvirt offers usb and fdc too; nova-kvmx gives guests neither.
        self.assertEqual({ot.COMPUTE_STORAGE_BUS_VIRTIO,
                          ot.COMPUTE_STORAGE_BUS_SCSI,
                          ot.COMPUTE_STORAGE_BUS_SATA}, buses)
        self.assertIn(ot.COMPUTE_STORAGE_BUS_IDE, listed)
        self.assertIn(ot.COMPUTE_STORAGE_BUS_USB, listed)

    def test_video_models_need_a_graphical_console(self):
        present, _ = self.present()
        self.assertIn(ot.COMPUTE_GRAPHICS_MODEL_VIRTIO, present)
        self.assertIn(ot.COMPUTE_GRAPHICS_MODEL_VGA, present)
        # Not in this QEMU's domain capabilities.
        self.assertNotIn(ot.COMPUTE_GRAPHICS_MODEL_XEN, present)
        present, listed = self.present(graphics=False)
        self.assertFalse({t for t in present
                          if t.startswith('COMPUTE_GRAPHICS_MODEL_')})
        self.assertIn(ot.COMPUTE_GRAPHICS_MODEL_VIRTIO, listed)

    def test_vif_models_of_the_virt_type(self):
        present, _ = self.present()
        self.assertIn(ot.COMPUTE_NET_VIF_MODEL_VIRTIO, present)
        self.assertIn(ot.COMPUTE_NET_VIF_MODEL_E1000E, present)
        self.assertNotIn(ot.COMPUTE_NET_VIF_MODEL_IGB, present)
        self.assertNotIn(ot.COMPUTE_NET_VIF_MODEL_NETFRONT, present)
        self.assertIn(ot.COMPUTE_NET_VIF_MODEL_IGB,
                      self.present(igb=True)[0])

    def test_refused_features_are_removed(self):
        present, listed = self.present()
        for trait in (ot.COMPUTE_VIOMMU_MODEL_INTEL,
                      ot.COMPUTE_VIOMMU_MODEL_AUTO,
                      ot.COMPUTE_SECURITY_TPM_2_0,
                      ot.COMPUTE_SOUND_MODEL_ICH9,
                      ot.COMPUTE_ARCH_X86_64):
            self.assertIn(trait, listed)
            self.assertNotIn(trait, present)

    def test_packed_ring_as_nova(self):
        self.assertIn(ot.COMPUTE_NET_VIRTIO_PACKED, self.present()[0])

    def host_features(self, virt_type, libvirt_virtio=True):
        traits = traits_mod.device_traits(
            captured_domcaps(), 'x86_64', virt_type, True,
            viommu_models=hwdevices.viommu_models(
                virt_type, 'x86_64', libvirt_virtio),
            sound_models=hwdevices.sound_models(True, False),
            guest_arches={'x86_64', 'i686'})
        return {t for t, on in traits.items() if on}

    def test_viommu_models_guests_start_with(self):
        kvm = self.host_features('kvm')
        self.assertTrue({ot.COMPUTE_VIOMMU_MODEL_INTEL,
                         ot.COMPUTE_VIOMMU_MODEL_VIRTIO,
                         ot.COMPUTE_VIOMMU_MODEL_AUTO} <= kvm)
        self.assertNotIn(ot.COMPUTE_VIOMMU_MODEL_SMMUV3, kvm)
        # intel's eim=on needs KVM's split irqchip: not under TCG.
        tcg = self.host_features('qemu')
        self.assertNotIn(ot.COMPUTE_VIOMMU_MODEL_INTEL, tcg)
        self.assertIn(ot.COMPUTE_VIOMMU_MODEL_VIRTIO, tcg)
        old = self.host_features('qemu', libvirt_virtio=False)
        self.assertFalse({t for t in old if 'VIOMMU' in t})

    def test_sound_models_and_emulated_architectures(self):
        present = self.host_features('kvm')
        self.assertIn(ot.COMPUTE_SOUND_MODEL_ICH9, present)
        # libvirt 9.0 and QEMU 7.2 have no virtio sound.
        self.assertNotIn(ot.COMPUTE_SOUND_MODEL_VIRTIO, present)
        self.assertIn(ot.COMPUTE_ARCH_X86_64, present)
        self.assertNotIn(ot.COMPUTE_ARCH_AARCH64, present)

    def test_host_architecture(self):
        present, _ = self.present()
        self.assertIn(ot.HW_ARCH_X86_64, present)
        self.assertNotIn(ot.HW_ARCH_AARCH64, present)

    def test_socket_pci_numa_affinity_is_a_capability(self):
        self.assertTrue(driver.KVMXDriver.capabilities[
            'supports_socket_pci_numa_affinity'])


class _Host(object):
    """What guest_features asks a host: its capabilities and versions."""

    def __init__(self, libvirt, qemu=(7, 2, 0)):
        self.libvirt, self.qemu = libvirt, qemu

    def get_capabilities(self):
        return _captured(vconfig.LibvirtConfigCaps, CAPS_XML)

    def has_min_version(self, lv_ver=None, hv_ver=None):
        return ((lv_ver is None or self.libvirt >= lv_ver) and
                (hv_ver is None or self.qemu >= hv_ver))


class GuestFeaturesTest(testtools.TestCase):

    def test_libvirt_9_0_and_qemu_7_2(self):
        features = traits_mod.guest_features(_Host((9, 0, 0)), 'kvm',
                                             'x86_64')
        self.assertEqual({'auto', 'intel', 'virtio'},
                         features['viommu_models'])
        self.assertNotIn('virtio', features['sound_models'])
        self.assertIn('ich9', features['sound_models'])
        self.assertTrue(features['maxphysaddr'])
        self.assertIn('x86_64', features['guest_arches'])

    def test_novas_minimum_libvirt(self):
        features = traits_mod.guest_features(_Host((8, 0, 0)), 'qemu',
                                             'x86_64')
        # No virtio vIOMMU before 8.3, no intel under TCG.
        self.assertEqual(frozenset(), features['viommu_models'])
        self.assertFalse(features['maxphysaddr'])

    def test_virtio_sound_with_libvirt_10_4_and_qemu_8_2(self):
        features = traits_mod.guest_features(
            _Host((10, 4, 0), (8, 2, 0)), 'kvm', 'x86_64')
        self.assertIn('virtio', features['sound_models'])
