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

"""The host side of Cinder volumes: connected, checked, disconnected.

A volume of a block protocol (iSCSI, iSER, FC, NVMe-oF, ScaleIO,
StorPool, LightOS) is connected to this host by os-brick's connector for
the protocol, with Nova's ``[libvirt]`` options, exactly as Nova's libvirt
volume drivers do it; the block device it makes goes into the connection
info (``device_path``) and the guest gets it. An RBD volume is opened by
QEMU itself through librbd; before a guest is given one, the host checks
what QEMU would otherwise find out by blocking the guest for Ceph's
``client_mount_timeout`` (300 s): that the libvirt secret the disk names
exists, that a monitor answers, and that the volume opens with that
user and key (``qemu-img info`` through the same librbd, with ``[libvirt]
rbd_connect_timeout``). Every failure is a :class:`VolumeConnectFailed`
naming the volume and the cause.

Libvirt secrets of RBD volumes are the operator's (Cinder's
``rbd_secret_uuid`` and Nova's ``[libvirt] rbd_secret_uuid``, as with
Nova's libvirt driver): this driver only reads them.
"""

import configparser
import io
import os
import shutil
import socket
import tempfile
import time

import nova.conf
from nova import exception as nova_exception
from nova import objects
from nova import utils
from nova.virt import driver
from nova.volume import cinder
from os_brick import exception as brick_exception
from os_brick import initiator
from os_brick.initiator import connector as brick_connector
from oslo_concurrency import processutils
from oslo_log import log as logging
from oslo_serialization import jsonutils
from oslo_utils import excutils

from nova_kvmx import exception
from nova_kvmx.guest import disk_names
from nova_kvmx.guest import volumes as guest_volumes

try:
    import libvirt
except ImportError:  # pragma: no cover - libvirt-python is a requirement
    libvirt = None

CONF = nova.conf.CONF
LOG = logging.getLogger(__name__)

# Ceph's own monitor port, when the connection info names none.
CEPH_MON_PORT = 6789
# Where QEMU's librbd reads its configuration (libvirt starts QEMU with no
# CEPH_CONF): the RBD check reads the same, with short timeouts added.
CEPH_CONF = '/etc/ceph/ceph.conf'


def connector_properties():
    """What Cinder needs to export a volume to this host (os-brick's
    properties of every protocol), with Nova's options."""
    return brick_connector.get_connector_properties(
        utils.get_root_helper(), CONF.my_block_storage_ip,
        CONF.libvirt.volume_use_multipath, enforce_multipath=True,
        host=CONF.host)


def check_multipath():
    """``[libvirt] volume_enforce_multipath`` needs multipath on and
    multipathd running (Nova's start-up check)."""
    if not CONF.libvirt.volume_enforce_multipath:
        return
    if not CONF.libvirt.volume_use_multipath:
        raise nova_exception.InvalidConfiguration(
            "The 'volume_use_multipath' option should be 'True' when the "
            "'volume_enforce_multipath' option is 'True'.")
    from os_brick.initiator import linuxscsi
    if not linuxscsi.LinuxSCSI.is_multipath_running(
            root_helper=utils.get_root_helper()):
        raise nova_exception.InvalidConfiguration(
            "The 'volume_enforce_multipath' option is 'True' but multipathd "
            "is not running.")


def settings():
    """The volume settings of this host, from Nova's ``[libvirt]``."""
    modes = []
    for item in CONF.libvirt.disk_cachemodes:
        source_type, _, mode = item.partition('=')
        if mode not in guest_volumes.CACHE_MODES:
            LOG.warning('Invalid cachemode %s specified for disk type %s '
                        'in [libvirt] disk_cachemodes: ignored', mode,
                        source_type)
            continue
        modes.append((source_type, mode))
    return guest_volumes.VolumeSettings(
        rbd_user=CONF.libvirt.rbd_user,
        rbd_secret_uuid=CONF.libvirt.rbd_secret_uuid,
        cachemodes=tuple(modes),
        default_aio=CONF.libvirt.use_default_aio_mode_for_volumes)


def mapping(block_device_info):
    """The volume block device mappings (Nova's driver BDMs) of
    ``block_device_info``, those with a connection."""
    return [bdm for bdm in driver.block_device_info_get_mapping(
        block_device_info) if bdm.get('connection_info')]


def root_volume(block_device_info):
    """The volume the instance boots from, None for an image-backed one."""
    for bdm in driver.block_device_info_get_mapping(block_device_info):
        if bdm.get('boot_index') == 0:
            return bdm
    return None


