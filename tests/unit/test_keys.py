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

"""Every key Nova defines is honoured, refused by name or not applicable.

The keys are Nova's own: the names its extra spec validators register and
the fields of ImageMetaProps. A key Nova adds in a later release and
nobody listed in nova_kvmx.guest.keys fails here.
"""

import dataclasses
import os

import ddt
from nova.api.validation.extra_specs import validators
from nova import exception as nova_exception
from nova import objects
import testtools

from nova_kvmx import exception
from nova_kvmx.guest import keys
from nova_kvmx.guest import qos
from nova_kvmx.guest import render
from tests.unit import builders as b
from tests.unit import nfv
from tests.unit import xml_schema

objects.register_all()
validators.load_validators()

TABLES = {'honoured': keys.HONOURED, 'refused': keys.REFUSED,
          'not applicable': keys.NOT_APPLICABLE}
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def nova_keys():
    """{entry name: [Nova's names]} of every flavor extra spec Nova
    validates and every image property ImageMetaProps has."""
    names = list(validators.VALIDATORS) + list(objects.ImageMetaProps.fields)
    result = {}
    for name in names:
        result.setdefault(keys.entry_name(name), []).append(name)
    return result


DEDICATED = {'hw:cpu_policy': 'dedicated'}
REALTIME = dict(DEDICATED, **{'hw:cpu_realtime': 'yes'})
TWO_CELLS = {'hw:numa_nodes': '2'}
UEFI = {'hw_firmware_type': 'uefi'}
VTPM_SECRET = '0b7c5b6e-3a1d-4c2e-9f8a-6d5e4c3b2a19'


def numa_cells(cpus0, cpus1, mem0, mem1):
    return dict(TWO_CELLS, **{
        'hw:numa_cpus.0': cpus0, 'hw:numa_cpus.1': cpus1,
        'hw:numa_mem.0': str(mem0), 'hw:numa_mem.1': str(mem1)})


def image_cells(cpus0, cpus1, mem0, mem1):
    return {'hw_numa_nodes': 2, 'hw_numa_cpus.0': cpus0,
            'hw_numa_cpus.1': cpus1, 'hw_numa_mem.0': mem0,
            'hw_numa_mem.1': mem1}


