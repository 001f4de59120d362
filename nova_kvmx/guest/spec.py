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

"""What a guest is, as plain data.

The planner turns Nova's objects into a :class:`GuestSpec`; the renderer
turns a :class:`GuestSpec` into domain XML. Keeping this in between as small
frozen dataclasses makes both halves pure and testable without Nova objects
or libvirt.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class HostCPUs:
    """The host CPUs that unpinned guest threads may use, as Nova's libvirt
    driver decides them from ``[compute] cpu_shared_set`` (or the
    deprecated ``vcpu_pin_set``).

    :param cell_shared: {host cell id: its shared CPUs}, where the unpinned
        vCPUs of a guest cell float
    :param floating: where a guest without a NUMA topology runs; None when
        no option confines it (every online CPU)
    :param emulator_shared: ``cpu_shared_set`` (online CPUs only), where
        the ``share`` emulator thread policy puts emulator threads; empty
        when unset, and they then float with the non-realtime vCPUs
    """

    cell_shared: tuple[tuple[int, frozenset], ...] = ()
    floating: frozenset | None = None
    emulator_shared: frozenset = frozenset()

    def shared_in_cell(self, cell_id):
        return dict(self.cell_shared).get(cell_id, frozenset())


@dataclasses.dataclass(frozen=True)
class DriverSettings:
    """The host-wide settings planning depends on (read from CONF once)."""

    virt_type: str = 'kvm'
    cpu_mode: str | None = None
    cpu_models: tuple[str, ...] = ()
    # [libvirt] cpu_model_extra_flags: ((feature, 'require'|'disable'), ...)
    cpu_extra_flags: tuple[tuple[str, str], ...] = ()
    # ((model, its CPU features), ...) of cpu_models, as libvirt expands
    # them: a flavor's required CPU traits pick the model.
    cpu_model_features: tuple[tuple[str, frozenset], ...] = ()
    machine_type: str = 'q35'
    arch: str = 'x86_64'
    # [libvirt] num_pcie_ports: hotplug slots of a PCI Express machine.
    pcie_ports: int = 0
    vnc_listen: str | None = None
    # [serial_console] proxyclient_address, where the guests' TCP serial
    # ports listen; None without the serial console.
    serial_listen: str | None = None
    # [spice] (guest.consoles.Spice), None without SPICE.
    spice: object = None
    package_version: str = ''
    # 'none' (O_DIRECT) unless the instances directory cannot do it.
    disk_cache: str = 'none'
    # Disks on RBD: [libvirt] disk_cachemodes' network mode, else 'none'.
    network_disk_cache: str = 'none'
    # The I/O mode of the instance's own disk files: 'native' for disks
    # preallocated ([DEFAULT] preallocate_images = space) and opened with
    # O_DIRECT, as Nova's libvirt driver; None leaves QEMU's (threads).
    disk_io: str | None = None
    host_cpus: HostCPUs = HostCPUs()
    # The host's base page size: memory not in large pages.
    small_page_kb: int = 4
    realtime_priority: int = 1
    # The host's cgroup CPU controller is usable (Nova's
    # Host.is_cpu_control_policy_capable): CPU shares and quotas need it.
    cpu_control: bool = True
    # [libvirt] rng_dev_path: the RNG's entropy source (None: libvirt's).
    rng_dev_path: str | None = None
    # [DEFAULT] pointer_model (Nova's default: a USB tablet).
    pointer_model: str | None = 'usbtablet'
    # [libvirt] rx_queue_size and tx_queue_size of virtio NICs.
    rx_queue_size: int | None = None
    tx_queue_size: int | None = None
    # [libvirt] hw_disk_discard: 'unmap' or 'ignore' on every disk.
    disk_discard: str | None = None
    # libvirt chooses UEFI firmware for guests (domain capabilities: the
    # firmware descriptors of the host's OVMF), and some do Secure Boot.
    uefi: bool = False
    secure_boot: bool = False
    # A UEFI firmware without NVRAM (hw_firmware_stateless) is among them.
    stateless_firmware: bool = False
    # Emulated TPMs (swtpm) guests can have: none without [libvirt]
    # swtpm_enabled.
    tpm_versions: tuple[str, ...] = ()
    tpm_models: tuple[str, ...] = ()
    tpm_secret_security: tuple[str, ...] = ()
    # What this host's libvirt and QEMU start (guest.hwdevices and
    # guest.platform; the traits say the same): vIOMMU and sound models,
    # <cpu><maxphysaddr> (libvirt >= 8.7), the architectures libvirt's
    # capabilities list guests of.
    viommu_models: frozenset = frozenset(('auto', 'intel', 'virtio'))
    sound_models: frozenset = frozenset(
        ('sb16', 'es1370', 'pcspk', 'ac97', 'ich6', 'ich9', 'usb'))
    maxphysaddr: bool = True
    guest_arches: frozenset = frozenset(('i686', 'x86_64'))


@dataclasses.dataclass(frozen=True)
class RescueDisk:
    """The rescue image's disk of a stable device rescue, attached after
    every disk of the instance and booted first (the image's
    ``hw_rescue_bus`` and ``hw_rescue_device``)."""

    path: str
    bus: str
    device: str = 'disk'


@dataclasses.dataclass(frozen=True)
class RBDImage:
    """A disk of the instance that is an RBD image (``[libvirt]
    images_type=rbd``), which QEMU opens through its own librbd.

    :param name: ``pool/image``
    :param hosts: ((monitor host, port), ...)
    :param auth_username: the cephx user (``[libvirt] rbd_user``), None
        without cephx
    :param auth_secret_uuid: the libvirt secret holding its key
        (``[libvirt] rbd_secret_uuid``)
    """

    name: str
    hosts: tuple = ()
    auth_username: str | None = None
    auth_secret_uuid: str | None = None


@dataclasses.dataclass(frozen=True)
class BaseImage:
    """The base in the image cache a local qcow2 disk is an overlay on.

    Guests share it, and libvirt never gives back a backing file it has
    handed to QEMU's user: the domain tells libvirt to leave it alone
    (QEMU reads it through the image cache's group)."""

    path: str
    format: str


@dataclasses.dataclass(frozen=True)
class GuestFiles:
    """The per-instance files and disks a guest uses, prepared by storage:
    paths, and for disks on RBD (root, ephemeral, swap) :class:`RBDImage`.

    ``root_disk`` is None when the root disk is a volume.
    """

    root_disk: 'str | RBDImage | None'
    console_log: str
    kernel: str | None = None
    ramdisk: str | None = None
    config_drive: str | None = None
    ephemeral: 'str | RBDImage | None' = None
    swap: 'str | RBDImage | None' = None
    # Rescue: the instance's own root disk, attached after the rescue disk.
    rescued_root: 'str | RBDImage | None' = None
    # Stable device rescue: the rescue disk, after all the others.
    rescue: RescueDisk | None = None
    # ((disk path, BaseImage), ...): the bases of the local overlays.
    bases: tuple = ()

    def base_of(self, path):
        """The BaseImage of the local disk at ``path``, None if it has
        none in the image cache."""
        return dict(self.bases).get(path) if isinstance(path, str) \
            else None


@dataclasses.dataclass(frozen=True)
class DiskSpec:
    # A file, or an RBD image QEMU opens itself.
    path: 'str | RBDImage'
    target_dev: str
    bus: str
    device: str = 'disk'
    driver_format: str = 'qcow2'
    readonly: bool = False
    cache: str = 'none'
    # <driver io=...>: None leaves QEMU's default.
    io: str | None = None
    # <boot order=...>: the disk the firmware boots first (stable rescue).
    boot_order: int | None = None
    # The image cache's base of a qcow2 overlay.
    base: BaseImage | None = None


@dataclasses.dataclass(frozen=True)
class BootSpec:
    """Direct kernel boot when ``kernel`` is set, else boot from disk."""

    kernel: str | None = None
    initrd: str | None = None
    cmdline: str | None = None


@dataclasses.dataclass(frozen=True)
class CPUSpec:
    mode: str | None
    model: str | None
    sockets: int
    cores: int
    threads: int
    # ((feature, 'require'|'disable'), ...)
    features: tuple[tuple[str, str], ...] = ()


@dataclasses.dataclass(frozen=True)
class GuestCell:
    """One guest NUMA cell, bound to the host cell Nova claimed for it."""

    id: int
    host_cell: int
    vcpus: frozenset
    memory_mb: int
    # The large page size backing the cell, None for the host's small pages.
    page_size_kb: int | None = None


@dataclasses.dataclass(frozen=True)
class CPUTuning:
    """Where each vCPU and the emulator threads run, and which vCPUs are
    realtime.

    :param vcpu_pins: ((vCPU, host CPUs), ...) in vCPU order: one CPU for a
        pinned vCPU, the cell's shared CPUs for a floating one
    :param iothread_pins: ((IOThread ID, host CPUs), ...)
    """

    vcpu_pins: tuple[tuple[int, frozenset], ...]
    emulator_pin: frozenset
    iothread_pins: tuple[tuple[int, frozenset], ...] = ()
    realtime_vcpus: frozenset = frozenset()
    realtime_priority: int | None = None


@dataclasses.dataclass(frozen=True)
class CPUQuota:
    """The guest's share of host CPU time and its limit (flavor extra
    specs ``quota:cpu_shares``, ``quota:cpu_period``, ``quota:cpu_quota``);
    None leaves a value to the host's default.

    :param shares: weight against other guests (no unit)
    :param period: enforcement interval of ``quota``, in microseconds
    :param quota: CPU time each vCPU may use per period, in microseconds;
        -1 for no limit
    """

    shares: int | None = None
    period: int | None = None
    quota: int | None = None


@dataclasses.dataclass(frozen=True)
class OwnerInfo:
    """Who and what the guest is, kept in the domain's Nova metadata so an
    operator reading ``virsh dumpxml`` sees the server behind a domain."""

    display_name: str
    flavor_name: str
    flavor_id: str
    flavor_memory_mb: int
    flavor_vcpus: int
    flavor_root_gb: int
    flavor_ephemeral_gb: int
    flavor_swap_mb: int
    user_id: str
    user_name: str | None
    project_id: str
    project_name: str | None
    image_id: str | None
    # The volume the guest boots from, None for a local root disk.
    root_volume_id: str | None = None


@dataclasses.dataclass(frozen=True)
class GuestSpec:
    uuid: str
    name: str
    virt_type: str
    arch: str
    machine_type: str
    memory_mb: int
    vcpus: int
    cpu: CPUSpec
    boot: BootSpec
    # DiskSpecs and guest.volumes.VolumeDisks, root disk first.
    disks: tuple
    console_log: str
    owner: OwnerInfo
    package_version: str
    vnc_listen: str | None = None
    # TCP serial ports on serial_listen (the serial console), acquired for
    # the guest; empty: one pty.
    serial_listen: str | None = None
    serial_ports: tuple[int, ...] = ()
    # SPICE graphics (guest.consoles.Spice), None for none.
    spice: object = None
    # NUMA, pinning and memory: empty/None for a guest without a NUMA claim.
    numa_cells: tuple[GuestCell, ...] = ()
    cpu_tuning: CPUTuning | None = None
    # Host CPUs a guest without NUMA claim floats over (None: anywhere).
    cpuset: frozenset | None = None
    cpu_quota: CPUQuota | None = None
    # IOThreads of the guest (IDs 1..iothreads).
    iothreads: int = 0
    # Guest memory shared with other processes (vhost-user back ends).
    shared_memory: bool = False
    locked_memory: bool = False
    # False keeps KSM from merging the guest's pages.
    share_pages: bool = True
    pmu: bool | None = None
    memballoon: bool = True
    # The QEMU guest agent's channel (image property hw_qemu_guest_agent).
    guest_agent: bool = False
    # NICs and passthrough devices (guest.devices InterfaceSpec and
    # HostdevSpec), in order.
    devices: tuple = ()
    # pcie-root-port controllers of a PCI Express machine, one slot each;
    # 0 leaves their number to libvirt (one or two free for hotplug).
    pcie_root_ports: int = 0
    # Watchdog, RNG, video, ... (guest.extras.Extras), None for none.
    extras: object = None
    # Disk and NIC limits and NIC ring sizes (guest.qos.QoS), None: none.
    qos: object = None
    # UEFI firmware (guest.firmware.Firmware), None for the BIOS.
    firmware: object = None
    # The emulated TPM (guest.vtpm.VTPM), None for none.
    vtpm: object = None
    # vIOMMU, sound, USB (guest.hwdevices.HwDevices), None for none.
    hw_devices: object = None
    # Architecture, address bits, Windows (guest.platform.Platform).
    platform: object = None
