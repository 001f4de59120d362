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

"""vIOMMU, sound, USB controller, redirected USB ports, packed ring,
CD-ROM bus, physical address bits, emulated architecture and Windows
guests: the domain differs from a plain guest's in the element Nova's
libvirt driver writes (schema-valid), bad values get Nova's errors, and
what this host cannot start is refused by key."""

from nova import exception as nova_exception
from nova.network import model
from nova import objects
import testtools

from nova_kvmx import exception
from nova_kvmx.guest import consoles
from nova_kvmx.guest import planner
from nova_kvmx.guest import render
from tests.unit import builders as b
from tests.unit import test_guest_devices as tgd
from tests.unit import xml_schema

objects.register_all()

SPICE = consoles.Spice(listen='127.0.0.1', agent=False)


def plan(specs=None, props=None, files=None, network_info=None,
         os_type=None, **settings):
    inst = b.instance(flavor_obj=b.flavor(extra_specs=specs or {}))
    if os_type:
        inst.os_type = os_type
    inst.pci_devices = objects.PciDeviceList(objects=[])
    return planner.plan_guest(
        b.context(), inst, b.image(**(props or {})), files or b.files(),
        b.settings(**settings), network_info=network_info)


class HwDevicesTestCase(testtools.TestCase):

    def domain(self, *args, **kw):
        xml = render.render_domain(plan(*args, **kw))
        xml_schema.assert_valid_domain(self, xml)
        return xml_schema.parse(xml)

    def refused(self, key, *args, **kw):
        ex = self.assertRaises(exception.UnsupportedKey, plan, *args, **kw)
        self.assertIn(key, str(ex))
        return str(ex)


class VIOMMUTest(HwDevicesTestCase):

    def test_auto_is_virtio_without_driver_attributes(self):
        root = self.domain({'hw:viommu_model': 'auto'})
        iommu = xml_schema.find(root, './devices/iommu')
        self.assertEqual('virtio', iommu.get('model'))
        # libvirt 9.0 refuses any attribute on the virtio model.
        self.assertEqual([], iommu.findall('driver'))
        self.assertEqual('qemu', xml_schema.find(
            root, './features/ioapic').get('driver'))
        self.assertEqual([], self.domain().findall('./devices/iommu'))
        self.assertEqual([], self.domain().findall('./features/ioapic'))

    def test_intel_with_novas_driver_attributes(self):
        root = self.domain(props={'hw_viommu_model': 'intel'})
        iommu = xml_schema.find(root, './devices/iommu')
        self.assertEqual('intel', iommu.get('model'))
        self.assertEqual(
            {'intremap': 'on', 'caching_mode': 'on', 'aw_bits': '48',
             'eim': 'on', 'iotlb': 'on'},
            dict(xml_schema.find(iommu, './driver').attrib))

    def test_flavor_wins_over_image(self):
        root = self.domain({'hw:viommu_model': 'virtio'},
                           {'hw_viommu_model': 'intel'})
        self.assertEqual('virtio', xml_schema.find(
            root, './devices/iommu').get('model'))

    def test_intel_refused_under_tcg(self):
        message = self.refused(
            'hw:viommu_model', {'hw:viommu_model': 'intel'},
            virt_type='qemu', viommu_models=frozenset(('auto', 'virtio')))
        self.assertIn('virtio', message)

    def test_machine_type_without_q35(self):
        self.assertRaises(nova_exception.InvalidVIOMMUMachineType, plan,
                          {'hw:viommu_model': 'auto'},
                          {'hw_machine_type': 'pc'})

    def test_bad_flavor_value_gets_novas_validation(self):
        ex = self.assertRaises(nova_exception.ValidationError, plan,
                               {'hw:viommu_model': 'amd'})
        self.assertIn('hw:viommu_model', str(ex))


class SoundAndUSBTest(HwDevicesTestCase):

    def test_sound_usb_model_and_redirected_ports(self):
        root = self.domain({'hw:sound_model': 'ich9',
                            'hw:usb_model': 'qemu-xhci',
                            'hw:redirected_usb_ports': '2'}, spice=SPICE)
        self.assertEqual('ich9', xml_schema.find(
            root, './devices/sound').get('model'))
        usb = xml_schema.find(root, "./devices/controller[@type='usb']")
        self.assertEqual(('0', 'qemu-xhci'),
                         (usb.get('index'), usb.get('model')))
        redirs = xml_schema.findall(root, './devices/redirdev')
        self.assertEqual([{'type': 'spicevmc', 'bus': 'usb'}] * 2,
                         [dict(r.attrib) for r in redirs])
        plain = self.domain(spice=SPICE)
        for path in ('./devices/sound', "./devices/controller[@type='usb']",
                     './devices/redirdev'):
            self.assertEqual([], plain.findall(path))

    def test_redirected_ports_need_spice(self):
        self.refused('hw_redirected_usb_ports',
                     props={'hw_redirected_usb_ports': 1})

    def test_too_many_redirected_ports(self):
        ex = self.assertRaises(nova_exception.Invalid, plan,
                               {'hw:redirected_usb_ports': '16'},
                               spice=SPICE)
        self.assertIn('up to 15 USB ports', str(ex))

    def test_no_usb_controller_with_a_usb_tablet(self):
        self.refused('hw_usb_model', props={'hw_usb_model': 'none',
                                            'hw_pointer_model': 'usbtablet'},
                     vnc_listen='127.0.0.1')
        root = self.domain(props={'hw_usb_model': 'none'})
        self.assertEqual('none', xml_schema.find(
            root, "./devices/controller[@type='usb']").get('model'))

    def test_virtio_sound_needs_newer_libvirt(self):
        self.refused('hw:sound_model', {'hw:sound_model': 'virtio'})

    def test_bad_sound_model_and_conflict(self):
        ex = self.assertRaises(nova_exception.Invalid, plan,
                               {'hw:sound_model': 'gus'})
        self.assertIn('Invalid sound device model', str(ex))
        self.assertRaises(nova_exception.FlavorImageConflict, plan,
                          {'hw:sound_model': 'ich9'},
                          {'hw_sound_model': 'ac97'})