# Honoured key -> ((flavor extra specs, image properties) asking for it,
# the same without it). The guest asking for it must differ from the other:
# another domain, or Nova's own error for a value it cannot have.
SAMPLES = {
    'hw:cpu_sockets': (({'hw:cpu_sockets': '2'}, {}), ({}, {})),
    'hw:cpu_cores': (({'hw:cpu_cores': '2'}, {}), ({}, {})),
    'hw:cpu_threads': (({'hw:cpu_threads': '2'}, {}), ({}, {})),
    'hw:cpu_max_sockets': (({'hw:cpu_max_sockets': '2'}, {}), ({}, {})),
    'hw:cpu_max_cores': (
        ({'hw:cpu_max_sockets': '1', 'hw:cpu_max_cores': '2'}, {}),
        ({'hw:cpu_max_sockets': '1'}, {})),
    'hw:cpu_max_threads': (
        ({'hw:cpu_max_threads': '1'}, {'hw_cpu_threads': 2}),
        ({}, {'hw_cpu_threads': 2})),
    'hw_cpu_sockets': (({}, {'hw_cpu_sockets': 2}), ({}, {})),
    'hw_cpu_cores': (({}, {'hw_cpu_cores': 2}), ({}, {})),
    'hw_cpu_threads': (({}, {'hw_cpu_threads': 2}), ({}, {})),
    'hw_cpu_max_sockets': (({}, {'hw_cpu_max_sockets': 2}), ({}, {})),
    'hw_cpu_max_cores': (
        ({}, {'hw_cpu_max_sockets': 1, 'hw_cpu_max_cores': 2}),
        ({}, {'hw_cpu_max_sockets': 1})),
    'hw_cpu_max_threads': (
        ({}, {'hw_cpu_max_sockets': 1, 'hw_cpu_max_cores': 1,
              'hw_cpu_max_threads': 2}),
        ({}, {'hw_cpu_max_sockets': 1, 'hw_cpu_max_cores': 1})),
    'hw:cpu_policy': ((DEDICATED, {}), ({}, {})),
    'hw_cpu_policy': (({}, {'hw_cpu_policy': 'dedicated'}), ({}, {})),
    'hw:cpu_dedicated_mask': (
        ({'hw:cpu_policy': 'mixed', 'hw:cpu_dedicated_mask': '^0'}, {}),
        ({'hw:cpu_policy': 'mixed', 'hw:cpu_dedicated_mask': '^0-1'}, {})),
    'hw:emulator_threads_policy': (
        (dict(DEDICATED, **{'hw:emulator_threads_policy': 'isolate'}), {}),
        (DEDICATED, {})),
    'hw:numa_nodes': ((TWO_CELLS, {}), ({}, {})),
    'hw_numa_nodes': (({}, {'hw_numa_nodes': 2}), ({}, {})),
    'hw:numa_cpus.{num}': ((numa_cells('0', '1-3', 1024, 1024), {}),
                           (numa_cells('0-1', '2-3', 1024, 1024), {})),
    'hw:numa_mem.{num}': ((numa_cells('0-1', '2-3', 512, 1536), {}),
                          (numa_cells('0-1', '2-3', 1024, 1024), {})),
    'hw_numa_cpus': (({}, image_cells('0', '1-3', 1024, 1024)),
                     ({}, image_cells('0-1', '2-3', 1024, 1024))),
    'hw_numa_mem': (({}, image_cells('0-1', '2-3', 512, 1536)),
                    ({}, image_cells('0-1', '2-3', 1024, 1024))),
    'hw:mem_page_size': (({'hw:mem_page_size': 'large'}, {}), ({}, {})),
    'hw_mem_page_size': (
        ({'hw:mem_page_size': 'large'}, {'hw_mem_page_size': '2MB'}),
        ({'hw:mem_page_size': 'large'}, {})),
    'hw:cpu_realtime': (
        (dict(REALTIME, **{'hw:cpu_realtime_mask': '^0'}), {}),
        (dict(DEDICATED, **{'hw:cpu_realtime_mask': '^0'}), {})),
    'hw:cpu_realtime_mask': (
        (dict(REALTIME, **{'hw:cpu_realtime_mask': '^0'}), {}),
        (dict(REALTIME, **{'hw:cpu_realtime_mask': '^0-1'}), {})),
    'hw_cpu_realtime_mask': (
        (REALTIME, {'hw_cpu_realtime_mask': '^0'}),
        (REALTIME, {'hw_cpu_realtime_mask': '^0-1'})),
    'hw:locked_memory': (
        ({'hw:mem_page_size': 'large', 'hw:locked_memory': 'true'}, {}),
        ({'hw:mem_page_size': 'large'}, {})),
    'hw_locked_memory': (
        ({'hw:mem_page_size': 'large'}, {'hw_locked_memory': True}),
        ({'hw:mem_page_size': 'large'}, {})),
    'hw:pmu': (({'hw:pmu': 'false'}, {}), ({}, {})),
    'hw_pmu': (({}, {'hw_pmu': False}), ({}, {})),
    'quota:cpu_shares': (({'quota:cpu_shares': '2048'}, {}), ({}, {})),
    'quota:cpu_period': (({'quota:cpu_period': '20000'}, {}), ({}, {})),
    'quota:cpu_quota': (({'quota:cpu_quota': '10000'}, {}), ({}, {})),
    'hw_disk_bus': (({}, {'hw_disk_bus': 'sata'}), ({}, {})),
    'hw_machine_type': (({}, {'hw_machine_type': 'pc'}), ({}, {})),
    'hw_qemu_guest_agent': (({}, {'hw_qemu_guest_agent': True}), ({}, {})),
    'hw:watchdog_action': (({'hw:watchdog_action': 'reset'}, {}), ({}, {})),
    'hw_watchdog_action': (({}, {'hw_watchdog_action': 'reset'}), ({}, {})),
    'hw_rng:allowed': (({'hw_rng:allowed': 'False'}, {}), ({}, {})),
    'hw_rng:rate_bytes': (
        ({'hw_rng:rate_bytes': '1024', 'hw_rng:rate_period': '2'}, {}),
        ({'hw_rng:rate_period': '2'}, {})),
    'hw_rng:rate_period': (
        ({'hw_rng:rate_bytes': '1024', 'hw_rng:rate_period': '2'}, {}),
        ({'hw_rng:rate_bytes': '1024'}, {})),
    'hw:boot_menu': (({'hw:boot_menu': 'yes'}, {}), ({}, {})),
    'hw_boot_menu': (({}, {'hw_boot_menu': True}), ({}, {})),
    'hide_hypervisor_id': (({'hide_hypervisor_id': 'true'}, {}), ({}, {})),
    'hw:hide_hypervisor_id': (
        ({'hw:hide_hypervisor_id': 'true'}, {}), ({}, {})),
    'img_hide_hypervisor_id': (
        ({}, {'img_hide_hypervisor_id': True}), ({}, {})),
    'hw_time_hpet': (({}, {'hw_time_hpet': True}), ({}, {})),
    'hw_video_model': (({}, {'hw_video_model': 'vga'}), ({}, {})),
    'hw_video_ram': (
        ({'hw_video:ram_max_mb': '64'}, {'hw_video_ram': 32}),
        ({'hw_video:ram_max_mb': '64'}, {})),
    'hw_video:ram_max_mb': (
        ({'hw_video:ram_max_mb': '64'}, {'hw_video_ram': 32}),
        ({}, {'hw_video_ram': 32})),
    'hw_pointer_model': (({}, {'hw_pointer_model': 'usbtablet'}), ({}, {})),
    'hw_input_bus': (({}, {'hw_input_bus': 'virtio'}), ({}, {})),
    'hw_scsi_model': (
        ({}, {'hw_disk_bus': 'scsi', 'hw_scsi_model': 'virtio-scsi'}),
        ({}, {'hw_disk_bus': 'scsi'})),
    'hw_firmware_type': (({}, UEFI), ({}, {})),
    'hw_firmware_stateless': (
        ({}, dict(UEFI, hw_firmware_stateless=True)), ({}, UEFI)),
    'os:secure_boot': (({'os:secure_boot': 'required'}, UEFI), ({}, UEFI)),
    'os_secure_boot': (
        ({}, dict(UEFI, os_secure_boot='required')), ({}, UEFI)),
    'hw:tpm_version': (({'hw:tpm_version': '2.0'}, {}), ({}, {})),
    'hw_tpm_version': (({}, {'hw_tpm_version': '2.0'}), ({}, {})),
    'hw:tpm_model': (
        ({'hw:tpm_version': '2.0', 'hw:tpm_model': 'tpm-crb'}, {}),
        ({'hw:tpm_version': '2.0'}, {})),
    'hw_tpm_model': (
        ({}, {'hw_tpm_version': '2.0', 'hw_tpm_model': 'tpm-crb'}),
        ({}, {'hw_tpm_version': '2.0'})),
    'hw:viommu_model': (({'hw:viommu_model': 'virtio'}, {}), ({}, {})),
    'hw_viommu_model': (({}, {'hw_viommu_model': 'intel'}), ({}, {})),
    'hw_maxphysaddr_mode': (
        ({}, {'hw_maxphysaddr_mode': 'passthrough'}), ({}, {})),
    'hw_maxphysaddr_bits': (
        ({}, {'hw_maxphysaddr_mode': 'passthrough',
              'hw_maxphysaddr_bits': 42}),
        ({}, {'hw_maxphysaddr_mode': 'passthrough'})),
    'hw:usb_model': (({'hw:usb_model': 'qemu-xhci'}, {}), ({}, {})),
    'hw_usb_model': (({}, {'hw_usb_model': 'nec-xhci'}), ({}, {})),
    'hw:sound_model': (({'hw:sound_model': 'ich9'}, {}), ({}, {})),
    'hw_sound_model': (({}, {'hw_sound_model': 'ac97'}), ({}, {})),
    'hw_emulation_architecture': (
        ({}, {'hw_emulation_architecture': 'i686'}), ({}, {})),
    'os_type': (({}, {'os_type': 'windows'}), ({}, {'os_type': 'linux'})),
}
for _name in qos.DISK_KEYS:
    SAMPLES['quota:' + _name] = (({'quota:' + _name: '1000'}, {}), ({}, {}))

