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

"""What nova-kvmx does with every flavor extra spec and image property.

Nova's API validators (``nova.api.validation.extra_specs``) and
``nova.objects.ImageMetaProps`` define the keys; each is in exactly one of
three tables here:

- :data:`HONOURED`: realised in the domain (or by the operation that
  reads it), as Nova's libvirt driver realises it;
- :data:`REFUSED`: not realised yet, so a guest asking for it is refused
  with :class:`nova_kvmx.exception.UnsupportedKey` naming the key, before
  anything is created, unless its value asks for nothing the guest does
  not already do (e.g. ``hw_time_hpet=False``);
- :data:`NOT_APPLICABLE`: Nova's libvirt driver does not act on it
  (another driver's key, or one Nova's API, scheduler or claims consume),
  with the reason.

A key nobody listed is a key nobody looked at: the unit tests fail for it.

Pure: Nova objects in, an exception or nothing out.
"""

import dataclasses
import re

from oslo_utils import strutils

from nova_kvmx import exception
from nova_kvmx.guest import qos

# The scheduler's namespaces, each with its request group suffix (Nova's
# validators spell it ``{group}``): every name in them (one per trait, per
# resource class, ...) is listed by its namespace.
_NAMESPACE = re.compile(
    r'(?P<ns>trait|resources)(\{group\}|[a-zA-Z0-9_-]*):|capabilities:')
_NUMBERED = re.compile(r'(?P<name>hw:numa_(cpus|mem)\.)(\{num\}|\d+)$')


def entry_name(key):
    """The name a key is listed under: itself, its numbered pattern
    (``hw:numa_cpus.0`` -> ``hw:numa_cpus.{num}``) or its namespace
    (``trait:HW_CPU_X86_AVX`` -> ``trait{group}:*``). Nova's validator
    names (with ``{group}`` and ``{num}``) map the same way."""
    match = _NAMESPACE.match(key)
    if match:
        ns = match.group('ns')
        return ns + '{group}:*' if ns else 'capabilities:*'
    match = _NUMBERED.match(key)
    if match:
        return match.group('name') + '{num}'
    return key


def _false(value):
    return not strutils.bool_from_string(str(value), default=True)


_false.accepted = 'false'


def _unset_or(*values):
    allowed = {str(v).lower() for v in values}

    def accepts(value):
        return str(value).lower() in allowed
    accepts.accepted = ', '.join(str(v) for v in values)
    return accepts


@dataclasses.dataclass(frozen=True)
class Refused:
    """A key refused with UnsupportedKey; ``accepts(value)`` True for the
    values that ask for nothing beyond what the guest already does."""

    reason: str
    accepts: object = None

    def refuses(self, value):
        return self.accepts is None or not self.accepts(value)


_TOPOLOGY = '<cpu><topology> (nova.virt.hardware.get_best_cpu_topology)'
_CLAIM = ('the guest cells, pinning and memory of the NUMA claim '
          '(<numatune>, <cputune>, <cpu><numa>)')
_PAGES = '<memoryBacking><hugepages> of the NUMA claim'
_REALTIME = '<cputune><vcpusched> realtime vCPUs, locked memory'

_WATCHDOG = "<watchdog model='i6300esb' action>"
_RNG = "<rng model='virtio'> (unless hw_rng:allowed=False)"
_HIDDEN = '<features><kvm><hidden state=on>'
_VIDEO = '<video><model>'
_SERIAL = ("one <serial type='tcp'> each (up to 3) with [serial_console] "
           "enabled; without it Nova's libvirt driver does not read it "
           "either: the guest has its one logged <serial type='pty'>")
_UEFI = ("<os firmware='efi'> (libvirt chooses OVMF; its NVRAM is kept "
         'across hard reboots and removed with the server)')
_SECURE_BOOT = ("<firmware><feature name='secure-boot'> and <loader "
                'secure> of a UEFI guest: required, or optional where the '
                'host can')
_VTPM = ("<tpm><backend type='emulator' version> (swtpm, with [libvirt] "
         'swtpm_enabled), its state encrypted with a key manager secret')
_TPM_MODEL = '<tpm model> of the emulated TPM (tpm-tis, tpm-crb)'

_VIOMMU = ("<iommu> with <features><ioapic driver='qemu'> (q35; intel "
           'under KVM only)')