def instance_block_device_info(context, instance):
    """The instance's block device info from Nova's database, for the
    operations Nova gives none (unrescue, the restart of a move whose
    copy failed)."""
    bdms = objects.BlockDeviceMappingList.get_by_instance_uuid(
        context, instance.uuid)
    return driver.get_block_device_info(instance, bdms)


def disk_info(bdm, instance):
    """Where a mapped volume goes in the guest: the BDM's device name, its
    bus (or the one its name implies, or the image's) and type."""
    name = disk_names.strip(bdm.get('mount_device'))
    device_type = bdm.get('device_type') or 'disk'
    bus = disk_names.choose_bus(
        bdm.get('disk_bus'), name,
        disk_names.image_bus(instance.image_meta, device_type))
    if not name:
        raise nova_exception.InvalidBDMFormat(
            details='volume %s has no device name' % guest_volumes.volume_id(
                bdm['connection_info']))
    return guest_volumes.DiskInfo(dev=name, bus=bus,
                                  device_type=device_type,
                                  boot_index=bdm.get('boot_index'))


class HostVolumes(object):
    """Connects volumes to this host and disconnects them."""

    def __init__(self, host):
        self.host = host
        self._connectors = {}
        self._volume_api = None

    # -- planning -------------------------------------------------------

    def disk(self, connection_info, info):
        """The VolumeDisk of a connected volume (QoS specs without an
        <iotune> element are logged)."""
        disk = guest_volumes.plan_volume(connection_info, info, settings())
        unused = guest_volumes.unused_qos_keys(connection_info)
        if unused:
            LOG.warning('Volume %s: QoS specs %s have no libvirt <iotune> '
                        'element and are not applied', disk.volume_id,
                        ', '.join(unused))
        return disk

    def disks(self, instance, bdms):
        """VolumeDisks of connected driver BDMs."""
        return tuple(self.disk(bdm['connection_info'],
                               disk_info(bdm, instance)) for bdm in bdms)

    # -- connecting -----------------------------------------------------

    def connect(self, connection_info, instance):
        """Make the volume reachable from this host for QEMU; a block
        protocol's device path is added to the connection info (callers
        save it in the BDM, as Nova does)."""
        vid = guest_volumes.check_supported(connection_info)
        kind = guest_volumes.protocol(connection_info)
        data = connection_info['data']
        if kind == 'rbd':
            self.check_rbd(_source(connection_info), instance)
            return
        if kind == 'local':
            return
        LOG.debug('Connecting %s volume %s with os-brick', kind, vid,
                  instance=instance)
        try:
            device_info = self.connector(kind).connect_volume(data)
        except (brick_exception.BrickException,
                processutils.ProcessExecutionError, OSError) as ex:
            raise exception.VolumeConnectFailed(
                volume_id=vid, reason='os-brick could not connect the %s '
                'volume: %s' % (kind, ex)) from ex
        data['device_path'] = device_info['path']
        if kind == 'fibre_channel' and 'multipath_id' in device_info:
            data['multipath_id'] = device_info['multipath_id']
        LOG.info('Volume %s connected at %s', vid, device_info['path'],
                 instance=instance)

    def connect_all(self, context, instance, bdms, rollback=True):
        """Connect every driver BDM (saving the device paths in Nova's
        records); if one fails, disconnect those connected before, unless
        ``rollback`` is False (they were connected already: a running
        guest may be using them)."""
        done = []
        try:
            for bdm in bdms:
                self.connect(bdm['connection_info'], instance)
                done.append(bdm)
                bdm.save()
        except Exception:
            with excutils.save_and_reraise_exception():
                if rollback:
                    self.disconnect_all(context, instance, done)

    def disconnect(self, context, connection_info, instance, force=False):
        """Let go of the volume on this host; a volume another instance of
        this host still has attached (multi-attach) stays connected."""
        vid = guest_volumes.volume_id(connection_info)
        kind = guest_volumes.protocol(connection_info)
        if kind not in guest_volumes.BLOCK_PROTOCOLS or kind == 'local':
            return
        if not self._should_disconnect(context, instance, connection_info):
            LOG.info('Detected multiple connections on this host for volume '
                     '%s, skipping target disconnect.', vid,
                     instance=instance)
            return
        data = connection_info['data']
        try:
            self.connector(kind).disconnect_volume(
                data, data if kind == 'fibre_channel' else None, force=force)
        except brick_exception.VolumeDeviceNotFound as ex:
            LOG.warning('Ignoring VolumeDeviceNotFound: %s', ex,
                        instance=instance)
            return
        LOG.info('Volume %s disconnected', vid, instance=instance)

    def disconnect_all(self, context, instance, bdms, force=False):
        """Disconnect every driver BDM, going on past failures (logged)."""
        for bdm in bdms:
            self.disconnect_quietly(context, bdm['connection_info'],
                                    instance, force=force)

    def disconnect_quietly(self, context, connection_info, instance,
                           force=False):
        """Disconnect, logging a failure (while another error is being
        reported, or a delete must go on)."""
        try:
            self.disconnect(context, connection_info, instance, force=force)
        except Exception:
            LOG.exception('Could not disconnect volume %s',
                          guest_volumes.volume_id(connection_info),
                          instance=instance)

    def extend(self, connection_info, instance, requested_size):
        """Grow the host's view of an extended volume; the new size in
        bytes.

        An RBD volume has nothing to grow here, but QEMU's resize of its
        disk would grow the image itself (librbd's resize) -- and wait
        for as long as the pool takes no writes: it must already have the
        size Cinder reports, else the extend fails before the guest is
        asked."""
        kind = guest_volumes.protocol(connection_info)
        vid = guest_volumes.volume_id(connection_info)
        if kind == 'rbd':
            size = self.rbd_size(_source(connection_info))
            if size < requested_size:
                raise nova_exception.VolumeExtendFailed(
                    volume_id=vid, reason='its RBD image is %d bytes, not '
                    'the %d bytes Cinder reports: Cinder did not grow it '
                    '(is its pool full?)' % (size, requested_size))
            return requested_size
        if kind not in guest_volumes.BLOCK_PROTOCOLS or kind == 'local':
            return requested_size
        try:
            new_size = self.connector(kind).extend_volume(
                connection_info['data'])
        except NotImplementedError:
            raise nova_exception.ExtendVolumeNotSupported()
        except (brick_exception.BrickException,
                processutils.ProcessExecutionError, OSError) as ex:
            raise nova_exception.VolumeExtendFailed(
                volume_id=vid, reason='os-brick could not grow the host\'s '
                'device: %s' % ex) from ex
        if new_size is None:
            raise nova_exception.VolumeExtendFailed(
                volume_id=vid, reason='os-brick could not grow the host\'s '
                'device')
        return new_size

    def connector(self, kind):
        """os-brick's connector of a block protocol, made with Nova's
        options for it (as Nova's libvirt volume drivers make them)."""
        if kind not in self._connectors:
            opts = dict(
                iscsi=(initiator.ISCSI, dict(
                    use_multipath=CONF.libvirt.volume_use_multipath,
                    device_scan_attempts=CONF.libvirt.num_volume_scan_tries,
                    transport=CONF.libvirt.iscsi_iface or 'default',
                    enforce_multipath=CONF.libvirt.volume_enforce_multipath)),
                iser=(initiator.ISER, dict(
                    use_multipath=CONF.libvirt.iser_use_multipath,
                    device_scan_attempts=CONF.libvirt.num_iser_scan_tries,
                    transport='iser',
                    enforce_multipath=CONF.libvirt.volume_enforce_multipath)),
                fibre_channel=(initiator.FIBRE_CHANNEL, dict(
                    use_multipath=CONF.libvirt.volume_use_multipath,
                    device_scan_attempts=CONF.libvirt.num_volume_scan_tries,
                    enforce_multipath=CONF.libvirt.volume_enforce_multipath)),
                nvmeof=(initiator.NVME, dict(
                    use_multipath=CONF.libvirt.volume_use_multipath,
                    device_scan_attempts=CONF.libvirt.num_nvme_discover_tries,
                    enforce_multipath=CONF.libvirt.volume_enforce_multipath)),
                scaleio=(initiator.SCALEIO, dict(
                    device_scan_attempts=CONF.libvirt.num_volume_scan_tries)),
                storpool=(initiator.STORPOOL, {}),
                lightos=(initiator.LIGHTOS, dict(
                    device_scan_attempts=(
                        CONF.libvirt.num_nvme_discover_tries))),
            )[kind]
            try:
                self._connectors[kind] = \
                    brick_connector.InitiatorConnector.factory(
                        opts[0], utils.get_root_helper(), **opts[1])
            except brick_exception.InvalidConnectorProtocol:
                raise nova_exception.VolumeDriverNotSupported(
                    volume_driver=kind)
        return self._connectors[kind]

    def _should_disconnect(self, context, instance, connection_info):
        """Nova's rule for multi-attach volumes: keep the connection while
        another instance on this host has the volume attached."""
        if not connection_info.get('multiattach', False):
            return True
        if self._volume_api is None:
            self._volume_api = cinder.API()
        volume = self._volume_api.get(
            context, guest_volumes.volume_id(connection_info))
        attachments = volume.get('attachments', {})
        if len(attachments) <= 1:
            return True
        here = objects.InstanceList.get_uuids_by_host(context, instance.host)
        return sum(1 for server in attachments if server in here) <= 1

    # -- RBD --------------------------------------------------------------

    def check_rbd(self, disk, instance, failure=None):
        """Check, before QEMU is asked to open it, that this host can open
        the RBD volume as the guest will: the libvirt secret exists, a
        monitor accepts connections, and the image opens with that user
        and key, each within ``[libvirt] rbd_connect_timeout`` seconds.

        :param disk: a guest.volumes.VolumeDisk, or a spec.RBDImage (an
            instance disk on RBD)
        :param failure: makes the error of a reason; VolumeConnectFailed
            naming the volume by default
        :returns: qemu-img's information on the image (a dict), None when
            the key cannot be read (a private libvirt secret)
        """
        if failure is None:
            def failure(reason):
                return exception.VolumeConnectFailed(
                    volume_id=disk.volume_id, reason=reason)
        what = getattr(disk, 'volume_id', None) or disk.name
        timeout = CONF.libvirt.rbd_connect_timeout
        key = self._secret_value(disk, failure)
        monitors = ['%s:%s' % (h, p or CEPH_MON_PORT)
                    for h, p in disk.hosts]
        if disk.hosts and not any(_accepts(h, p or CEPH_MON_PORT, timeout)
                                  for h, p in disk.hosts):
            raise failure('no Ceph monitor answers at %s (%d s, [libvirt] '
                          'rbd_connect_timeout)' % (', '.join(monitors),
                                                    timeout))
        if disk.auth_secret_uuid and key is None:
            LOG.info('libvirt secret %s is private: %s is given to QEMU '
                     'without checking that it opens',
                     disk.auth_secret_uuid, what, instance=instance)
            return None
        start = time.monotonic()
        info, error = self._open_rbd(disk, key, timeout)
        if error is None:
            LOG.debug('RBD image of %s opens as client.%s (%.2f s)', what,
                      disk.auth_username, time.monotonic() - start,
                      instance=instance)
            return info
        raise failure(_rbd_reason(disk, error, monitors, timeout))

    def rbd_size(self, disk):
        """The size in bytes of the disk's RBD image, read as QEMU would
        open it (see check_rbd)."""
        info = self.check_rbd(disk, None)
        if info is None:
            raise nova_exception.VolumeExtendFailed(
                volume_id=disk.volume_id, reason='its size cannot be read: '
                'libvirt secret %s is private' % disk.auth_secret_uuid)
        return info['virtual-size']

    def _secret_value(self, disk, failure):
        """The key of the disk's libvirt secret, None for a private one or
        a disk without cephx."""
        if not disk.auth_secret_uuid:
            return None
        try:
            secret = self.host.get_connection().secretLookupByUUIDString(
                disk.auth_secret_uuid)
        except libvirt.libvirtError as ex:
            if ex.get_error_code() != libvirt.VIR_ERR_NO_SECRET:
                raise
            raise failure('libvirt secret %s (client.%s\'s key) is not '
                          'defined on this host' % (
                              disk.auth_secret_uuid,
                              disk.auth_username)) from ex
        try:
            return secret.value()
        except libvirt.libvirtError as ex:
            LOG.debug('Cannot read libvirt secret %s: %s',
                      disk.auth_secret_uuid, ex)
            return None

    def _open_rbd(self, disk, key, timeout):
        """Open the image with qemu-img through librbd: (its information,
        None), or (None, what qemu-img said)."""
        workdir = tempfile.mkdtemp(prefix='kvmx-rbd-check-')
        try:
            conf = os.path.join(workdir, 'ceph.conf')
            with open(os.open(conf, os.O_CREAT | os.O_WRONLY, 0o600),
                      'w') as f:
                f.write(probe_conf(_read(CEPH_CONF), disk.auth_username,
                                   timeout))
            args = ['qemu-img', 'info', '--output', 'json']
            opts = rbd_image_opts(disk, conf, key is not None)
            if key is not None:
                keyfile = os.path.join(workdir, 'key')
                with open(os.open(keyfile, os.O_CREAT | os.O_WRONLY, 0o600),
                          'wb') as f:
                    f.write(key)
                args += ['--object', 'secret,id=sec0,file=%s' % keyfile]
            args += ['--image-opts', opts]
            try:
                out, _err = processutils.execute(*args,
                                                 timeout=4 * timeout + 10)
            except processutils.ProcessExecutionError as ex:
                return None, (ex.stderr or ex.stdout or str(ex)).strip()
            return jsonutils.loads(out), None
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


