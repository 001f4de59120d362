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

"""The machine a guest is: its emulated architecture, its physical
address bits, and the clock and Hyper-V enlightenments of a Windows guest.

As Nova's libvirt driver decides them (``LibvirtDriver.
_check_emulation_arch``, ``_get_guest_cpu_config_maxphysaddr``,
``_set_clock``, ``_set_kvm_timers``, ``_set_features``), refusing by key
what this host's libvirt and QEMU cannot start, before anything exists.

Pure: plain values in, :class:`Platform` out; Platform in, config objects
out.
"""

import dataclasses

from nova import exception as nova_exception
from nova.objects import fields
from nova.virt import hardware
from nova.virt.libvirt import config as vconfig
from oslo_utils import strutils

from nova_kvmx import exception

WINDOWS = 'windows'
# Nova's spinlock retries for Windows guests (the value KVM's maintainers
# certify Windows with).
SPINLOCK_RETRIES = 8191


@dataclasses.dataclass(frozen=True)
class Platform:
    # <os><type arch>: the image's hw_emulation_architecture.
    os_arch: str | None = None
    # Another architecture than the host's: TCG, and no host CPU model.
    emulated: bool = False
    # <cpu><maxphysaddr mode bits>
    maxphysaddr_mode: str | None = None
    maxphysaddr_bits: int | None = None
    # os_type=windows: localtime clock, hypervclock, <hyperv>.
    windows: bool = False
    # <hyperv><vendor_id>: a hidden hypervisor's Windows guest.
    spoof_vendor_id: bool = False


def plan_arch(props, settings):
    """The image's ``hw_emulation_architecture`` if this host's QEMU has
    that target (libvirt's capabilities list it as a guest
    architecture), else UnsupportedKey naming the missing emulator."""
    arch = props.get('hw_emulation_architecture')
    if arch is None:
        return None
    if arch not in settings.guest_arches:
        raise exception.UnsupportedKey(
            kind='image property', key='hw_emulation_architecture',
            value=arch, reason='this host has no QEMU emulator for %s '
            '(qemu-system-%s); libvirt lists guests of: %s' % (
                arch, arch, ', '.join(sorted(settings.guest_arches))))
    return arch


def plan_maxphysaddr(flavor, image_meta, settings):
    """(mode, bits) of ``hw:maxphysaddr_*`` / ``hw_maxphysaddr_*``.

    :raises: Nova's Invalid for a bad mode, or emulate without bits;
        UnsupportedKey when libvirt is older than Nova's minimum for it
    """
    mode = hardware.get_maxphysaddr_mode(flavor, image_meta)
    bits = (flavor.extra_specs.get('hw:maxphysaddr_bits') or
            image_meta.properties.get('hw_maxphysaddr_bits'))
    if mode is None:
        return None, None
    if not settings.maxphysaddr:
        key = ('hw:maxphysaddr_mode' if flavor.extra_specs.get(
            'hw:maxphysaddr_mode') else 'hw_maxphysaddr_mode')
        raise exception.UnsupportedKey(
            kind='flavor extra spec' if ':' in key else 'image property',
            key=key, value=mode, reason='it needs libvirt >= 8.7')
    try:
        bits = int(bits) if bits else None
    except ValueError:
        raise nova_exception.Invalid(
            'Invalid hw:maxphysaddr_bits %r: not an integer.' % bits)
    if mode == fields.MaxPhyAddrMode.EMULATE and not bits:
        raise nova_exception.Invalid(
            'hw_maxphysaddr_mode=emulate needs hw_maxphysaddr_bits.')
    return mode, bits


def os_type(instance, image_meta):
    """The instance's os_type (Nova copies the image's at boot), else the
    image's."""
    if instance.obj_attr_is_set('os_type') and instance.os_type:
        return instance.os_type
    return image_meta.properties.get('os_type')


def plan_platform(instance, image_meta, settings):
    """The Platform of a guest.

    :raises: UnsupportedKey naming what this host cannot start, Nova's
        Invalid for bad values
    """
    flavor = instance.flavor
    props = image_meta.properties
    arch = plan_arch(props, settings)
    mode, bits = plan_maxphysaddr(flavor, image_meta, settings)
    windows = os_type(instance, image_meta) == WINDOWS
    if windows and settings.virt_type != 'kvm':
        # Nova's enlightenments include vpindex, which QEMU sets through
        # KVM only ("kernel doesn't allow setting HyperV VP_INDEX").
        raise exception.UnsupportedKey(
            kind='image property', key='os_type', value=WINDOWS,
            reason="a Windows guest's Hyper-V enlightenments need KVM; "
            'this host runs guests under virt_type=%s' % settings.virt_type)
    specs = flavor.extra_specs
    hidden = (strutils.bool_from_string(specs.get('hide_hypervisor_id')) or
              strutils.bool_from_string(specs.get('hw:hide_hypervisor_id'))
              or props.get('img_hide_hypervisor_id', False))
    return Platform(os_arch=arch,
                    emulated=arch is not None and arch != settings.arch,
                    maxphysaddr_mode=mode, maxphysaddr_bits=bits,
                    windows=windows, spoof_vendor_id=windows and hidden)


def build_hyperv(spoof_vendor_id):
    """Nova's Hyper-V enlightenments of a Windows guest."""
    hv = vconfig.LibvirtConfigGuestFeatureHyperV()
    hv.relaxed = hv.spinlocks = hv.vapic = hv.vpindex = True
    hv.runtime = hv.synic = hv.reset = hv.frequencies = True
    hv.tlbflush = hv.ipi = True
    hv.spinlock_retries = SPINLOCK_RETRIES
    hv.vendorid_spoof = spoof_vendor_id
    return hv


def apply_platform(conf, platform):
    """Apply the Platform to ``conf`` (a LibvirtConfigGuest with its CPU,
    clock and features built)."""
    if platform.os_arch:
        conf.os_arch = platform.os_arch
    if platform.emulated:
        # As Nova: another architecture runs under TCG, without the
        # host's CPU model.
        conf.virt_type = 'qemu'
        conf.cpu.mode = conf.cpu.model = None
        conf.cpu.features = set()
    if platform.maxphysaddr_mode:
        maxphysaddr = vconfig.LibvirtConfigGuestCPUMaxPhysAddr()
        maxphysaddr.mode = platform.maxphysaddr_mode
        maxphysaddr.bits = platform.maxphysaddr_bits
        conf.cpu.maxphysaddr = maxphysaddr
    if platform.windows:
        conf.clock.offset = 'localtime'
        timer = vconfig.LibvirtConfigGuestTimer()
        timer.name = 'hypervclock'
        timer.present = True
        conf.clock.add_timer(timer)
        conf.features.append(build_hyperv(platform.spoof_vendor_id))
