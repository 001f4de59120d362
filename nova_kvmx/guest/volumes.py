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

"""Cinder's connection info -> the guest disk of a volume.

What Nova's libvirt volume drivers (``nova.virt.libvirt.volume``) put in a
volume's ``<disk>``, value for value: an RBD volume is a network disk QEMU
opens with its own librbd, authenticated as the user and libvirt secret of
the connection info (else Nova's ``[libvirt] rbd_user``/
``rbd_secret_uuid``); a volume of a block protocol (iSCSI, FC, NVMe-oF,
...) is the host block device os-brick connected; serial and alias are the
volume's id, the cache mode ``none`` (or ``[libvirt] disk_cachemodes``),
``discard='unmap'`` when Cinder says the volume discards, the front-end
QoS specs become ``<iotune>``, a read-only attachment ``<readonly/>``, a
multi-attach volume ``<shareable/>``.

Pure: no libvirt, no os-brick, no CONF.
"""

import dataclasses
import re

from nova import exception
from oslo_utils import uuidutils

from nova_kvmx.guest import disk_names
from nova_kvmx import exception as kvmx_exception

# Volumes QEMU opens itself, over the network.
NETWORK_PROTOCOLS = ('rbd',)
# Volumes os-brick connects to a host block device, and whether Nova's
# volume driver asks for native AIO on it (iSCSI, iSER and FC unless
# ``[libvirt] use_default_aio_mode_for_volumes``; ScaleIO and StorPool
# always).
BLOCK_PROTOCOLS = {
    'iscsi': 'unless-default-aio',
    'iser': 'unless-default-aio',
    'fibre_channel': 'unless-default-aio',
    'scaleio': 'always',
    'storpool': 'always',
    'nvmeof': None,
    'lightos': None,
    # A block device on this host, given as it is (no connector).
    'local': None,
}
SUPPORTED = NETWORK_PROTOCOLS + tuple(BLOCK_PROTOCOLS)

# Cinder's front-end QoS spec keys Nova's libvirt driver applies, and the
# <iotune> element each becomes.
QOS_IOTUNE = {
    'total_bytes_sec': 'total_bytes_sec',
    'read_bytes_sec': 'read_bytes_sec',
    'write_bytes_sec': 'write_bytes_sec',
    'total_iops_sec': 'total_iops_sec',
    'read_iops_sec': 'read_iops_sec',
    'write_iops_sec': 'write_iops_sec',
    'read_bytes_sec_max': 'read_bytes_sec_max',
    'read_iops_sec_max': 'read_iops_sec_max',
    'write_bytes_sec_max': 'write_bytes_sec_max',
    'write_iops_sec_max': 'write_iops_sec_max',
    'total_bytes_sec_max': 'total_bytes_sec_max',
    'total_iops_sec_max': 'total_iops_sec_max',
    'size_iops_sec': 'size_iops_sec',
}
# Cache modes libvirt knows (Nova's VALID_DISK_CACHEMODES less 'default').
CACHE_MODES = ('none', 'writethrough', 'writeback', 'directsync', 'unsafe')

# What libvirt's schema takes as a network disk's host name.
_HOST = re.compile(r'[A-Za-z0-9_.:%-]+|\[[0-9A-Fa-f:.%]+\]')
# A Ceph pool/[namespace/]image name.
_RBD_NAME = re.compile(r'[^\s/@]+(/[^\s/@]+){1,2}')


@dataclasses.dataclass(frozen=True)
class VolumeSettings:
    """The host's settings for volume disks (Nova's ``[libvirt]`` options).

    :param cachemodes: ``disk_cachemodes`` as ((source type, mode), ...)
    :param default_aio: ``use_default_aio_mode_for_volumes``
    """

    rbd_user: str | None = None
    rbd_secret_uuid: str | None = None
    cachemodes: tuple = ()
    default_aio: bool = False


@dataclasses.dataclass(frozen=True)
class DiskInfo:
    """Where a volume goes in the guest (a block device mapping's name,
    bus and device type, and its boot index: 0 for the root disk)."""

    dev: str
    bus: str
    device_type: str = 'disk'
    boot_index: int | None = None