# Honoured keys whose effect needs more than a flavor and an image (a
# port, a claimed PCI device, a kernel, a snapshot): where it is tested.
TESTED_ELSEWHERE = {
    # How long the libvirt secret stays, not the domain.
    'hw:tpm_secret_security': 'tests/unit/test_vtpm.py',
    'trait{group}:*': 'tests/unit/test_cpu_options.py',
    'pci_passthrough:alias': 'tests/unit/test_guest_devices.py',
    'hw:vif_multiqueue_enabled': 'tests/unit/test_guest_devices.py',
    'hw_vif_multiqueue_enabled': 'tests/unit/test_guest_devices.py',
    'hw_vif_model': 'tests/unit/test_guest_devices.py',
    'os_command_line': 'tests/unit/test_planner.py',
    # The same pinning as 'prefer' on an SMT host with free sibling pairs.
    'hw:cpu_thread_policy': 'tests/unit/test_render_numa.py',
    'hw_cpu_thread_policy': 'tests/unit/test_render_numa.py',
    'os_require_quiesce': 'tests/unit/test_quiesce.py',
    # The guest agent's set-user-password, not the domain.
    'os_admin_user': 'tests/unit/test_guest_actions.py',
    # Properties of the rescue image, not of the guest's own.
    'hw_rescue_device': 'tests/unit/test_rescue_device.py',
    'hw_rescue_bus': 'tests/unit/test_rescue_device.py',
    **{'quota:' + name: 'tests/unit/test_qos.py' for name in qos.VIF_KEYS},
    # Nova's configdrive.required_by reads it; storage makes the drive.
    'img_config_drive': 'nova_kvmx/storage/__init__.py',
    # Ports of the serial console, acquired outside the plan.
    'hw:serial_port_count': 'tests/unit/test_consoles.py',
    'hw_serial_port_count': 'tests/unit/test_consoles.py',
    # A NIC's, a config drive's, a SPICE console's.
    'hw:virtio_packed_ring': 'tests/unit/test_hwdevices.py',
    'hw_virtio_packed_ring': 'tests/unit/test_hwdevices.py',
    'hw_cdrom_bus': 'tests/unit/test_hwdevices.py',
    'hw:redirected_usb_ports': 'tests/unit/test_hwdevices.py',
    'hw_redirected_usb_ports': 'tests/unit/test_hwdevices.py',
}
ELSEWHERE_MARK = {'img_config_drive': 'configdrive.required_by',
                  'trait{group}:*': 'test_flavor_traits_pick_the_model',
                  'pci_passthrough:alias': 'test_flavor_alias_devices'}


