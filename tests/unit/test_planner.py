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

"""The planner's decisions: Nova's instance, flavor and image -> GuestSpec.

Pure data in, pure data out, so each decision is a table row. Where Nova
already decides (CPU topology), the expected values are Nova's.
"""

import ddt
from nova import exception
from nova.virt import hardware
import testtools

from nova_kvmx import exception as kvmx_exception
from tests.unit import builders as b


@ddt.ddt
class MachineTypeTest(testtools.TestCase):
    """An image may ask for a machine type; otherwise the host default."""

    @ddt.data(
        ({}, 'q35', 'q35'),
        ({}, 'pc-q35-7.2', 'pc-q35-7.2'),
        ({'hw_machine_type': 'pc-q35-6.2'}, 'q35', 'pc-q35-6.2'),
        ({'hw_machine_type': 'pc'}, 'q35', 'pc'),
    )
    @ddt.unpack
    def test_machine_type(self, props, default, expected):
        guest = b.plan(image_meta=b.image(**props),
                       driver_settings=b.settings(machine_type=default))
        self.assertEqual(expected, guest.machine_type)


@ddt.ddt
class CPUModeTest(testtools.TestCase):
    """KVM guests get the host CPU (NFV); TCG guests get QEMU's default
    unless the operator chose a mode."""

    @ddt.data(
        (dict(virt_type='kvm'), 'host-passthrough', None),
        (dict(virt_type='qemu'), None, None),
        (dict(virt_type='kvm', cpu_mode='none'), None, None),
        (dict(virt_type='qemu', cpu_mode='host-model'), 'host-model', None),
        (dict(cpu_mode='custom', cpu_models=('Skylake-Server', 'Haswell')),
         'custom', 'Skylake-Server'),
    )
    @ddt.unpack
    def test_mode_and_model(self, settings, mode, model):
        cpu = b.plan(driver_settings=b.settings(**settings)).cpu
        self.assertEqual((mode, model), (cpu.mode, cpu.model))

    def test_custom_without_models_is_a_typed_error(self):
        ex = self.assertRaises(
            exception.Invalid, b.plan,
            driver_settings=b.settings(cpu_mode='custom', cpu_models=()))
        self.assertIn('cpu_models', str(ex))


@ddt.ddt
class CPUTopologyTest(testtools.TestCase):
    """Flavor (and image) topology requests, resolved by Nova's
    hardware.get_best_cpu_topology: the rows are what Nova decides."""

    @ddt.data(
        (4, {}, {}, (4, 1, 1)),
        (4, {'hw:cpu_sockets': '2'}, {}, (2, 2, 1)),
        (6, {'hw:cpu_threads': '2'}, {}, (3, 1, 2)),
        (6, {'hw:cpu_cores': '3'}, {}, (2, 3, 1)),
        (8, {'hw:cpu_sockets': '1', 'hw:cpu_cores': '4',
             'hw:cpu_threads': '2'}, {}, (1, 4, 2)),
        (8, {'hw:cpu_max_sockets': '2'}, {}, (2, 4, 1)),
        (4, {}, {'hw_cpu_sockets': '1'}, (1, 4, 1)),
    )
    @ddt.unpack
    def test_topology(self, vcpus, extra_specs, props, expected):
        flavor = b.flavor(vcpus=vcpus, extra_specs=extra_specs)
        image = b.image(**props)
        cpu = b.plan(inst=b.instance(flavor_obj=flavor), image_meta=image).cpu
        self.assertEqual(expected, (cpu.sockets, cpu.cores, cpu.threads))
        nova = hardware.get_best_cpu_topology(flavor, image)
        self.assertEqual((nova.sockets, nova.cores, nova.threads), expected)


