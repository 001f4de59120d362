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

"""Nova's [libvirt] hw_machine_type and the device traits Nova's image
metadata prefilter schedules with, on the real libvirtd."""

import os

from lxml import etree
import os_traits as ot
from nova import objects

from tests.functional import base
from tests.functional import guest_image


class MachineTypeTest(base.RealLibvirtTestCase):
    """The machine type a guest got at its first boot stays its own when
    the host's default changes (Nova records it with the instance)."""

    START_COMPUTE = False

    def machine(self, server):
        return etree.fromstring(self.domain(server).XMLDesc(0)).find(
            'os/type').get('machine')

    def boot(self, image_id, flavor_id):
        server = self._create_server(
            image_uuid=image_id, flavor_id=flavor_id, networks='none',
            expected_state='BUILD')
        return self.wait_for_status(server, 'ACTIVE')

    def test_machine_type_kept_across_default_change(self):
        self.flags(hw_machine_type=['aarch64=virt', 'x86_64=pc'],
                   group='libvirt')
        self.start_compute()
        image_id = self.create_bootable_image()
        flavor_id = self.create_flavor(vcpus=1, ram=256, disk=1)
        server = self.boot(image_id, flavor_id)
        self.wait_for_console(server, guest_image.BOOT_MARKER_PREFIX)
        # libvirt holds i440fx ('pc' is its alias), recorded for Nova.
        self.assertIn('i440fx', self.machine(server))
        instance = objects.Instance.get_by_uuid(
            self.ctxt, server['id'], expected_attrs=['system_metadata'])
        self.assertEqual('pc',
                         instance.system_metadata['image_hw_machine_type'])

        # The operator changes the default and restarts nova-compute.
        self.flags(hw_machine_type=['x86_64=q35'], group='libvirt')
        self.compute = self.restart_compute_service(
            self.compute, keep_hypervisor_state=False)
        self.driver = self.compute.manager.driver
        self.api.post_server_action(server['id'],
                                    {'reboot': {'type': 'HARD'}})
        server = self.wait_for_status(server, 'ACTIVE')
        self.wait_for_console(server, guest_image.BOOT_MARKER_PREFIX,
                              count=2)
        self.assertIn('i440fx', self.machine(server))

        # A new guest gets the new default.
        other = self.boot(image_id, flavor_id)
        self.assertIn('q35', self.machine(other))


class ImageMetadataPrefilterTest(base.RealLibvirtTestCase):
    """``[scheduler] image_metadata_prefilter``: an image's hw_disk_bus
    becomes a required COMPUTE_STORAGE_BUS_* trait, which this host reports
    only for the buses nova-kvmx gives guests."""

    def setUp(self):
        super().setUp()
        self.flags(image_metadata_prefilter=True, group='scheduler')
        self.guest = guest_image.get_guest_artifacts()
        self.kernel_id = self._upload(self.guest.kernel, 'aki', 'kernel')
        self.ramdisk_id = self._upload(self.guest.initramfs, 'ari', 'initrd')
        self.flavor_id = self.create_flavor(vcpus=1, ram=256, disk=1)

    def image(self, **properties):
        return self._upload(
            self.guest.root_disk, 'qcow2', 'kvmx-guest',
            kernel_id=self.kernel_id, ramdisk_id=self.ramdisk_id,
            os_command_line=self.guest.cmdline, **properties)

    def test_reported_bus_boots_refused_bus_has_no_host(self):
        traits = self.traits()
        self.assertLessEqual({ot.COMPUTE_STORAGE_BUS_VIRTIO,
                              ot.COMPUTE_STORAGE_BUS_SCSI,
                              ot.COMPUTE_STORAGE_BUS_SATA,
                              ot.COMPUTE_STORAGE_BUS_USB,
                              ot.HW_ARCH_X86_64,
                              ot.COMPUTE_GRAPHICS_MODEL_VIRTIO,
                              ot.COMPUTE_NET_VIF_MODEL_VIRTIO,
                              ot.COMPUTE_SOCKET_PCI_NUMA_AFFINITY}, traits)
        # The default machine type (q35) has no IDE controller.
        self.assertNotIn(ot.COMPUTE_STORAGE_BUS_IDE, traits)
        self.assertNotIn(ot.COMPUTE_VIOMMU_MODEL_INTEL, traits)

        server = self._create_server(
            image_uuid=self.image(hw_disk_bus='scsi',
                                  hw_scsi_model='virtio-scsi'),
            flavor_id=self.flavor_id, networks='none',
            expected_state='BUILD')
        server = self.wait_for_status(server, 'ACTIVE')
        self.wait_for_console(server, guest_image.BOOT_MARKER_PREFIX)
        xml = etree.fromstring(self.domain(server).XMLDesc(0))
        self.assertEqual('scsi', xml.find(
            "devices/disk[@device='disk']/target").get('bus'))

        refused = self._create_server(
            image_uuid=self.image(hw_disk_bus='ide'),
            flavor_id=self.flavor_id, networks='none',
            expected_state='BUILD')
        refused = self.wait_for_status(refused, 'ERROR')
        self.assertIn('No valid host', refused['fault']['message'])
        self.assertFalse(self.domain_exists(refused))


class DiskBusTest(base.RealLibvirtTestCase):
    """``hw_disk_bus`` usb and ide (the latter on an i440fx machine) as
    the root disk's bus of a guest that boots; ide on q35 refused by name
    with nothing left behind."""

    def setUp(self):
        super().setUp()
        self.guest = guest_image.get_guest_artifacts()
        self.kernel_id = self._upload(self.guest.kernel, 'aki', 'kernel')
        self.ramdisk_id = self._upload(self.guest.initramfs, 'ari', 'initrd')
        self.flavor_id = self.create_flavor(vcpus=1, ram=256, disk=1)

    def boot(self, state, **properties):
        image_id = self._upload(
            self.guest.root_disk, 'qcow2', 'kvmx-guest',
            kernel_id=self.kernel_id, ramdisk_id=self.ramdisk_id,
            os_command_line=self.guest.cmdline, **properties)
        server = self._create_server(
            image_uuid=image_id, flavor_id=self.flavor_id, networks='none',
            expected_state='BUILD')
        return self.wait_for_status(server, state)

    def root_target(self, server):
        return etree.fromstring(self.domain(server).XMLDesc(0)).find(
            "devices/disk[@device='disk']/target")

    def test_usb_and_ide_root_disks(self):
        for props, bus, dev in (
                ({'hw_disk_bus': 'usb'}, 'usb', 'sda'),
                ({'hw_disk_bus': 'ide', 'hw_machine_type': 'pc'}, 'ide',
                 'hda')):
            server = self.boot('ACTIVE', **props)
            self.wait_for_console(server, guest_image.BOOT_MARKER_PREFIX)
            target = self.root_target(server)
            self.assertEqual((bus, dev), (target.get('bus'),
                                          target.get('dev')))
            self._delete_server(server)

    def test_ide_on_q35_is_refused_by_name(self):
        server = self.boot('ERROR', hw_disk_bus='ide')
        self.assertIn('hw_disk_bus', server['fault']['message'])
        self.assertFalse(self.domain_exists(server))
        self.assertFalse(os.path.exists(self.instance_dir(server)))