def guest(specs, props):
    """(domain XML or Nova's exception class) of a 4-vCPU, 2 GiB guest
    with these extra specs and image properties, claimed on the NFV
    host as Nova would; the host has a VNC console and no default
    pointer; its firmware can be UEFI with Secure Boot."""
    host = nfv.NFVHost()
    host.setUp()
    host.settings = dataclasses.replace(
        host.settings, vnc_listen='127.0.0.1', pointer_model='ps2mouse',
        uefi=True, secure_boot=True, stateless_firmware=True,
        tpm_versions=('1.2', '2.0'), tpm_models=('tpm-tis', 'tpm-crb'),
        tpm_secret_security=('user', 'host'))
    try:
        image_meta = b.image(**props)
        try:
            inst = host.instance(image_meta=image_meta, **{
                k.replace('hw:', 'hw_', 1): v for k, v in specs.items()
                if k.startswith('hw:')})
            inst.flavor.extra_specs.update(specs)
            inst.system_metadata = {'vtpm_secret_uuid': VTPM_SECRET}
            return render.render_domain(nfv.plan(host, inst, image_meta))
        except nova_exception.NovaException as ex:
            return type(ex)
    finally:
        host.cleanUp()


@ddt.ddt
class TestEveryKeyIsListed(testtools.TestCase):

    def test_each_nova_key_in_exactly_one_table(self):
        for name, nova_names in sorted(nova_keys().items()):
            found = [table for table, entries in TABLES.items()
                     if name in entries]
            self.assertEqual(1, len(found), '%s (Nova: %s) is in %s' % (
                name, ', '.join(nova_names), found or 'no table'))

    def test_no_table_lists_a_key_nova_does_not_define(self):
        known = nova_keys()
        for table, entries in TABLES.items():
            for name in entries:
                self.assertIn(name, known, '%s lists %s' % (table, name))

    def test_every_honoured_key_has_a_test(self):
        for name in keys.HONOURED:
            if name in TESTED_ELSEWHERE:
                path = os.path.join(ROOT, TESTED_ELSEWHERE[name])
                with open(path, encoding='utf-8') as f:
                    self.assertIn(ELSEWHERE_MARK.get(name, name), f.read())
            else:
                self.assertIn(name, SAMPLES)

    @ddt.data(*sorted(SAMPLES))
    def test_honoured_key_changes_the_guest(self, name):
        (specs, props), (base_specs, base_props) = SAMPLES[name]
        wanted = guest(specs, props)
        self.assertNotEqual(guest(base_specs, base_props), wanted)
        if isinstance(wanted, str):
            xml_schema.assert_valid_domain(self, wanted)