@ddt.ddt
class DiskTest(testtools.TestCase):
    """The root disk's bus comes from the image; the config drive is a
    read-only raw CD-ROM on SATA (q35 has no IDE)."""

    @ddt.data(
        ({}, 'virtio', 'vda'),
        ({'hw_disk_bus': 'virtio'}, 'virtio', 'vda'),
        ({'hw_disk_bus': 'scsi'}, 'scsi', 'sda'),
        ({'hw_disk_bus': 'sata'}, 'sata', 'sda'),
        ({'hw_disk_bus': 'usb'}, 'usb', 'sda'),
        ({'hw_disk_bus': 'ide', 'hw_machine_type': 'pc'}, 'ide', 'hda'),
    )
    @ddt.unpack
    def test_root_disk_bus(self, props, bus, dev):
        disks = b.plan(image_meta=b.image(**props)).disks
        self.assertEqual(1, len(disks))
        self.assertEqual((bus, dev, 'disk', 'qcow2', False, b.INST_DIR +
                          '/disk'),
                         (disks[0].bus, disks[0].target_dev, disks[0].device,
                          disks[0].driver_format, disks[0].readonly,
                          disks[0].path))

    def test_ide_without_an_ide_controller_is_refused_by_name(self):
        ex = self.assertRaises(
            kvmx_exception.UnsupportedKey, b.plan,
            image_meta=b.image(hw_disk_bus='ide'))
        self.assertIn('hw_disk_bus', str(ex))
        self.assertIn('no IDE controller', str(ex))

    @ddt.data('fdc', 'xen', 'uml', 'lxc')
    def test_bus_we_cannot_offer_is_a_typed_error(self, bus):
        ex = self.assertRaises(
            exception.UnsupportedHardware, b.plan,
            image_meta=b.image(hw_disk_bus=bus))
        self.assertIn(bus, str(ex))

    @ddt.data('none', 'writeback')
    def test_config_drive_and_cache(self, cache):
        disks = b.plan(guest_files=b.files(config_drive=True),
                       driver_settings=b.settings(disk_cache=cache)).disks
        self.assertEqual(2, len(disks))
        root, cdrom = disks
        self.assertEqual(cache, root.cache)
        self.assertEqual(
            (b.INST_DIR + '/disk.config', 'cdrom', 'sata', 'raw', True, cache),
            (cdrom.path, cdrom.device, cdrom.bus, cdrom.driver_format,
             cdrom.readonly, cdrom.cache))
        self.assertNotEqual(root.target_dev, cdrom.target_dev)

    @ddt.data(
        ({}, True, True, [('disk', 'vda'), ('disk.eph0', 'vdb'),
                          ('disk.swap', 'vdc')]),
        ({}, False, True, [('disk', 'vda'), ('disk.swap', 'vdb')]),
        ({'hw_disk_bus': 'scsi'}, True, False,
         [('disk', 'sda'), ('disk.eph0', 'sdb')]),
    )
    @ddt.unpack
    def test_ephemeral_and_swap_follow_root(self, props, eph, swap, expected):
        disks = b.plan(image_meta=b.image(**props),
                       guest_files=b.files(ephemeral=eph, swap=swap,
                                           config_drive=True)).disks
        self.assertEqual(
            expected + [('disk.config', 'sdz')],
            [(d.path.rsplit('/', 1)[1], d.target_dev) for d in disks])
        self.assertEqual({disks[0].bus}, {d.bus for d in disks[:-1]})


@ddt.ddt
class BootTest(testtools.TestCase):
    """Direct kernel boot when the instance has a kernel, else from disk."""

    def test_disk_boot(self):
        boot = b.plan(guest_files=b.files()).boot
        self.assertEqual((None, None, None),
                         (boot.kernel, boot.initrd, boot.cmdline))

    @ddt.data(True, False)
    def test_kernel_boot(self, ramdisk):
        boot = b.plan(guest_files=b.files(kernel=True, ramdisk=ramdisk)).boot
        self.assertEqual(b.INST_DIR + '/kernel', boot.kernel)
        self.assertEqual(b.INST_DIR + '/ramdisk' if ramdisk else None,
                         boot.initrd)

    def test_image_command_line_wins(self):
        boot = b.plan(guest_files=b.files(kernel=True),
                      image_meta=b.image(os_command_line='console=ttyS0 '
                                                         'quiet')).boot
        self.assertEqual('console=ttyS0 quiet', boot.cmdline)

    @ddt.data(('virtio', 'vda'), ('scsi', 'sda'), ('sata', 'sda'))
    @ddt.unpack
    def test_default_cmdline_names_the_root_disk(self, bus, dev):
        """root= must name the disk the guest really has: a SATA or SCSI
        root disk is /dev/sda, not /dev/vda (Nova's libvirt driver puts the
        root device name in its default command line for this reason)."""
        guest = b.plan(guest_files=b.files(kernel=True),
                       image_meta=b.image(hw_disk_bus=bus))
        args = guest.boot.cmdline.split()
        self.assertIn('root=/dev/' + dev, args)
        self.assertIn('console=ttyS0', args)

    def test_empty_os_command_line_means_the_default(self):
        """An empty os_command_line property is treated as absent, as Nova
        does (``if props.get('os_command_line')``): a kernel booted with an
        empty command line has no root= and no serial console."""
        boot = b.plan(guest_files=b.files(kernel=True),
                      image_meta=b.image(os_command_line='')).boot
        self.assertIn('root=/dev/vda', boot.cmdline.split())


class OwnerTest(testtools.TestCase):
    """Who owns the guest, for the domain's Nova metadata."""

    def test_owner_from_context_instance_flavor_image(self):
        flavor = b.flavor(vcpus=4, memory_mb=2048, root_gb=10,
                          ephemeral_gb=5, swap=256, name='nfv.large',
                          flavorid='nfv-large')
        owner = b.plan(inst=b.instance(display_name='vnf-1',
                                       flavor_obj=flavor),
                       ctxt=b.context('alice', 'nfv-lab')).owner
        self.assertEqual(
            ('vnf-1', 'nfv.large', 'nfv-large', 2048, 4, 10, 5, 256),
            (owner.display_name, owner.flavor_name, owner.flavor_id,
             owner.flavor_memory_mb, owner.flavor_vcpus,
             owner.flavor_root_gb, owner.flavor_ephemeral_gb,
             owner.flavor_swap_mb))
        self.assertEqual((b.USER_ID, 'alice', b.PROJECT_ID, 'nfv-lab'),
                         (owner.user_id, owner.user_name, owner.project_id,
                          owner.project_name))
        self.assertEqual(b.IMAGE_ID, owner.image_id)

    def test_no_display_name_and_no_image_id(self):
        owner = b.plan(inst=b.instance(display_name=None),
                       image_meta=b.image(with_id=False)).owner
        self.assertEqual('', owner.display_name)
        self.assertIsNone(owner.image_id)
