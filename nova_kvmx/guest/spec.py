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
class DriverSettings:
    """The host-wide settings planning depends on (read from CONF once)."""

    virt_type: str = 'kvm'
    cpu_mode: str | None = None
    cpu_models: tuple[str, ...] = ()
    machine_type: str = 'q35'
    arch: str = 'x86_64'
    vnc_listen: str | None = None
    package_version: str = ''
    # 'none' (O_DIRECT) unless the instances directory cannot do it.
    disk_cache: str = 'none'


@dataclasses.dataclass(frozen=True)
class GuestFiles:
    """Paths of the per-instance files a guest uses, prepared by storage."""

    root_disk: str
    console_log: str
    kernel: str | None = None
    ramdisk: str | None = None
    config_drive: str | None = None
    ephemeral: str | None = None
    swap: str | None = None


@dataclasses.dataclass(frozen=True)
class DiskSpec:
    path: str
    target_dev: str
    bus: str
    device: str = 'disk'
    driver_format: str = 'qcow2'
    readonly: bool = False
    cache: str = 'none'


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
    disks: tuple[DiskSpec, ...]
    console_log: str
    owner: OwnerInfo
    package_version: str
    vnc_listen: str | None = None
    # NICs and passthrough devices (guest.devices InterfaceSpec and
    # HostdevSpec), in order.
    devices: tuple = ()