def _source(connection_info):
    """The disk of a volume, for its source and credentials only (where
    it goes in the guest does not matter)."""
    return guest_volumes.plan_volume(
        connection_info, guest_volumes.DiskInfo(dev='vda', bus='virtio'),
        settings())


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ''


def probe_conf(system_conf, user, timeout):
    """A ceph.conf of the host's own (``system_conf``, as QEMU reads it)
    with the client's connect and operation timeouts set to ``timeout``
    for ``user``, so that a cluster that does not answer fails the
    check, not a guest."""
    parser = configparser.RawConfigParser(strict=False,
                                          inline_comment_prefixes=(';', '#'),
                                          default_section='\0')
    try:
        parser.read_string(system_conf)
    except configparser.Error as ex:
        LOG.warning('Could not read %s (%s): checking RBD volumes without '
                    'it', CEPH_CONF, ex)
        parser = configparser.RawConfigParser(default_section='\0')
    section = 'client.%s' % user if user else 'client'
    if not parser.has_section(section):
        parser.add_section(section)
    for option in ('client_mount_timeout', 'rados_mon_op_timeout',
                   'rados_osd_op_timeout'):
        for spelling in (option, option.replace('_', ' ')):
            for name in parser.sections():
                parser.remove_option(name, spelling)
        parser.set(section, option, str(timeout))
    out = io.StringIO()
    parser.write(out)
    return out.getvalue()


