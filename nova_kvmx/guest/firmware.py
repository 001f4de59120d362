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

"""The guest's firmware: BIOS, or UEFI with or without Secure Boot.

As Nova's libvirt driver (``LibvirtDriver._configure_guest_by_virt_type``,
``_copy_guest_firmware_elements``): a UEFI guest asks libvirt to choose
the firmware (``<os firmware='efi'>``, from the firmware descriptors of
the host's OVMF package) with Secure Boot on or off; libvirt makes its
NVRAM from the firmware's template the first time it starts. A domain
defined again for the same instance (hard reboot, rescue) keeps the files
libvirt chose the first time, so that its NVRAM, which the guest wrote,
stays the same file with the same firmware.

Pure: Nova objects and plain values in, :class:`Firmware` out; Firmware
in, config objects filled.
"""

import dataclasses

from lxml import etree
from nova import exception
from nova.objects import fields
from nova.virt import hardware
from nova.virt.libvirt import config as vconfig

from nova_kvmx import exception as kvmx_exception


@dataclasses.dataclass(frozen=True)
class Chosen:
    """The firmware files libvirt chose for an existing domain (its
    ``<loader>`` and ``<nvram>``), and whether the guest has SMM."""

    loader: str
    loader_type: str | None = None
    readonly: bool | None = None
    secure: bool = False
    nvram: str | None = None
    nvram_template: str | None = None
    smm: bool = False

    def files(self):
        """The host files the firmware needs to exist to be kept."""
        return tuple(p for p in (self.loader, self.nvram_template) if p)


@dataclasses.dataclass(frozen=True)
class Firmware:
    """UEFI firmware (a guest without one boots the BIOS).

    :param secure_boot: the firmware enforces Secure Boot
    :param stateless: no NVRAM (``hw_firmware_stateless``)
    :param kept: the files of the instance's previous domain, reused
    """

    secure_boot: bool = False
    stateless: bool = False
    kept: Chosen | None = None


def plan_firmware(flavor, image_meta, machine_type, settings, chosen=None):
    """The guest's UEFI firmware, None for the BIOS.

    :param settings: spec.DriverSettings (``arch``, and the host's
        ``uefi`` and ``secure_boot``, from libvirt's domain capabilities)
    :param chosen: :class:`Chosen` of the instance's previous domain whose
        files still exist, None for a new guest
    :raises: Nova's UEFINotSupported, SecureBootNotSupported, Invalid (a
        secure boot policy Nova does not know), FlavorImageConflict;
        UnsupportedKey for stateless firmware the host has not
    """
    props = image_meta.properties
    fw_type = props.get('hw_firmware_type')
    if fw_type is None and settings.arch == fields.Architecture.AARCH64:
        fw_type = fields.FirmwareType.UEFI
    if fw_type != fields.FirmwareType.UEFI:
        return None
    if not settings.uefi:
        raise exception.UEFINotSupported()
    policy = hardware.get_secure_boot_constraint(flavor, image_meta)
    can = secure_boot_possible(settings, machine_type)
    if policy == fields.SecureBoot.REQUIRED and not can:
        raise exception.SecureBootNotSupported()
    secure = can and policy in (fields.SecureBoot.REQUIRED,
                                fields.SecureBoot.OPTIONAL)
    stateless = bool(hardware.get_stateless_firmware_constraint(image_meta))
    if stateless and not settings.stateless_firmware:
        raise kvmx_exception.UnsupportedKey(
            kind='image property', key='hw_firmware_stateless',
            value=props.hw_firmware_stateless,
            reason="this host's firmware descriptors offer no UEFI "
            'firmware without NVRAM')
    if chosen is not None and chosen.secure != secure:
        # Secure Boot changed since the files were chosen: choose again.
        chosen = None
    return Firmware(secure_boot=secure, stateless=stateless, kept=chosen)


def secure_boot_possible(settings, machine_type):
    """The host's firmware does Secure Boot and, on x86_64, the machine
    is a Q35 (Secure Boot needs its SMM), as Nova's
    ``_check_secure_boot_support``."""
    if not settings.secure_boot:
        return False
    return (settings.arch != fields.Architecture.X86_64 or
            'q35' in machine_type)


def chosen_firmware(xml):
    """The :class:`Chosen` firmware of a domain's XML (str), None when it
    has no ``<loader>`` path (BIOS, or UEFI not chosen yet)."""
    root = etree.fromstring(xml.encode('utf-8') if isinstance(xml, str)
                            else xml)
    loader = root.find('./os/loader')
    if loader is None or not (loader.text or '').strip():
        return None
    nvram = root.find('./os/nvram')
    smm = root.find('./features/smm')

    def yes(value):
        return None if value is None else value == 'yes'

    return Chosen(
        loader=loader.text.strip(),
        loader_type=loader.get('type'),
        readonly=yes(loader.get('readonly')),
        secure=bool(yes(loader.get('secure'))),
        nvram=(nvram.text or '').strip() or None if nvram is not None
        else None,
        nvram_template=nvram.get('template') if nvram is not None else None,
        smm=smm is not None and smm.get('state', 'on') == 'on')


def apply_firmware(conf, firmware):
    """Fill ``conf`` (a LibvirtConfigGuest) for ``firmware`` (None: the
    BIOS, nothing to add)."""
    if firmware is None:
        return
    if firmware.stateless:
        conf.os_loader_stateless = True
    kept = firmware.kept
    if kept is None:
        conf.os_firmware = 'efi'
        conf.os_firmware_secure = firmware.secure_boot
        # Nova also sets <loader secure='no'>, which libvirt 9.0 refuses
        # beside firmware autoselection: the feature says it.
        conf.os_loader_secure = firmware.secure_boot or None
        return
    conf.os_loader_secure = firmware.secure_boot
    conf.os_loader = kept.loader
    conf.os_loader_type = kept.loader_type
    conf.os_loader_readonly = kept.readonly
    if not firmware.stateless:
        conf.os_nvram = kept.nvram
        conf.os_nvram_template = kept.nvram_template
    if kept.smm:
        conf.features.append(vconfig.LibvirtConfigGuestFeatureSMM())
