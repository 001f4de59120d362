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

"""The small devices and features of a guest: watchdog, RNG, boot menu,
hidden hypervisor, HPET, video, pointer and keyboard, SCSI controller,
disk discard.

Each is decided as Nova's libvirt driver decides it (``LibvirtDriver.
_guest_add_watchdog_action``, ``_add_rng_device``, ``_set_clock``,
``_set_features``, ``_add_video_driver``, ``_get_pointer_bus_and_model``,
``_get_scsi_controller``), from the flavor, the image and the host's
settings, with Nova's values, defaults and errors; then filled into Nova's
own config classes.

Pure: plain values in, :class:`Extras` out; Extras in, config objects out.
"""

import dataclasses

from nova import exception as nova_exception
from nova.objects import fields
from nova.virt.libvirt import config as vconfig
from oslo_utils import strutils
from oslo_utils import units

from nova_kvmx import exception
from nova_kvmx.guest import consoles
from nova_kvmx.guest import qos


@dataclasses.dataclass(frozen=True)
class Extras:
    # <watchdog model='i6300esb' action=...>, None for none.
    watchdog_action: str | None = None
    # <rng model='virtio'>: its entropy source (None: libvirt's
    # /dev/urandom) and rate limit.
    rng: bool = False
    rng_backend: str | None = None
    rng_rate_bytes: int | None = None
    rng_rate_period: int | None = None
    boot_menu: bool = False
    hide_hypervisor_id: bool = False
    hpet: bool = False
    # The video device's model and memory (KiB), when it has a console.
    video_model: str | None = None
    video_vram_kb: int | None = None
    # (type, bus) of the pointer device, None for none.
    pointer: tuple[str, str] | None = None
    # bus of an explicit keyboard, None for QEMU's PS/2 one.
    keyboard_bus: str | None = None
    # model of the SCSI controller (index 0), None leaves it to libvirt.
    scsi_model: str | None = None
    # <driver discard> of the disks ([libvirt] hw_disk_discard).
    disk_discard: str | None = None


def _bool(value):
    return strutils.bool_from_string(str(value), strict=True)


def plan_extras(flavor, image_meta, settings, disk_bus):
    """The Extras of a guest.

    :param settings: spec.DriverSettings (rng_dev_path, pointer_model,
        vnc_listen and spice: video and pointer need a graphical console)
    :param disk_bus: the root disk's bus
    :raises: Nova's InvalidWatchdogAction, RequestedVRamTooHigh,
        InvalidVideoMode; UnsupportedKey for what cannot be realised
    """
    specs = flavor.extra_specs
    props = image_meta.properties
    graphics = consoles.has_graphics(settings.vnc_listen, settings.spice)
    return Extras(
        watchdog_action=plan_watchdog(specs, props),
        **plan_rng(specs, settings),
        boot_menu=plan_boot_menu(specs, props),
        hide_hypervisor_id=(
            _bool(specs.get('hide_hypervisor_id', False)) or
            _bool(specs.get('hw:hide_hypervisor_id', False)) or
            props.get('img_hide_hypervisor_id', False)),
        hpet=props.get('hw_time_hpet', False),
        **plan_video(specs, props, graphics),
        pointer=plan_pointer(props, None if consoles.spice_agent_points(
            settings.vnc_listen, settings.spice) else settings.pointer_model,
            graphics),
        keyboard_bus=props.get('hw_input_bus') if graphics else None,
        scsi_model=plan_scsi_model(props, disk_bus),
        disk_discard=settings.disk_discard,
    )


def on_usb(extras):
    """The Extras put a tablet or keyboard on USB."""
    return 'usb' in ((extras.pointer or (None, None))[1],
                     extras.keyboard_bus)


def plan_watchdog(specs, props):
    """The image's action, else the flavor's, else none ('disabled')."""
    action = props.get('hw_watchdog_action',
                       specs.get('hw:watchdog_action') or 'disabled')
    if action == 'disabled':
        return None
    if action not in fields.WatchdogAction.ALL:
        raise nova_exception.InvalidWatchdogAction(action=action)
    return action


def plan_rng(specs, settings):
    """A virtio RNG unless the flavor says ``hw_rng:allowed=False``; the
    rate limit only with a ``hw_rng:rate_bytes`` (as Nova)."""
    if not _bool(specs.get('hw_rng:allowed', 'True')):
        return {'rng': False}
    rate_bytes = int(specs.get('hw_rng:rate_bytes', 0))
    period = int(specs.get('hw_rng:rate_period', 0))
    if rate_bytes and not period:
        # libvirt writes no <rate> without a period: the limit would be
        # silently lost.
        raise exception.UnsupportedKey(
            kind='flavor extra spec', key='hw_rng:rate_bytes',
            value=rate_bytes, reason='it needs hw_rng:rate_period')
    return {'rng': True, 'rng_backend': settings.rng_dev_path,
            'rng_rate_bytes': rate_bytes or None,
            'rng_rate_period': period if rate_bytes else None}