def _escape(value):
    # QEMU's option syntax: a comma is written twice.
    return str(value).replace(',', ',,')


def rbd_image_opts(disk, conf, with_key):
    """qemu-img's ``--image-opts`` opening the disk's RBD image as QEMU
    does for the guest (the key comes from the secret object ``sec0``)."""
    parts = disk.name.split('/')
    opts = [('driver', 'rbd'), ('pool', parts[0]), ('image', parts[-1])]
    if len(parts) == 3:
        opts.append(('namespace', parts[1]))
    if disk.auth_username:
        opts.append(('user', disk.auth_username))
    if with_key:
        opts.append(('key-secret', 'sec0'))
    for i, (host, port) in enumerate(disk.hosts):
        opts.append(('server.%d.host' % i, host.strip('[]')))
        opts.append(('server.%d.port' % i, port or CEPH_MON_PORT))
    opts.append(('conf', conf))
    return ','.join('%s=%s' % (k, _escape(v)) for k, v in opts)


def _accepts(host, port, timeout):
    try:
        socket.create_connection((host.strip('[]'), int(port)),
                                 timeout=timeout).close()
        return True
    except OSError:
        return False


def _rbd_reason(disk, error, monitors, timeout):
    """Why the image did not open, short (Nova keeps 255 characters of a
    fault): the likely cause first, then what librbd said."""
    said = error.splitlines()[-1] if error else ''
    # qemu-img repeats its options; what librbd said is after them.
    said = said.rpartition("': ")[2] or said
    who = 'client.%s' % disk.auth_username if disk.auth_username else \
        'this host'
    if 'No such file or directory' in said:
        return 'RBD image %s does not exist' % disk.name
    if 'Permission denied' in said or 'Operation not permitted' in said:
        return '%s may not open RBD image %s (caps): %s' % (
            who, disk.name, said)
    if 'timed out' in said and disk.auth_secret_uuid:
        return ('libvirt secret %s did not let %s in within %d s (monitors '
                '%s answer): wrong key, or no quorum' % (
                    disk.auth_secret_uuid, who, timeout,
                    ', '.join(monitors) or 'of ' + CEPH_CONF))
    return '%s could not open RBD image %s: %s' % (who, disk.name,
                                                   said or error)