_PACKED = "<interface><driver packed='on'> of virtio NICs"
_MAXPHYSADDR = '<cpu><maxphysaddr mode bits>'
_USB = "<controller type='usb' index='0' model>"
_REDIRDEV = "<redirdev type='spicevmc' bus='usb'> each (with SPICE)"
_SOUND = '<sound model>'

# key -> what it becomes.
HONOURED = {
    'hw:cpu_sockets': _TOPOLOGY, 'hw:cpu_cores': _TOPOLOGY,
    'hw:cpu_threads': _TOPOLOGY, 'hw:cpu_max_sockets': _TOPOLOGY,
    'hw:cpu_max_cores': _TOPOLOGY, 'hw:cpu_max_threads': _TOPOLOGY,
    'hw_cpu_sockets': _TOPOLOGY, 'hw_cpu_cores': _TOPOLOGY,
    'hw_cpu_threads': _TOPOLOGY, 'hw_cpu_max_sockets': _TOPOLOGY,
    'hw_cpu_max_cores': _TOPOLOGY, 'hw_cpu_max_threads': _TOPOLOGY,
    'hw:cpu_policy': _CLAIM, 'hw_cpu_policy': _CLAIM,
    'hw:cpu_thread_policy': _CLAIM, 'hw_cpu_thread_policy': _CLAIM,
    'hw:cpu_dedicated_mask': _CLAIM,
    'hw:emulator_threads_policy': '<cputune><emulatorpin> of the claim',
    'hw:numa_nodes': _CLAIM, 'hw_numa_nodes': _CLAIM,
    'hw:numa_cpus.{num}': _CLAIM, 'hw_numa_cpus': _CLAIM,
    'hw:numa_mem.{num}': _CLAIM, 'hw_numa_mem': _CLAIM,
    'hw:mem_page_size': _PAGES, 'hw_mem_page_size': _PAGES,
    'hw:cpu_realtime': _REALTIME,
    'hw:cpu_realtime_mask': _REALTIME, 'hw_cpu_realtime_mask': _REALTIME,
    'hw:locked_memory': '<memoryBacking><locked/>',
    'hw_locked_memory': '<memoryBacking><locked/>',
    'hw:pmu': '<features><pmu>', 'hw_pmu': '<features><pmu>',
    'quota:cpu_shares': '<cputune><shares>',
    'quota:cpu_period': '<cputune><period>',
    'quota:cpu_quota': '<cputune><quota>',
    'pci_passthrough:alias': '<hostdev> of each PCI device Nova claimed',
    'hw:vif_multiqueue_enabled': '<interface><driver queues>',
    'hw_vif_multiqueue_enabled': '<interface><driver queues>',
    'hw_vif_model': '<interface><model>',
    'hw_disk_bus': '<disk><target bus> (virtio, scsi, sata, usb; ide '
                   'with hw_machine_type=pc)',
    'hw_machine_type': '<os><type machine> (else [libvirt] '
                       "hw_machine_type's, kept with the instance)",
    'trait{group}:*': "the scheduler's (Placement traits); with "
                      '[libvirt] cpu_mode=custom, required HW_CPU_X86_* '
                      'traits pick the <cpu><model> among cpu_models',
    'os_command_line': '<os><cmdline> of a direct kernel boot',
    'hw_qemu_guest_agent': 'the guest agent <channel>',
    'os_admin_user': 'the account whose password set_admin_password '
                     'changes through the guest agent',
    'os_require_quiesce': 'snapshots fail unless the guest agent '
                          'quiesces the file systems',
    'img_config_drive': 'a config drive (nova.virt.configdrive)',
    'hw:watchdog_action': _WATCHDOG, 'hw_watchdog_action': _WATCHDOG,
    'hw_rng:allowed': _RNG, 'hw_rng:rate_bytes': _RNG + ' <rate bytes>',
    'hw_rng:rate_period': _RNG + ' <rate period>',
    'hw:boot_menu': '<os><bootmenu>', 'hw_boot_menu': '<os><bootmenu>',
    'hide_hypervisor_id': _HIDDEN, 'hw:hide_hypervisor_id': _HIDDEN,
    'img_hide_hypervisor_id': _HIDDEN,
    'hw_time_hpet': '<clock><timer name=hpet present>',
    'hw_video_model': _VIDEO + ' model (a guest with VNC or SPICE)',
    'hw_video_ram': _VIDEO + ' vram (a guest with VNC or SPICE)',
    'hw_video:ram_max_mb': 'the largest hw_video_ram',
    'hw_pointer_model': '<input type=tablet bus=usb> (a guest with VNC or '
                        'SPICE)',
    'hw_input_bus': '<input type=tablet> and <input type=keyboard> on '
                    'that bus (a guest with VNC or SPICE)',
    'hw:serial_port_count': _SERIAL, 'hw_serial_port_count': _SERIAL,
    'hw_scsi_model': "<controller type='scsi' model='virtio-scsi'>",
    'hw_firmware_type': _UEFI + ' (uefi), else the BIOS',
    'hw_firmware_stateless': "<loader stateless='yes'> of a UEFI guest, "
                             'no NVRAM (where a firmware descriptor of '
                             'the host offers it)',
    'os:secure_boot': _SECURE_BOOT, 'os_secure_boot': _SECURE_BOOT,
    'hw:tpm_version': _VTPM, 'hw_tpm_version': _VTPM,
    'hw:tpm_model': _TPM_MODEL, 'hw_tpm_model': _TPM_MODEL,
    'hw:tpm_secret_security': 'how long the vTPM secret stays defined in '
                              'libvirt (user, host, deployment)',
    'hw_cdrom_bus': "the config drive's <disk device='cdrom'><target bus> "
                    '(sata, scsi, usb; ide off q35)',
    'hw:viommu_model': _VIOMMU, 'hw_viommu_model': _VIOMMU,
    'hw:virtio_packed_ring': _PACKED, 'hw_virtio_packed_ring': _PACKED,
    'hw_maxphysaddr_mode': _MAXPHYSADDR, 'hw_maxphysaddr_bits': _MAXPHYSADDR,
    'hw:usb_model': _USB, 'hw_usb_model': _USB,
    'hw:redirected_usb_ports': _REDIRDEV,
    'hw_redirected_usb_ports': _REDIRDEV,
    'hw:sound_model': _SOUND, 'hw_sound_model': _SOUND,
    'hw_emulation_architecture': '<os><type arch> when libvirt lists an '
                                 'emulator for it (else refused by name)',
    'os_type': "windows: <clock offset='localtime'>, <timer "
               "name='hypervclock'>, <features><hyperv> (under KVM)",
    # Of the rescue image (nova_kvmx.rescue).
    'hw_rescue_device': 'stable device rescue: the rescue disk\'s device',
    'hw_rescue_bus': 'stable device rescue: the rescue disk\'s bus',
}
for _name in qos.DISK_KEYS:
    HONOURED['quota:' + _name] = '<disk><iotune><%s>' % _name[5:]
