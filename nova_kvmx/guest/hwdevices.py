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

"""The vIOMMU, the sound device, the USB controller and the redirected USB
ports of a guest.

Decided as Nova's libvirt driver decides them (``LibvirtDriver.
_get_iommu_model``, ``_guest_add_iommu_device``, ``_add_sound_device``,
``_guest_add_usb_root_controller``, ``_add_redirected_usb_ports``) with
Nova's helpers (``nova.virt.hardware.get_sound_model``, ...), which give
Nova's own errors for bad values. What this host cannot start (the
models of :class:`DriverSettings` ``viommu_models`` and ``sound_models``,
the same host facts the traits come from) is refused naming the key.

Pure: plain values in, :class:`HwDevices` out; HwDevices in, config
objects out.
"""

import dataclasses

from nova.api.validation.extra_specs import validators
from nova import exception as nova_exception
from nova.objects import fields
from nova.virt import hardware
from nova.virt.libvirt import config as vconfig

from nova_kvmx import exception

X86 = (fields.Architecture.I686, fields.Architecture.X86_64)
# Nova's address width of the vIOMMU (QEMU takes 39 or 48).
VIOMMU_AW_BITS = 48
# libvirt 9.0 takes no <driver> attribute on the virtio vIOMMU ("iommu
# model 'virtio' doesn't support additional attributes").
NO_DRIVER_ATTRIBUTES = (fields.VIOMMUModel.VIRTIO,)


@dataclasses.dataclass(frozen=True)
class HwDevices:
    viommu_model: str | None = None
    # <driver eim> of the vIOMMU (a q35 machine's, as Nova).
    viommu_eim: bool = False
    sound_model: str | None = None
    # <controller type='usb' index='0' model>, None leaves it to libvirt.
    usb_model: str | None = None
    redirected_usb_ports: int = 0


def viommu_models(virt_type, arch, libvirt_virtio):
    """The vIOMMU models a guest of this host starts with: Nova's (intel
    on x86, smmuv3 on AArch64, virtio with libvirt >= 8.3), but intel
    only under KVM: its ``eim=on`` needs KVM's split irqchip, and QEMU
    refuses it under TCG (virt_type=qemu)."""
    models = set()
    if arch == fields.Architecture.X86_64 and virt_type == 'kvm':
        models.add(fields.VIOMMUModel.INTEL)
    if arch == fields.Architecture.AARCH64:
        models.add(fields.VIOMMUModel.SMMUV3)
    if libvirt_virtio:
        models.add(fields.VIOMMUModel.VIRTIO)
    if models:
        models.add(fields.VIOMMUModel.AUTO)
    return frozenset(models)


def sound_models(libvirt_virtio, qemu_virtio):
    """Nova's sound models; virtio needs libvirt >= 10.4 and QEMU >= 8.2
    (``MIN_VIRTIO_SOUND_*_VERSION``)."""
    models = set(fields.SoundModelType.ALL)
    if not (libvirt_virtio and qemu_virtio):
        models.discard(fields.SoundModelType.VIRTIO)
    return frozenset(models)


def validate_flavor_value(key, value):
    """Nova's API validation of a flavor extra spec (ValidationError with
    its message, after the key's name): a flavor made before the API
    checked it, or with the API's checks relaxed, gets the message the
    API would give."""
    if not validators.VALIDATORS:
        validators.load_validators()
    try:
        validators.validate(key, value)
    except nova_exception.ValidationError as ex:
        raise nova_exception.ValidationError(
            'flavor extra spec %s: %s' % (key, ex))


def _asked(specs, props, name):
    """(kind, key, value) of the flavor's ``hw:<name>``, else the image's
    ``hw_<name>``; None when neither asks."""
    if specs.get('hw:' + name) is not None:
        return 'flavor extra spec', 'hw:' + name, specs['hw:' + name]
    if props.get('hw_' + name) is not None:
        return 'image property', 'hw_' + name, props.get('hw_' + name)
    return None


def _refuse(asked, reason):
    kind, key, value = asked
    raise exception.UnsupportedKey(kind=kind, key=key, value=value,
                                   reason=reason)