@dataclasses.dataclass(frozen=True)
class VolumeDisk:
    """A volume as a guest disk (``<disk type='network'|'block'>``).

    :param hosts: ((host, port or None), ...) of a network disk
    :param iotune: ((<iotune> element, value), ...)
    """

    volume_id: str
    target_dev: str
    bus: str
    source_type: str
    device: str = 'disk'
    path: str | None = None
    protocol: str | None = None
    name: str | None = None
    hosts: tuple = ()
    auth_username: str | None = None
    auth_secret_type: str | None = None
    auth_secret_uuid: str | None = None
    cache: str = 'none'
    io: str | None = None
    discard: bool = False
    readonly: bool = False
    shareable: bool = False
    iotune: tuple = ()
    logical_block_size: int | None = None
    physical_block_size: int | None = None
    boot_index: int | None = None

    @property
    def alias(self):
        """The user alias libvirt names the device by in its events
        (Nova's make_libvirt_device_alias)."""
        return 'ua-' + self.volume_id

    @property
    def is_root(self):
        return self.boot_index == 0


def volume_id(connection_info):
    """The volume of a connection info: its ``serial`` (the volume id
    Nova puts there), else the ``volume_id`` Cinder's driver gives."""
    return (connection_info.get('serial') or
            (connection_info.get('data') or {}).get('volume_id'))


def protocol(connection_info):
    return connection_info.get('driver_volume_type')


def check_supported(connection_info):
    """Refuse, naming the volume, a connection this driver cannot give a
    guest: a protocol it does not attach, an encrypted volume, a volume
    id that cannot name a device.

    :returns: the volume id
    """
    vid = volume_id(connection_info)
    if not uuidutils.is_uuid_like(vid):
        raise kvmx_exception.InvalidConnectionInfo(
            volume_id=vid, reason='its volume id is not a UUID')
    kind = protocol(connection_info)
    if kind not in SUPPORTED:
        raise kvmx_exception.UnsupportedVolumeType(
            driver_type=kind, volume_id=vid,
            supported=', '.join(SUPPORTED))
    data = connection_info.get('data') or {}
    if data.get('encrypted'):
        raise exception.VolumeEncryptionNotSupported(
            volume_type=kind, volume_id=vid)
    return vid


def plan_volume(connection_info, disk_info, settings):
    """The :class:`VolumeDisk` of a connected volume.

    :param connection_info: Cinder's connection info; for a block protocol
        with the ``device_path`` os-brick's connect added to its data
    :param disk_info: :class:`DiskInfo`
    :param settings: :class:`VolumeSettings`
    """
    vid = check_supported(connection_info)
    kind = protocol(connection_info)
    data = connection_info.get('data') or {}
    device = plan_device(vid, disk_info)
    shareable = bool(connection_info.get('multiattach', False))
    fields = dict(
        volume_id=vid, target_dev=disk_info.dev, bus=disk_info.bus,
        device=device, boot_index=disk_info.boot_index,
        readonly=_readonly(data), shareable=shareable,
        discard=data.get('discard', False) is True,
        iotune=plan_iotune(vid, data.get('qos_specs')),
        logical_block_size=_block_size(vid, data, 'logical_block_size'),
        physical_block_size=_block_size(vid, data, 'physical_block_size'))
    if kind in NETWORK_PROTOCOLS:
        fields.update(_network_source(vid, kind, data, settings))
        source_type = 'network'
    else:
        path = data.get('device_path')
        if not path or not path.startswith('/dev/'):
            raise kvmx_exception.InvalidConnectionInfo(
                volume_id=vid, reason='no host block device (device_path %r)'
                % (path,))
        fields['path'] = path
        source_type = 'block'
        native = BLOCK_PROTOCOLS[kind]
        if native == 'always' or (native == 'unless-default-aio' and
                                  not settings.default_aio):
            fields['io'] = 'native'
    if device == 'lun' and (source_type != 'block' or
                            disk_info.bus != 'scsi'):
        raise kvmx_exception.UnsupportedVolumeDevice(
            volume_id=vid, what='a SCSI LUN',
            reason='only a host block device on the scsi bus can be one')
    cache, io = cache_mode(source_type, shareable, fields.get('io'),
                           settings)
    fields.update(cache=cache, io=io)
    return VolumeDisk(source_type=source_type, **fields)


def plan_device(vid, disk_info):
    disk_names.prefix(disk_info.bus)
    if disk_info.device_type not in disk_names.DEVICE_TYPES:
        raise kvmx_exception.UnsupportedVolumeDevice(
            volume_id=vid, what='a %s' % disk_info.device_type,
            reason='a volume is a disk, a CD-ROM or a SCSI LUN')
    return disk_info.device_type


def cache_mode(source_type, shareable, io, settings):
    """(cache, io) as Nova's ``_set_cache_mode`` decides them: 'none' for
    a shareable disk, else ``disk_cachemodes`` for the source type, else
    'none'; native AIO falls back to threads when the cache mode does not
    use O_DIRECT (libvirt refuses that combination)."""
    if shareable:
        cache = 'none'
    else:
        cache = dict(settings.cachemodes).get(source_type, 'none')
    if io == 'native' and cache not in ('none', 'directsync'):
        io = 'threads'
    return cache, io