for _name in qos.VIF_KEYS:
    HONOURED['quota:' + _name] = '<interface><bandwidth><%s %s>' % (
        tuple(_name[4:].split('_')))

_NOT_YET = 'not supported by nova-kvmx yet'

# key -> Refused.
REFUSED = {
    'accel:device_profile': Refused('Cyborg accelerators are ' + _NOT_YET),
    'hw:mem_encryption': Refused('AMD SEV is ' + _NOT_YET, _false),
    'hw_mem_encryption': Refused('AMD SEV is ' + _NOT_YET, _false),
    'hw:mem_encryption_model': Refused('AMD SEV is ' + _NOT_YET),
    'hw_mem_encryption_model': Refused('AMD SEV is ' + _NOT_YET),
    'hw:pmem': Refused('virtual persistent memory is ' + _NOT_YET),
    'hw:ephemeral_encryption': Refused(
        'ephemeral encryption is ' + _NOT_YET, _false),
    'hw_ephemeral_encryption': Refused(
        'ephemeral encryption is ' + _NOT_YET, _false),
    'hw:ephemeral_encryption_format': Refused(
        'ephemeral encryption is ' + _NOT_YET),
    'hw_ephemeral_encryption_format': Refused(
        'ephemeral encryption is ' + _NOT_YET),
    'hw_ephemeral_encryption_secret_uuid': Refused(
        'ephemeral encryption is ' + _NOT_YET),
    'hw_vm_mode': Refused('a KVM guest is a full virtual machine',
                          _unset_or('hvm')),
}

_SCHEDULER = "the scheduler's; the driver has nothing to realise"
_VMWARE = "the VMware driver's; Nova's libvirt driver ignores it too"
_UNREAD = "Nova's libvirt driver does not read it"