class PackedRingTest(HwDevicesTestCase):

    def ovs_port(self):
        return tgd.port(model.VIF_TYPE_OVS, bridge='br-int',
                        details={model.VIF_DETAILS_PORT_FILTER: True})

    def test_virtio_nic_gets_packed_ring(self):
        root = self.domain({'hw:virtio_packed_ring': 'true'},
                           network_info=[self.ovs_port()])
        driver = xml_schema.find(root, './devices/interface/driver')
        self.assertEqual('on', driver.get('packed'))
        root = self.domain(network_info=[self.ovs_port()])
        self.assertIsNone(root.find('./devices/interface/driver[@packed]'))

    def test_image_property_and_conflict(self):
        root = self.domain(props={'hw_virtio_packed_ring': True},
                           network_info=[self.ovs_port()])
        self.assertEqual('on', xml_schema.find(
            root, './devices/interface/driver').get('packed'))
        self.assertRaises(nova_exception.FlavorImageConflict, plan,
                          {'hw:virtio_packed_ring': 'false'},
                          {'hw_virtio_packed_ring': True},
                          network_info=[self.ovs_port()])

    def test_bad_flavor_value_gets_novas_validation(self):
        self.assertRaises(nova_exception.ValidationError, plan,
                          {'hw:virtio_packed_ring': 'maybe'},
                          network_info=[self.ovs_port()])


class CDROMBusTest(HwDevicesTestCase):

    def config_drive(self, bus, **kw):
        root = self.domain(props={'hw_cdrom_bus': bus},
                           files=b.files(config_drive=True), **kw)
        target = xml_schema.find(
            root, "./devices/disk[@device='cdrom']/target")
        return target.get('bus'), target.get('dev')

    def test_buses(self):
        self.assertEqual(('scsi', 'sdz'), self.config_drive('scsi'))
        self.assertEqual(('usb', 'sdz'), self.config_drive('usb'))
        self.assertEqual(('sata', 'sdz'), self.config_drive('sata'))
        self.assertEqual(('ide', 'hdd'),
                         self.config_drive('ide', machine_type='pc'))

    def test_refused(self):
        self.refused('hw_cdrom_bus', props={'hw_cdrom_bus': 'ide'})
        self.refused('hw_cdrom_bus', props={'hw_cdrom_bus': 'virtio'})
        self.refused('hw_cdrom_bus', props={'hw_cdrom_bus': 'fdc'})


class PlatformTest(HwDevicesTestCase):

    def test_maxphysaddr(self):
        root = self.domain(props={'hw_maxphysaddr_mode': 'emulate',
                                  'hw_maxphysaddr_bits': 42})
        self.assertEqual({'mode': 'emulate', 'bits': '42'}, dict(
            xml_schema.find(root, './cpu/maxphysaddr').attrib))
        root = self.domain({'hw:maxphysaddr_mode': 'passthrough'})
        self.assertEqual({'mode': 'passthrough'}, dict(
            xml_schema.find(root, './cpu/maxphysaddr').attrib))
        self.assertIsNone(self.domain().find('./cpu/maxphysaddr'))

    def test_maxphysaddr_errors(self):
        self.assertRaises(nova_exception.Invalid, plan,
                          props={'hw_maxphysaddr_mode': 'emulate'})
        self.refused('hw_maxphysaddr_mode',
                     props={'hw_maxphysaddr_mode': 'passthrough'},
                     maxphysaddr=False)

    def test_emulation_architecture(self):
        root = self.domain(props={'hw_emulation_architecture': 'i686'})
        self.assertEqual('i686', xml_schema.find(
            root, './os/type').get('arch'))
        self.assertEqual('qemu', root.get('type'))
        self.assertIsNone(root.find('./cpu').get('mode'))
        message = self.refused('hw_emulation_architecture',
                               props={'hw_emulation_architecture':
                                      'aarch64'})
        self.assertIn('qemu-system-aarch64', message)

    def test_windows_under_kvm(self):
        root = self.domain(props={'img_hide_hypervisor_id': True},
                           os_type='windows')
        self.assertEqual('localtime', xml_schema.find(
            root, './clock').get('offset'))
        self.assertEqual('yes', xml_schema.find(
            root, "./clock/timer[@name='hypervclock']").get('present'))
        hyperv = xml_schema.find(root, './features/hyperv')
        self.assertEqual(
            ['relaxed', 'vapic', 'spinlocks', 'vendor_id', 'vpindex',
             'runtime', 'synic', 'reset', 'frequencies', 'tlbflush', 'ipi'],
            [e.tag for e in hyperv])
        self.assertEqual('8191', hyperv.find('spinlocks').get('retries'))
        plain = self.domain()
        self.assertEqual('utc', plain.find('./clock').get('offset'))
        self.assertIsNone(plain.find('./features/hyperv'))

    def test_windows_image_property_and_tcg(self):
        root = self.domain(props={'os_type': 'windows'})
        self.assertIsNone(
            xml_schema.find(root, './features/hyperv').find('vendor_id'))
        self.refused('os_type', props={'os_type': 'windows'},
                     virt_type='qemu')
