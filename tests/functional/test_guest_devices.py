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

"""vIOMMU, sound, USB controller, redirected USB ports, packed ring and
physical address bits of a real guest, in the domain libvirt holds.

A Windows guest's Hyper-V enlightenments do not start under TCG (QEMU
sets vpindex through KVM only: "kernel doesn't allow setting HyperV
VP_INDEX"), nor does the intel vIOMMU's eim (it needs KVM's split
irqchip); nested KVM hangs here. So on this host such a guest is refused
before anything exists, and the domain a KVM host would run is checked
as libvirt holds it once defined.
"""

import dataclasses

from lxml import etree
from nova.network import model
from nova import objects
from oslo_utils import uuidutils

from nova_kvmx.guest import planner
from nova_kvmx.guest import render
from tests.functional import base
from tests.functional import guest_image
from tests.functional import test_vif
from tests.unit import builders as b

HOST = '127.0.0.1'


class GuestDevicesTest(base.RealLibvirtTestCase):

    START_COMPUTE = False

    def setUp(self):
        super().setUp()
        # Redirected USB ports are SPICE channels.
        self.flags(enabled=True, server_listen=HOST,
                   server_proxyclient_address=HOST, group='spice')
        self.start_compute()

    def image(self, **properties):
        guest = guest_image.get_guest_artifacts()
        kernel_id = self._upload(guest.kernel, 'aki', 'kvmx-kernel')
        ramdisk_id = self._upload(guest.initramfs, 'ari', 'kvmx-initrd')
        return self._upload(guest.root_disk, 'qcow2', 'kvmx-guest',
                            kernel_id=kernel_id, ramdisk_id=ramdisk_id,
                            os_command_line=guest.cmdline, **properties)

    def test_devices_of_a_running_guest(self):
        flavor_id = self.create_flavor(name='kvmx.devices', extra_specs={
            'hw:viommu_model': 'auto',
            'hw:sound_model': 'ich9',
            'hw:usb_model': 'qemu-xhci',
            'hw:redirected_usb_ports': '2',
            'hw:virtio_packed_ring': 'true'})
        # Nova's scheduler requires COMPUTE_ADDRESS_SPACE_EMULATED and
        # COMPUTE_SOUND_MODEL_ICH9 for this server: the host reports them.
        image_id = self.image(hw_maxphysaddr_mode='emulate',
                              hw_maxphysaddr_bits=40)
        server = self._create_server(
            image_uuid=image_id, flavor_id=flavor_id, networks='none',
            expected_state='BUILD')
        server = self.wait_for_status(server, 'ACTIVE')
        self.wait_for_console(server, guest_image.BOOT_MARKER_PREFIX)

        # A NIC for the packed ring: a Linux bridge port, given to a hard
        # reboot (Nova 34 hands drivers no Linux bridge ports itself).
        bridge = 'kvmxbr' + uuidutils.generate_uuid()[:8]
        test_vif.ip('link', 'add', bridge, 'type', 'bridge')
        self.addCleanup(test_vif.ip, 'link', 'del', bridge)
        port_id = uuidutils.generate_uuid()
        port = model.VIF(
            id=port_id, address='fa:16:3e:7b:00:05', type='bridge',
            vnic_type='normal', devname=('tap' + port_id)[:14],
            network=model.Network(id=uuidutils.generate_uuid(),
                                  bridge=bridge, label='lb', subnets=[]))
        instance = objects.Instance.get_by_uuid(self.ctxt, server['id'])
        self.driver.reboot(self.ctxt, instance, [port], 'HARD')
        self.wait_for_console(server, guest_image.BOOT_MARKER_PREFIX,
                              count=2)

        dom = self.domain(server)
        self.assertTrue(dom.isActive())
        xml = etree.fromstring(dom.XMLDesc(0))
        iommu = xml.find('./devices/iommu')
        self.assertEqual('virtio', iommu.get('model'))
        self.assertEqual('qemu', xml.find('./features/ioapic').get('driver'))
        self.assertEqual('ich9', xml.find('./devices/sound').get('model'))
        usb = xml.find("./devices/controller[@type='usb'][@index='0']")
        self.assertEqual('qemu-xhci', usb.get('model'))
        self.assertEqual(
            [('spicevmc', 'usb')] * 2,
            [(r.get('type'), r.get('bus'))
             for r in xml.findall('./devices/redirdev')])
        nic = xml.find("./devices/interface[@type='bridge']")
        self.assertEqual('on', nic.find('driver').get('packed'))
        self.assertEqual({'mode': 'emulate', 'bits': '40'},
                         dict(xml.find('./cpu/maxphysaddr').attrib))

    def test_windows_guest_refused_under_tcg(self):
        message = self.boot_and_expect_error(
            self.image(os_type='windows'), self.create_flavor())
        self.assertIn('os_type', message)
        self.assertIn('KVM', message)


class KVMDomainTest(base.RealLibvirtTestCase):
    """The Windows and intel vIOMMU domain of a KVM host, defined (not
    started) in the real libvirtd: libvirt parsed and kept every
    element."""

    START_COMPUTE = False

    def test_windows_guest_with_intel_viommu(self):
        inst = b.instance(uuid=uuidutils.generate_uuid(),
                          flavor_obj=b.flavor(extra_specs={
                              'hw:viommu_model': 'intel',
                              'hw:hide_hypervisor_id': 'true'}))
        inst.os_type = 'windows'
        guest = planner.plan_guest(b.context(), inst, b.image(), b.files(),
                                   b.settings(virt_type='kvm'))
        dom = self.libvirt().defineXML(render.render_domain(
            dataclasses.replace(guest, name=self.domain_prefix + 'win')))
        self.addCleanup(dom.undefine)

        xml = etree.fromstring(dom.XMLDesc(0))
        self.assertEqual('kvm', xml.get('type'))
        self.assertEqual('localtime', xml.find('./clock').get('offset'))
        self.assertEqual('yes', xml.find(
            "./clock/timer[@name='hypervclock']").get('present'))
        hyperv = xml.find('./features/hyperv')
        self.assertEqual(
            {'relaxed', 'vapic', 'spinlocks', 'vendor_id', 'vpindex',
             'runtime', 'synic', 'reset', 'frequencies', 'tlbflush', 'ipi'},
            {e.tag for e in hyperv if e.get('state') == 'on'})
        self.assertEqual('8191', hyperv.find('spinlocks').get('retries'))
        iommu = xml.find('./devices/iommu')
        self.assertEqual('intel', iommu.get('model'))
        self.assertEqual(
            {'intremap': 'on', 'caching_mode': 'on', 'eim': 'on',
             'iotlb': 'on', 'aw_bits': '48'},
            dict(iommu.find('driver').attrib))
        self.assertEqual('qemu', xml.find('./features/ioapic').get('driver'))