# key -> why the driver has nothing to do for it.
NOT_APPLICABLE = {
    'resources{group}:*': _SCHEDULER + ' (Placement resources)',
    'capabilities:*': _SCHEDULER + ' (ComputeCapabilitiesFilter)',
    'aggregate_instance_extra_specs:{key}':
        _SCHEDULER + ' (AggregateInstanceExtraSpecsFilter)',
    'group_policy': _SCHEDULER + ' (Placement request groups)',
    'traits_required': _SCHEDULER + ' (Placement traits)',
    'hw:pci_numa_affinity_policy':
        "Nova's PCI claim and NUMA fitting; the guest gets the claim",
    'hw_pci_numa_affinity_policy':
        "Nova's PCI claim and NUMA fitting; the guest gets the claim",
    'hw_architecture': "the scheduler's ImagePropertiesFilter places it "
                       'on a host of that architecture',
    'img_hv_type': "the scheduler's ImagePropertiesFilter",
    'img_hv_requested_version': "the scheduler's ImagePropertiesFilter",
    'hw_rng_model': _UNREAD + ': its RNG is virtio, by hw_rng:allowed',
    'hw_auto_disk_config': "Nova's API and resize (disk_config)",
    'img_bdm_v2': "Nova's API (block device mapping)",
    'img_block_device_mapping': "Nova's API (block device mapping)",
    'img_mappings': "Nova's API (block device mapping)",
    'img_root_device_name': "Nova's API (block device mapping)",
    'img_signature': "Nova's image API ([glance] "
                     'verify_glance_signatures)',
    'img_signature_certificate_uuid': "Nova's image API",
    'img_signature_hash_method': "Nova's image API",
    'img_signature_key_type': "Nova's image API",
    'img_owner_id': _UNREAD, 'img_version': _UNREAD,
    'img_compression_level': _UNREAD, 'os_distro': _UNREAD,
    'hw_floppy_bus': _UNREAD, 'hw_device_id': _UNREAD,
    'hw_ipxe_boot': "the Ironic driver's",
    'img_bittorrent': "the XenAPI driver's (removed)",
    'img_use_agent': "the XenAPI driver's (removed)",
    'os_skip_agent_inject_files_at_boot': "the z/VM driver's",
    'os_skip_agent_inject_ssh': "the z/VM driver's",
    'hw_disk_type': _VMWARE, 'img_linked_clone': _VMWARE,
    'img_cache_in_nova': _VMWARE,
    'vmware:hw_version': _VMWARE, 'vmware:storage_policy': _VMWARE,
}
for _name in ('cpu_limit', 'cpu_reservation', 'cpu_shares_level',
              'cpu_shares_share', 'memory_limit', 'memory_reservation',
              'memory_shares_level', 'memory_shares_share',
              'disk_io_limit', 'disk_io_reservation', 'disk_io_shares_level',
              'disk_io_shares_share', 'vif_limit', 'vif_reservation',
              'vif_shares_level', 'vif_shares_share'):
    NOT_APPLICABLE['quota:' + _name] = _VMWARE


def refuse_unsupported(flavor, image_meta):
    """Raise UnsupportedKey for the first flavor extra spec, then image
    property (each in name order) that is in :data:`REFUSED` with a value the
    guest would not realise."""
    props = image_meta.properties
    wanted = [('flavor extra spec', key, value)
              for key, value in sorted(flavor.extra_specs.items())]
    wanted += [('image property', name, getattr(props, name))
               for name in sorted(props.fields)
               if props.obj_attr_is_set(name)]
    for kind, key, value in wanted:
        refused = REFUSED.get(entry_name(key))
        if refused is not None and refused.refuses(value):
            raise exception.UnsupportedKey(kind=kind, key=key, value=value,
                                           reason=refused.reason)


_ELEMENTS = re.compile(r'(<[^>]*>)+')


def markdown_table():
    """Every key of the three tables with its status, as the README's
    Markdown table (elements in code spans)."""
    rows = [(key, 'honoured', what) for key, what in HONOURED.items()]
    rows += [(key, 'refused', refused.reason + (
        ' (accepted: %s)' % refused.accepts.accepted
        if refused.accepts else '')) for key, refused in REFUSED.items()]
    rows += [(key, 'n/a', why) for key, why in NOT_APPLICABLE.items()]
    lines = ['| Key | Status | Realised as, or why not |',
             '| --- | --- | --- |']
    for key, status, text in sorted(rows):
        text = _ELEMENTS.sub(lambda m: '`%s`' % m.group(0), text)
        text = text.replace('|', '\\|')
        lines.append('| `%s` | %s | %s |' % (key, status, text))
    return '\n'.join(lines) + '\n'