def plan_boot_menu(specs, props):
    if props.get('hw_boot_menu') is None:
        return _bool(specs.get('hw:boot_menu', 'no'))
    return props.hw_boot_menu


def plan_video(specs, props, graphics):
    """Nova's video model (the image's, virtio on x86) and memory (the
    image's ``hw_video_ram``, up to the flavor's ``hw_video:ram_max_mb``);
    only a guest with a graphical console has a video device."""
    video_ram = props.get('hw_video_ram', 0)
    max_vram = int(specs.get('hw_video:ram_max_mb', 0))
    if video_ram > max_vram:
        raise nova_exception.RequestedVRamTooHigh(req_vram=video_ram,
                                                  max_vram=max_vram)
    model = props.get('hw_video_model')
    if not graphics:
        if model or video_ram:
            key = 'hw_video_model' if model else 'hw_video_ram'
            raise exception.UnsupportedKey(
                kind='image property', key=key, value=model or video_ram,
                reason='guests on this host have no graphical console '
                '([vnc] and [spice] enabled are False), so no video device')
        return {}
    if model and model not in fields.VideoModel.ALL:
        raise nova_exception.InvalidVideoMode(model=model)
    return {'video_model': model or 'virtio',
            'video_vram_kb': (video_ram * units.Mi // units.Ki
                              if max_vram and video_ram else None)}


def plan_pointer(props, default_model, graphics):
    """A tablet on the image's ``hw_input_bus`` (which also gets the
    keyboard), else a USB tablet when the image asks
    (``hw_pointer_model``) or ``[DEFAULT] pointer_model=usbtablet``; with
    a graphical console only (Nova's libvirt driver adds them for VNC and
    SPICE). ``default_model`` None: no default tablet (the SPICE agent's
    channel is the pointer)."""
    bus = props.get('hw_input_bus')
    asked = props.get('hw_pointer_model')
    if not (bus or asked or default_model == 'usbtablet'):
        return None
    if not graphics:
        for key, value in (('hw_input_bus', bus),
                           ('hw_pointer_model', asked)):
            if value:
                raise exception.UnsupportedKey(
                    kind='image property', key=key, value=value,
                    reason='guests on this host have no graphical console '
                    '([vnc] and [spice] enabled are False) to point or '
                    'type in')
        return None
    return ('tablet', bus or 'usb')


def plan_scsi_model(props, disk_bus):
    """``hw_scsi_model``: virtio-scsi is the model QEMU on KVM serves
    well; the emulated HBAs (lsilogic, ...) are refused by name."""
    model = props.get('hw_scsi_model')
    if model is None:
        return None
    if model != fields.SCSIModel.VIRTIO_SCSI:
        raise exception.UnsupportedKey(
            kind='image property', key='hw_scsi_model', value=model,
            reason='only virtio-scsi is supported')
    return model


def apply_extras(conf, extras):
    """Add the Extras to ``conf`` (a LibvirtConfigGuest with its clock
    and devices already built)."""
    conf.os_bootmenu = extras.boot_menu or None
    if extras.hide_hypervisor_id:
        conf.features.append(vconfig.LibvirtConfigGuestFeatureKvmHidden())
    for timer in conf.clock.timers:
        if timer.name == 'hpet':
            timer.present = extras.hpet
    for device in conf.devices:
        if isinstance(device, vconfig.LibvirtConfigGuestVideo):
            device.type = extras.video_model or device.type
            device.vram = extras.video_vram_kb
        elif qos.is_instance_disk(device) and device.source_device == 'disk':
            # Nova's image backend sets it on the disks it makes.
            device.driver_discard = extras.disk_discard
    for device in build_devices(extras):
        conf.add_device(device)


def build_devices(extras):
    result = []
    if extras.scsi_model:
        controller = vconfig.LibvirtConfigGuestController()
        controller.type = 'scsi'
        controller.model = extras.scsi_model
        controller.index = 0
        result.append(controller)
    if extras.watchdog_action:
        watchdog = vconfig.LibvirtConfigGuestWatchdog()
        watchdog.action = extras.watchdog_action
        result.append(watchdog)
    if extras.rng:
        rng = vconfig.LibvirtConfigGuestRng()
        rng.backend = extras.rng_backend
        rng.rate_bytes = extras.rng_rate_bytes
        rng.rate_period = extras.rng_rate_period
        result.append(rng)
    if extras.pointer:
        pointer = vconfig.LibvirtConfigGuestInput()
        pointer.type, pointer.bus = extras.pointer
        result.append(pointer)
    if extras.keyboard_bus:
        keyboard = vconfig.LibvirtConfigGuestInput()
        keyboard.type, keyboard.bus = 'keyboard', extras.keyboard_bus
        result.append(keyboard)
    return result
