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

"""Disk and NIC QoS and NIC ring sizes.

The flavor's ``quota:disk_*`` keys become every disk's ``<iotune>``, as
Nova's image backend sets them (``Image.disk_qos``); its ``quota:vif_*``
keys become ``<bandwidth>`` on every NIC (Nova's
``designer.set_vif_bandwidth_config``); ``[libvirt] rx_queue_size`` and
``tx_queue_size`` size the virtio rings as Nova's VIF driver does: RX on
every virtio NIC, TX on vhost-user ones. What libvirt cannot apply (a
bandwidth on a VF or a vhost-user port, total and read/write limits
together) is refused naming the key, rather than failing in libvirt or
being dropped.

Pure: the flavor, settings and device specs in, :class:`QoS` out; QoS in,
Nova's config objects changed.
"""

import dataclasses
import types

from nova.virt.libvirt import config as vconfig

from nova_kvmx import exception
from nova_kvmx.guest import render_devices
from nova_kvmx.guest import spec

DISK_KEYS = ('disk_read_bytes_sec', 'disk_read_iops_sec',
             'disk_write_bytes_sec', 'disk_write_iops_sec',
             'disk_total_bytes_sec', 'disk_total_iops_sec')
VIF_KEYS = ('vif_inbound_average', 'vif_inbound_peak', 'vif_inbound_burst',
            'vif_outbound_average', 'vif_outbound_peak',
            'vif_outbound_burst')
# Interface types libvirt can limit (virNetDevSupportsBandwidth).
BANDWIDTH_TYPES = ('bridge', 'ethernet', 'direct', 'network')


@dataclasses.dataclass(frozen=True)
class QoS:
    # ((LibvirtConfigGuestDisk attribute, value), ...)
    disk: tuple = ()
    # ((LibvirtConfigGuestInterface attribute, value), ...)
    vif: tuple = ()
    rx_queue_size: int | None = None
    tx_queue_size: int | None = None


def _quota(specs, names):
    values = []
    for name in names:
        key = 'quota:' + name
        if key in specs:
            try:
                value = int(specs[key])
            except ValueError:
                value = -1
            if value < 0:
                raise exception.UnsupportedKey(
                    kind='flavor extra spec', key=key, value=specs[key],
                    reason='it is not a whole number')
            values.append((name, value))
    return tuple(values)


def plan_qos(flavor, settings, devices):
    """The QoS of a guest with these NICs (guest.devices specs).

    :raises: UnsupportedKey naming the extra spec libvirt cannot apply
    """
    specs = flavor.extra_specs
    disk = _quota(specs, DISK_KEYS)
    names = dict(disk)
    for kind in ('bytes', 'iops'):
        total = 'disk_total_%s_sec' % kind
        split = [n for n in ('disk_read_%s_sec' % kind,
                             'disk_write_%s_sec' % kind) if n in names]
        if total in names and split:
            raise exception.UnsupportedKey(
                kind='flavor extra spec', key='quota:' + total,
                value=names[total], reason='libvirt cannot limit the total '
                'and quota:%s at once' % split[0])
    vif = _quota(specs, VIF_KEYS)
    if vif:
        for device in devices:
            port_id = getattr(device, 'port_id', None)
            net_type = getattr(device, 'net_type', 'hostdev')
            # A flavor's PCI device (no port) is no NIC of the flavor's.
            if port_id and net_type not in BANDWIDTH_TYPES:
                raise exception.UnsupportedKey(
                    kind='flavor extra spec', key='quota:' + vif[0][0],
                    value=vif[0][1], reason='libvirt cannot limit the '
                    'bandwidth of port %s (%s)' % (port_id, net_type))
    return QoS(disk=disk, vif=vif, rx_queue_size=settings.rx_queue_size,
               tx_queue_size=settings.tx_queue_size)


def apply_qos(conf, qos):
    """Set ``qos`` on the disks and NICs of ``conf`` (LibvirtConfigGuest
    or one device's config)."""
    devices = getattr(conf, 'devices', [conf])
    for device in devices:
        if is_instance_disk(device):
            for name, value in qos.disk:
                setattr(device, name, value)
            device._format_iotune = types.MethodType(
                _format_iotune_bytes_first, device)
        elif isinstance(device, vconfig.LibvirtConfigGuestInterface):
            apply_interface(device, qos)


def is_instance_disk(device):
    """A disk the instance owns (root, ephemeral, swap, config drive), not
    a Cinder volume's, which carries its volume ID as serial: as in Nova,
    flavor QoS and ``hw_disk_discard`` are for the former only; a volume
    gets its limits and discard from Cinder's connection info."""
    return (isinstance(device, vconfig.LibvirtConfigGuestDisk) and
            not device.serial)


def apply_interface(conf, qos):
    if conf.net_type in BANDWIDTH_TYPES:
        for name, value in qos.vif:
            setattr(conf, name, value)
    if conf.model != 'virtio' or conf.net_type == 'hostdev':
        return
    if qos.rx_queue_size:
        conf.vhost_rx_queue_size = qos.rx_queue_size
        # libvirt writes the ring size on a <driver>; vhost is what a
        # virtio NIC without one gets anyway.
        conf.driver_name = conf.driver_name or 'vhost'
    if qos.tx_queue_size and conf.net_type == 'vhostuser':
        conf.vhost_tx_queue_size = qos.tx_queue_size


def _format_iotune_bytes_first(disk, dev):
    """Nova's <iotune>, byte limits before I/O limits: libvirt reads its
    children in any order, but libxml2's RelaxNG (which validates
    libvirt's schema) rejects Nova's read_bytes, read_iops, write_bytes
    order."""
    vconfig.LibvirtConfigGuestDisk._format_iotune(disk, dev)
    for iotune in dev.findall('iotune'):
        iotune[:] = sorted(iotune, key=lambda e: 'iops' in e.tag)


def device_config(device, flavor, settings=None):
    """The config of one NIC or hostdev spec to hot-attach, with the
    flavor's bandwidth and the host's ring sizes (``settings``, a
    spec.DriverSettings; None for the defaults), as a new guest's;
    UnsupportedKey as :func:`plan_qos`."""
    conf = render_devices.build_device(device)
    apply_qos(conf, plan_qos(flavor, settings or spec.DriverSettings(),
                             [device]))
    return conf