def plan_viommu(specs, props, settings, machine_type):
    """(model, eim) of the vIOMMU, (None, False) for none.

    :raises: Nova's ValidationError (a flavor value its API refuses),
        InvalidVIOMMUMachineType, InvalidVIOMMUArchitecture;
        UnsupportedKey for a model this host cannot start
    """
    model = (specs.get('hw:viommu_model') or
             props.get('hw_viommu_model'))
    if not model:
        return None, False
    asked = (('flavor extra spec', 'hw:viommu_model', model)
             if specs.get('hw:viommu_model') else
             ('image property', 'hw_viommu_model', model))
    if asked[1] == 'hw:viommu_model':
        validate_flavor_value('hw:viommu_model', model)
    arch = settings.arch
    if arch in X86:
        if 'q35' not in machine_type:
            raise nova_exception.InvalidVIOMMUMachineType(
                mtype=machine_type, arch=arch)
    elif arch == fields.Architecture.AARCH64:
        if 'virt' not in machine_type:
            raise nova_exception.InvalidVIOMMUMachineType(
                mtype=machine_type, arch=arch)
    else:
        raise nova_exception.InvalidVIOMMUArchitecture(arch=arch)
    if model == fields.VIOMMUModel.AUTO:
        if fields.VIOMMUModel.VIRTIO in settings.viommu_models:
            model = fields.VIOMMUModel.VIRTIO
        elif arch in X86:
            model = fields.VIOMMUModel.INTEL
        else:
            model = fields.VIOMMUModel.SMMUV3
    if model not in settings.viommu_models:
        _refuse(asked, 'guests on this host (virt_type %s) cannot start '
                'with the %s vIOMMU; they can with: %s' % (
                    settings.virt_type, model, ', '.join(
                        sorted(settings.viommu_models)) or 'none'))
    return model, 'q35' in machine_type


def plan_hw_devices(flavor, image_meta, settings, machine_type,
                    usb_devices=False):
    """The HwDevices of a guest.

    :param usb_devices: the guest has other devices on USB (a tablet or
        keyboard), so its USB controller cannot be 'none'
    :raises: Nova's FlavorImageConflict and Invalid for bad values, and
        those of :func:`plan_viommu`; UnsupportedKey for what this host
        cannot realise
    """
    specs = flavor.extra_specs
    props = image_meta.properties
    model, eim = plan_viommu(specs, props, settings, machine_type)
    sound = hardware.get_sound_model(flavor, image_meta)
    if sound and sound not in settings.sound_models:
        _refuse(_asked(specs, props, 'sound_model'),
                'this host cannot give guests the %s sound model (it '
                'needs libvirt >= 10.4 and QEMU >= 8.2)' % sound)
    usb = hardware.get_usb_model(flavor, image_meta)
    ports = hardware.get_redirected_usb_ports(flavor, image_meta)
    if ports and settings.spice is None:
        _refuse(_asked(specs, props, 'redirected_usb_ports'),
                'redirected USB ports are SPICE channels (spicevmc), and '
                'guests on this host have no SPICE console ([spice] '
                'enabled is False)')
    on_usb = [what for what, wanted in (
        ('a tablet or keyboard', usb_devices),
        ('redirected USB ports', ports),
        ('a USB sound device', sound == fields.SoundModelType.USB))
        if wanted]
    if usb == fields.USBControllerModelType.NONE and on_usb:
        _refuse(_asked(specs, props, 'usb_model'),
                'the guest has %s, which needs a USB controller' %
                ' and '.join(on_usb))
    return HwDevices(viommu_model=model, viommu_eim=eim, sound_model=sound,
                     usb_model=usb, redirected_usb_ports=ports)


class GuestIOMMU(vconfig.LibvirtConfigGuestIOMMU):
    """Nova's vIOMMU, without the <driver> element on the models libvirt
    takes no attribute for."""

    def format_dom(self):
        iommu = super().format_dom()
        if self.model in NO_DRIVER_ATTRIBUTES:
            for driver in iommu.findall('driver'):
                iommu.remove(driver)
        return iommu


def build_devices(hw):
    devices = []
    if hw.usb_model:
        usb = vconfig.LibvirtConfigGuestUSBHostController()
        usb.index = 0
        usb.model = hw.usb_model
        devices.append(usb)
    if hw.sound_model:
        devices.append(vconfig.LibvirtConfigGuestSound(hw.sound_model))
    devices.extend(vconfig.LibvirtConfigGuestUSBRedirect()
                   for _ in range(hw.redirected_usb_ports))
    if hw.viommu_model:
        iommu = GuestIOMMU()
        iommu.model = hw.viommu_model
        iommu.interrupt_remapping = True
        iommu.caching_mode = True
        iommu.iotlb = True
        iommu.aw_bits = VIOMMU_AW_BITS
        iommu.eim = hw.viommu_eim
        devices.append(iommu)
    return devices


def apply_hw_devices(conf, hw):
    """Add the HwDevices to ``conf`` (a LibvirtConfigGuest): the devices,
    and with a vIOMMU the QEMU I/O APIC (split irqchip) it remaps the
    interrupts of."""
    for device in build_devices(hw):
        conf.add_device(device)
    if hw.viommu_model:
        conf.features.append(vconfig.LibvirtConfigGuestFeatureIOAPIC())