# A value each refused key is refused for (as Nova's API accepts it).
REFUSED_VALUES = {
    'accel:device_profile': 'gpu',
    'hw:mem_encryption_model': 'amd-sev',
    'hw_mem_encryption_model': 'amd-sev', 'hw:pmem': '4GB',
    'hw:ephemeral_encryption_format': 'luks',
    'hw_ephemeral_encryption_format': 'luks',
    'hw_ephemeral_encryption_secret_uuid':
        '7ad4b6f5-1f4a-4b36-9d5b-7b5a2c3a1f00',
    'hw_vm_mode': 'xen',
}


@ddt.ddt
class TestRefusedByName(testtools.TestCase):

    @ddt.data(*sorted(keys.REFUSED))
    def test_refused_key_names_itself(self, name):
        value = REFUSED_VALUES.get(name, 'true')
        flavor_key = name not in objects.ImageMetaProps.fields
        specs = {name: value} if flavor_key else {}
        props = {} if flavor_key else {name: value}
        ex = self.assertRaises(
            exception.UnsupportedKey, b.plan,
            inst=b.instance(flavor_obj=b.flavor(extra_specs=specs)),
            image_meta=b.image(**props))
        self.assertIsInstance(ex, nova_exception.Invalid)
        self.assertIn(name, str(ex))

    @ddt.data(('hw_firmware_type', 'bios'), ('hw_vm_mode', 'hvm'),
              ('os_type', 'linux'))
    @ddt.unpack
    def test_value_asking_for_nothing_new_is_accepted(self, name, value):
        b.plan(image_meta=b.image(**{name: value}))


class TestReadmeTable(testtools.TestCase):

    def test_readme_table_is_the_modules(self):
        with open(os.path.join(ROOT, 'README.md'), encoding='utf-8') as f:
            readme = f.read()
        start = readme.index('<!-- keys table: generated by')
        start = readme.index('\n', start) + 1
        end = readme.index('<!-- end of keys table -->')
        self.assertEqual(
            keys.markdown_table(), readme[start:end],
            'README.md: paste nova_kvmx.guest.keys.markdown_table() '
            'between the keys table markers')
