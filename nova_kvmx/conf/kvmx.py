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

from oslo_config import cfg

kvmx_group = cfg.OptGroup(
    'kvmx',
    title='nova-kvmx driver options',
    help="Options of the nova-kvmx compute driver "
         "(``compute_driver = kvmx.KVMXDriver``). Options Nova already "
         "defines (instances path, image cache, VNC, CPU sets, reserved "
         "resources, allocation ratios, shutdown timeout) are read from "
         "Nova's own groups and are not repeated here.")

kvmx_opts = [
    cfg.StrOpt(
        'connection_uri',
        default='qemu:///system',
        deprecated_for_removal=True,
        deprecated_reason="Use Nova's ``[libvirt] connection_uri``, which "
                          "wins when set.",
        help="""
URI of the libvirt daemon that runs the guests, read only when Nova's
``[libvirt] connection_uri`` is empty.

nova-compute keeps one connection open, reconnects when it drops and
listens to its domain lifecycle events.
"""),
    cfg.StrOpt(
        'virt_type',
        default='kvm',
        deprecated_for_removal=True,
        deprecated_reason="Use Nova's ``[libvirt] virt_type``, which wins "
                          "when it is not kvm.",
        choices=[
            ('kvm', 'Hardware accelerated guests through /dev/kvm.'),
            ('qemu', 'Software emulation (TCG). For test and nested '
                     'environments only: pinning and realtime guarantees do '
                     'not hold under TCG.'),
        ],
        help="""
Domain type of the guests, read only while Nova's ``[libvirt] virt_type``
is at its default (kvm). ``init_host`` refuses to start when libvirt
cannot run guests of this type on this host.
"""),
    cfg.StrOpt(
        'cpu_mode',
        deprecated_for_removal=True,
        deprecated_reason="Use Nova's ``[libvirt] cpu_mode``, which wins "
                          "when set.",
        choices=[
            ('host-passthrough', 'Expose the host CPU unchanged: the best '
                                 'performance; live migration only between '
                                 'identical hosts.'),
            ('host-model', 'Expose the closest CPU model libvirt knows plus '
                           'the host features.'),
            ('custom', 'Expose the model named by ``cpu_models``.'),
            ('none', 'Do not specify a CPU model (the hypervisor default).'),
        ],
        help="""
CPU mode of the guests, read only when Nova's ``[libvirt] cpu_mode`` is
not set. If neither is set: ``host-passthrough`` for ``virt_type=kvm``
(the usual NFV choice) and ``none`` for ``virt_type=qemu``.
"""),
    cfg.ListOpt(
        'cpu_models',
        default=[],
        deprecated_for_removal=True,
        deprecated_reason="Use Nova's ``[libvirt] cpu_models``, which wins "
                          "when set.",
        help="""
CPU models for ``cpu_mode=custom``, read only when Nova's ``[libvirt]
cpu_models`` is not set; the first one that has the CPU features a flavor
requires as traits is used, as with Nova's option.
"""),
    cfg.StrOpt(
        'machine_type',
        default='q35',
        deprecated_for_removal=True,
        deprecated_reason="Use Nova's ``[libvirt] hw_machine_type`` "
                          "(``x86_64=q35``), which wins when it names the "
                          "host's architecture.",
        help="""
Default QEMU machine type when the image has no ``hw_machine_type``
property and Nova's ``[libvirt] hw_machine_type`` does not name the host's
architecture. The machine type a guest gets is recorded with the instance
(``image_hw_machine_type``), so changing the default never changes an
existing guest.
"""),
    cfg.IntOpt(
        'realtime_scheduler_priority',
        default=1,
        min=1,
        max=99,
        deprecated_for_removal=True,
        deprecated_reason="Use Nova's ``[libvirt] "
                          "realtime_scheduler_priority``, which wins when "
                          "set.",
        help="""
SCHED_FIFO priority of the realtime vCPUs of ``hw:cpu_realtime=yes``
guests, read only when Nova's ``[libvirt] realtime_scheduler_priority``
is not set. Host kernel threads that must preempt the guest on its CPUs
need a higher priority.
"""),
    cfg.IntOpt(
        'soft_reboot_timeout',
        default=120,
        min=1,
        help="""
Seconds a soft reboot waits for the guest to shut down after the ACPI power
button before it falls back to a hard reboot.
"""),
    cfg.IntOpt(
        'domain_start_timeout',
        default=60,
        min=1,
        help="""
Seconds to wait for a started domain to report the running state.
"""),
    cfg.IntOpt(
        'snapshot_timeout',
        default=600,
        min=1,
        help="""
Seconds a live snapshot waits for the copy of the root disk to get in sync
before it gives up, and a volume swap for the copy of the volume (the guest
keeps running on its own disk either way).
"""),
    cfg.IntOpt(
        'max_image_virtual_size_gb',
        default=20,
        min=0,
        help="""
Largest virtual size, in GiB, of an image that no flavor root disk bounds:
rescue images, kernel and ramdisk images, and the image of a flavor with
``root_gb = 0`` (whose root disk takes the image's size). The virtual size
``qemu-img info`` reads from the download is checked before the image is
converted or copied, so a small compressed image cannot expand into the
instances directory; a larger one fails the build or rescue and leaves
nothing in the image cache. Images for a flavor with a root disk are
bounded by that disk instead. 0 sets no bound.
"""),
    cfg.IntOpt(
        'console_output_max_kb',
        default=100,
        min=1,
        help="""
Largest tail of the serial console log, in KiB, returned by the console
output API.
"""),
    cfg.IntOpt(
        'pci_full_listing_interval',
        default=600,
        min=0,
        help="""
Seconds between two full listings of the host's PCI and network node devices.
Between them the PCI report follows libvirt's node-device events and reads
only the devices they name; the full listing catches changes no event told
of. 0 lists everything only when nova-compute (re)connects to libvirt.
"""),
]


def register_opts(conf):
    conf.register_group(kvmx_group)
    conf.register_opts(kvmx_opts, group=kvmx_group)


def list_opts():
    return [(kvmx_group, kvmx_opts)]