def _readonly(data):
    mode = data.get('access_mode') or 'rw'
    if mode not in ('ro', 'rw'):
        raise exception.InvalidVolumeAccessMode(access_mode=mode)
    return mode == 'ro'


def plan_iotune(vid, qos_specs):
    """((<iotune> element, value), ...) of Cinder's front-end QoS specs,
    in the table's order. Keys Nova does not apply are left out (see
    :func:`unused_qos_keys`); values must be whole numbers, 0 or more."""
    if not qos_specs:
        return ()
    if not isinstance(qos_specs, dict):
        raise kvmx_exception.InvalidConnectionInfo(
            volume_id=vid, reason='qos_specs %r is not a mapping' % (
                qos_specs,))
    result = []
    for key, element in QOS_IOTUNE.items():
        if key not in qos_specs or qos_specs[key] is None:
            continue
        value = _whole(qos_specs[key])
        if value is None:
            raise kvmx_exception.InvalidConnectionInfo(
                volume_id=vid, reason='QoS spec %s=%r is not a whole '
                'number' % (key, qos_specs[key]))
        result.append((element, value))
    return tuple(result)


def unused_qos_keys(connection_info):
    """The QoS spec keys of a connection that no <iotune> element takes."""
    specs = (connection_info.get('data') or {}).get('qos_specs')
    if not isinstance(specs, dict):
        return []
    return sorted(k for k in specs if k not in QOS_IOTUNE)


def _whole(value):
    if isinstance(value, bool):
        return None
    try:
        number = int(str(value).strip())
    except ValueError:
        return None
    return number if number >= 0 else None


def _block_size(vid, data, key):
    if data.get(key) is None:
        return None
    size = _whole(data[key])
    if not size or size & (size - 1):
        raise kvmx_exception.InvalidConnectionInfo(
            volume_id=vid, reason='%s %r is not a power of 2' % (
                key, data[key]))
    return size


def _network_source(vid, kind, data, settings):
    name = data.get('name')
    if not isinstance(name, str) or not _RBD_NAME.fullmatch(name):
        raise kvmx_exception.InvalidConnectionInfo(
            volume_id=vid, reason='RBD image name %r is not '
            'pool/image' % (name,))
    hosts = list(data.get('hosts') or [])
    ports = list(data.get('ports') or [])
    result = []
    for i, host in enumerate(hosts):
        host = str(host)
        port = str(ports[i]) if i < len(ports) and ports[i] is not None \
            else None
        if not _HOST.fullmatch(host) or (port is not None and
                                         not port.isdigit()):
            raise kvmx_exception.InvalidConnectionInfo(
                volume_id=vid, reason='monitor address %r port %r' % (
                    host, port))
        result.append((host, port))
    source = dict(protocol=kind, name=name, hosts=tuple(result))
    auth = rbd_auth(data, settings)
    if auth and not (auth['auth_username'] and
                     uuidutils.is_uuid_like(auth['auth_secret_uuid'])):
        raise kvmx_exception.InvalidConnectionInfo(
            volume_id=vid, reason='cephx user %r with libvirt secret %r: '
            'both are needed (Cinder\'s rbd_user and rbd_secret_uuid, or '
            'Nova\'s [libvirt] rbd_user and rbd_secret_uuid)' % (
                auth['auth_username'], auth['auth_secret_uuid']))
    source.update(auth)
    return source


def rbd_auth(data, settings):
    """The cephx user and libvirt secret QEMU authenticates with, as Nova's
    net.py chooses them: the connection's (Cinder's ``rbd_user`` and
    ``rbd_secret_uuid``) when it says auth is enabled, with Nova's own
    ``[libvirt] rbd_user``/``rbd_secret_uuid`` when Cinder has no secret
    UUID (both taken from Nova then) or says nothing of auth."""
    secret_type = data.get('secret_type') or 'ceph'
    if data.get('auth_enabled'):
        if data.get('secret_uuid') is not None:
            return dict(auth_username=data.get('auth_username'),
                        auth_secret_uuid=data['secret_uuid'],
                        auth_secret_type=secret_type)
        return dict(auth_username=settings.rbd_user,
                    auth_secret_uuid=settings.rbd_secret_uuid,
                    auth_secret_type=secret_type)
    if settings.rbd_secret_uuid:
        return dict(auth_username=settings.rbd_user,
                    auth_secret_uuid=settings.rbd_secret_uuid,
                    auth_secret_type=secret_type)
    return {}
